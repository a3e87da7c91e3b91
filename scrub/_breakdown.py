"""Claim breakdown: what each claim of a hypothesis is worth.

For every claim (leaf node) of a hypothesis: the score of that claim alone
(:meth:`Hypothesis.only`: the claim, its ancestors, nothing else) and the score lost when it is
removed from the full hypothesis (:meth:`Hypothesis.without`: what it claimed becomes
unimportant). This is the table of Redwood's paren-balancer write-up.

>>> table = breakdown(model, h, data, seed=0)          # doctest: +SKIP
>>> table.sort_values("lost", ascending=False)         # doctest: +SKIP

Every run shares the sampling seeds (and so the baseline's samples and the clean run), so the
differences are paired: ``lost`` and its interval come from one bootstrap that resamples the
same examples for the full hypothesis and the hypothesis without the claim.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd

from scrub._dataset import Dataset
from scrub._hypothesis import Hypothesis
from scrub._metrics import Metric
from scrub._options import RunOptions, resolve_options
from scrub._result import Result, per_example_losses, percentile_interval, resampled_recovered
from scrub.errors import HypothesisError, RunOptionsError

__all__ = ["breakdown", "COLUMNS"]

#: The breakdown's columns, in order.
COLUMNS = [
    "claim", "alone", "alone_lo", "alone_hi", "without", "without_lo", "without_hi", "lost", "lost_lo", "lost_hi",
]

def breakdown(
    model,
    hypothesis: Hypothesis,
    data: Dataset,
    *,
    claims: Sequence[str] | None = None,
    full: Result | None = None,
    alone: bool = True,
    options: RunOptions | None = None,
    seed: int | None = None,
    n_seeds: int | None = None,
    baseline: Hypothesis | None = None,
    metric: Metric | None = None,
    batch_size: int | None = None,
    n_boot: int | None = None,
    progress: bool | None = False,
    on_step: Callable[[str], None] | None = None,
    ray: str | None = None,
) -> pd.DataFrame:
    """Score each claim of ``hypothesis`` alone, and the score lost without it.

    Args:
        model, hypothesis, data, options, seed, n_seeds, baseline, metric, batch_size: as for :func:`scrub.run`.
        claims: node names to break down (default: ``hypothesis.leaves()``, the claims).
        full: the result of the full hypothesis with these same arguments, if already run
            (saves one run; its seeds must match).
        alone: also score each claim alone (False: only the removals; ``alone*`` columns NaN).
        n_boot: bootstrap resamples for every interval.
        progress: progress bars inside each run.
        on_step: called once with a label listing the hypotheses about to be run (for a progress display).
        ray: score on a Ray cluster, as for :func:`scrub.run` (the same table, bit for bit).

    Returns:
        a DataFrame, one row per claim, columns :data:`COLUMNS`: ``alone`` is the fraction of
        loss recovered by the claim alone, ``without`` by the hypothesis without it, ``lost`` is
        ``full - without``; each with its 95% percentile-bootstrap interval (``_lo``, ``_hi``;
        ``lost``'s is paired). ``attrs`` holds ``hypothesis``, ``full`` (the score) and ``full_ci``.
    """
    from scrub._experiment import _check_hypothesis, run_many

    hypothesis = _check_hypothesis(hypothesis)
    opts = resolve_options(options, seed=seed, n_seeds=n_seeds, metric=metric, batch_size=batch_size, n_boot=n_boot,
                           progress=progress, ray=ray)
    seed, n_boot = opts.seed, opts.n_boot
    if isinstance(claims, str):
        claims = [claims]
    names = list(hypothesis.leaves() if claims is None else claims)
    if not names:
        raise HypothesisError(f"breakdown: hypothesis {hypothesis.name!r} has no claims (leaf nodes) to break down")
    hypothesis._check_names(names)
    seeds = opts.seeds
    if full is not None and not isinstance(full, Result):
        raise RunOptionsError(f"breakdown: full must be the scrub.Result of the full hypothesis, got {type(full).__name__}")
    if full is not None and (list(full.seeds) != seeds or full.n_examples != len(data)):
        raise RunOptionsError(
            f"breakdown: `full` was run with seeds {full.seeds} on {full.n_examples} examples; "
            f"this breakdown uses seeds {seeds} on {len(data)}"
        )
    todo: list[tuple[str, Hypothesis]] = [] if full is not None else [("full hypothesis", hypothesis)]
    for k, name in enumerate(names):
        if alone:
            todo.append((f"{name}: alone ({k + 1}/{len(names)})", hypothesis.only(name)))
        todo.append((f"{name}: removed ({k + 1}/{len(names)})", hypothesis.without(name)))
    if on_step is not None:
        on_step(f"{len(todo)} hypotheses: " + ", ".join(label for label, _ in todo))
    # one clean run and one baseline for all of them, and the same samples: paired differences
    results = iter(run_many(model, [h for _, h in todo], data, options=opts, baseline=baseline))
    full = full if full is not None else next(results)
    full_per = per_example_losses(full.per_example)
    rows = []
    for name in names:
        a = next(results) if alone else None
        a_score, (a_lo, a_hi) = (math.nan, (math.nan, math.nan)) if a is None else (a.loss_recovered, a.ci)
        without = next(results)
        r_full, r_without = resampled_recovered(full_per, per_example_losses(without.per_example), n_boot=n_boot, seed=seed)
        lost_lo, lost_hi = percentile_interval(r_full - r_without)
        rows.append({
            "claim": name,
            "alone": a_score, "alone_lo": a_lo, "alone_hi": a_hi,
            "without": without.loss_recovered, "without_lo": without.ci[0], "without_hi": without.ci[1],
            "lost": full.loss_recovered - without.loss_recovered, "lost_lo": lost_lo, "lost_hi": lost_hi,
        })
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs.update(hypothesis=hypothesis.name, full=full.loss_recovered, full_ci=tuple(full.ci))
    return table
