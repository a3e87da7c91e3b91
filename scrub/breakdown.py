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

import numpy as np
import pandas as pd

from scrub.dataset import Dataset
from scrub.hypothesis import Hypothesis
from scrub.metrics import Metric
from scrub.result import Result

__all__ = ["breakdown", "COLUMNS"]

#: The breakdown's columns, in order.
COLUMNS = [
    "claim", "alone", "alone_lo", "alone_hi", "without", "without_lo", "without_hi", "lost", "lost_lo", "lost_hi",
]

_LOSSES = ["loss_model", "loss_scrubbed", "loss_baseline"]


def breakdown(
    model,
    hypothesis: Hypothesis,
    data: Dataset,
    *,
    claims: Sequence[str] | None = None,
    full: Result | None = None,
    alone: bool = True,
    seed: int = 0,
    n_seeds: int = 1,
    baseline: Hypothesis | None = None,
    metric: Metric = "loss",
    batch_size: int | None = None,
    n_boot: int = 1000,
    progress: bool | None = False,
    on_step: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Score each claim of ``hypothesis`` alone, and the score lost without it.

    Args:
        model, hypothesis, data, seed, n_seeds, baseline, metric, batch_size: as for :func:`scrub.run`.
        claims: node names to break down (default: ``hypothesis.leaves()``, the claims).
        full: the result of the full hypothesis with these same arguments, if already run
            (saves one run; its seeds must match).
        alone: also score each claim alone (False: only the removals; ``alone*`` columns NaN).
        n_boot: bootstrap resamples for every interval.
        progress: progress bars inside each run.
        on_step: called with a short label before each run (for a progress display).

    Returns:
        a DataFrame, one row per claim, columns :data:`COLUMNS`: ``alone`` is the fraction of
        loss recovered by the claim alone, ``without`` by the hypothesis without it, ``lost`` is
        ``full - without``; each with its 95% percentile-bootstrap interval (``_lo``, ``_hi``;
        ``lost``'s is paired). ``attrs`` holds ``hypothesis``, ``full`` (the score) and ``full_ci``.
    """
    from scrub.experiment import run

    names = list(hypothesis.leaves() if claims is None else claims)
    kw = dict(seed=seed, n_seeds=n_seeds, baseline=baseline, metric=metric, batch_size=batch_size,
              progress=progress, n_boot=n_boot)

    def step(label: str, h: Hypothesis) -> Result:
        if on_step is not None:
            on_step(label)
        return run(model, h, data, **kw)

    if full is None:
        full = step("full hypothesis", hypothesis)
    elif list(full.seeds) != [seed + k for k in range(n_seeds)] or full.n_examples != len(data):
        raise ValueError(
            f"breakdown: `full` was run with seeds {full.seeds} on {full.n_examples} examples; "
            f"this breakdown uses seeds {[seed + k for k in range(n_seeds)]} on {len(data)}"
        )
    full_per = _per_example(full)
    rows = []
    for k, name in enumerate(names):
        a = step(f"{name}: alone ({k + 1}/{len(names)})", hypothesis.only(name)) if alone else None
        a_score, (a_lo, a_hi) = (math.nan, (math.nan, math.nan)) if a is None else (a.loss_recovered, a.ci)
        without = step(f"{name}: removed ({k + 1}/{len(names)})", hypothesis.without(name))
        lost_lo, lost_hi = _paired_ci(full_per, _per_example(without), n_boot=n_boot, seed=seed)
        rows.append({
            "claim": name,
            "alone": a_score, "alone_lo": a_lo, "alone_hi": a_hi,
            "without": without.loss_recovered, "without_lo": without.ci[0], "without_hi": without.ci[1],
            "lost": full.loss_recovered - without.loss_recovered, "lost_lo": lost_lo, "lost_hi": lost_hi,
        })
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs.update(hypothesis=hypothesis.name, full=full.loss_recovered, full_ci=tuple(full.ci))
    return table


def _per_example(result: Result) -> np.ndarray:
    """[N, 3] losses per example (seeds pooled), in example order."""
    return result.per_example.groupby("example")[_LOSSES].mean().sort_index().to_numpy()


def _ratio(means: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (means[..., 2] - means[..., 1]) / (means[..., 2] - means[..., 0])


def _paired_ci(a: np.ndarray, b: np.ndarray, *, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap of ``recovered(a) - recovered(b)``, resampling the same examples for both."""
    n = a.shape[0]
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, n_boot, 200):
        k = min(200, n_boot - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=k).astype(np.float64)
        diffs.append(_ratio(counts @ a / n) - _ratio(counts @ b / n))
    d = np.concatenate(diffs)
    d = d[np.isfinite(d)]
    alpha = (1 - level) / 2
    return float(np.quantile(d, alpha)), float(np.quantile(d, 1 - alpha))
