"""Assertions for tests of circuit hypotheses (the pytest plugin's API).

>>> from scrub.testing import assert_faithful
>>> def test_induction_is_faithful():
...     assert_faithful(load_model(), naive(), make_data, at_least=0.85, n=200, seed=0)

The claim is checked with confidence, not on the point estimate: ``at_least`` must be at or
below the **lower** bound of the 95% interval of the fraction of loss recovered, ``at_most`` at or
above its **upper** bound. A failure raises :class:`ScrubAssertionError`, whose message gives the
score, its interval, the bound that failed, the model's, scrubbed and baseline losses, and the
claim whose removal loses the most.

Under pytest with scrub installed, ``--scrub-n N`` and ``--scrub-seeds K`` override the number of
examples and of seeds of every assertion here (see :mod:`scrub.pytest_plugin`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from scrub._dataset import Dataset
from scrub._hypothesis import Hypothesis
from scrub._metrics import Metric
from scrub._options import RunOptions, resolve_options
from scrub._result import Result
from scrub.errors import DatasetError, RunOptionsError
from scrub.suite import Case, load_suite, select

__all__ = ["Options", "options", "configure", "assert_faithful", "assert_case", "case_params", "ScrubAssertionError"]

#: Examples used when ``data`` is a function and no ``n`` is given.
DEFAULT_N = 1000


@dataclass(frozen=True)
class Options:
    """Overrides applied to every assertion (set from pytest's command line by the plugin).

    Attributes:
        n: number of examples (None: what each test asks for).
        n_seeds: number of sampling seeds (None: what each test asks for).
    """

    n: int | None = None
    n_seeds: int | None = None


_options = Options()


def options() -> Options:
    """The overrides in force."""
    return _options


def configure(n: int | None = None, n_seeds: int | None = None) -> Options:
    """Set the overrides (None clears one); returns the previous :class:`Options`."""
    global _options
    for label, v in (("n", n), ("n_seeds", n_seeds)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise RunOptionsError(f"scrub.testing.configure: {label} must be an int of at least 1, got {v!r}")
    previous, _options = _options, Options(n=n, n_seeds=n_seeds)
    return previous


class ScrubAssertionError(AssertionError):
    """A hypothesis scored outside the asserted range; ``result`` and ``breakdown`` hold the numbers."""

    def __init__(self, message: str, result: Result, breakdown: pd.DataFrame | None) -> None:
        super().__init__(message)
        self.result = result
        self.breakdown = breakdown


def _resolve_data(data: Dataset | Callable[[int, int], Dataset], n: int | None, data_seed: int) -> Dataset:
    if isinstance(data, Dataset):
        return data if n is None or n >= len(data) else data.subset(slice(0, n))
    if callable(data):
        return data(DEFAULT_N if n is None else n, data_seed)
    raise DatasetError(f"data must be a scrub.Dataset or a function (n, seed) -> Dataset, got {type(data).__name__}")


def assert_faithful(
    model,
    hypothesis: Hypothesis,
    data: Dataset | Callable[[int, int], Dataset],
    at_least: float | None = 0.9,
    *,
    at_most: float | None = None,
    n: int | None = None,
    options: RunOptions | None = None,
    seed: int | None = None,
    n_seeds: int | None = None,
    data_seed: int = 1234,
    baseline: Hypothesis | None = None,
    metric: Metric | None = None,
    batch_size: int | None = None,
    explain: bool = True,
) -> Result:
    """Assert that ``hypothesis`` recovers at least ``at_least`` (and at most ``at_most``) of the loss.

    Args:
        model: the model (a TransformerLens ``TransformerBridge``).
        hypothesis: the :class:`~scrub.Hypothesis`.
        data: a :class:`~scrub.Dataset` (its first ``n`` examples are used when ``n`` is given),
            or a function ``(n, seed) -> Dataset`` called with ``n`` (default 1000) and ``data_seed``.
        at_least: the lower bound of the 95% interval must be at or above this (None: no check).
        at_most: the upper bound of the 95% interval must be at or below this (None: no check);
            use it to assert that a false hypothesis is caught.
        n, seed, n_seeds: examples and sampling seeds; ``--scrub-n``/``--scrub-seeds`` (or
            :func:`configure`) override ``n`` and ``n_seeds``.
        options, baseline, metric, batch_size: as for :func:`scrub.run`.
        explain: on failure, score the hypothesis without each claim (same seeds) to name the
            claim whose removal loses the most.

    Returns:
        the :class:`~scrub.Result` (when the assertion holds).

    Raises:
        ScrubAssertionError: the interval is not inside ``[at_least, at_most]``.
    """
    from scrub._experiment import run

    if at_least is None and at_most is None:
        raise RunOptionsError("assert_faithful: give at_least, at_most or both")
    for label, bound in (("at_least", at_least), ("at_most", at_most)):
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float)) or math.isnan(bound)):
            raise RunOptionsError(f"assert_faithful: {label} must be a number (a fraction such as 0.9), got {bound!r}")
    if at_least is not None and at_most is not None and at_least > at_most:
        raise RunOptionsError(f"assert_faithful: at_least={at_least} is above at_most={at_most}; no interval fits")
    if not isinstance(hypothesis, Hypothesis):
        from scrub._experiment import _check_hypothesis

        _check_hypothesis(hypothesis)
    n = _options.n if _options.n is not None else n
    n_seeds = _options.n_seeds if _options.n_seeds is not None else n_seeds
    ds = _resolve_data(data, n, data_seed)
    opts = resolve_options(options, seed=seed, n_seeds=n_seeds, metric=metric, batch_size=batch_size, progress=False)
    result = run(model, hypothesis, ds, options=opts, baseline=baseline)
    lo, hi = result.ci
    failures = []
    if at_least is not None and lo < at_least:
        failures.append(f"lower bound of the 95% CI {lo:.1%} < at_least {at_least:.1%}")
    if at_most is not None and hi > at_most:
        failures.append(f"upper bound of the 95% CI {hi:.1%} > at_most {at_most:.1%}")
    if not failures:
        return result
    table = None
    if explain and hypothesis.leaves():
        from scrub._breakdown import breakdown

        table = breakdown(model, hypothesis, ds, full=result, alone=False, options=opts, baseline=baseline)
    raise ScrubAssertionError(_message(result, failures, table), result, table)


def _message(result: Result, failures: list[str], table: pd.DataFrame | None) -> str:
    lines = [f"hypothesis {result.hypothesis!r} is not as faithful as asserted: " + "; ".join(failures)]
    lines += ["  " + line for line in result.summary().splitlines()]
    if table is not None and len(table):
        worst = table.sort_values("lost", ascending=False).iloc[0]
        lines.append(
            f"  claim losing the most: {worst['claim']!r} (without it {worst['without']:.1%}: "
            f"{worst['lost']:+.1%} lost, 95% CI {worst['lost_lo']:+.1%} .. {worst['lost_hi']:+.1%})"
        )
    return "\n".join(lines)


def assert_case(case: Case, *, n: int | None = None, n_seeds: int | None = None, cache: dict | None = None) -> Result:
    """Run a suite :class:`~scrub.suite.Case` and assert its score is in its expected range.

    As in ``scrub suite``, the point estimate is checked against ``case.expected`` (the range
    was measured at the case's own ``n``); the message also gives the interval and the losses.
    ``--scrub-n``/``--scrub-seeds`` override ``n``/``n_seeds``. A case whose ``skip`` gives a
    reason is skipped with ``pytest.skip``.
    """
    reason = case.skip_reason()
    if reason:
        import pytest

        pytest.skip(reason)
    n = _options.n if _options.n is not None else n
    n_seeds = _options.n_seeds if _options.n_seeds is not None else n_seeds
    result = case.run(n=n, n_seeds=n_seeds, cache=cache)
    if not case.contains(result.loss_recovered):
        elo, ehi = case.expected
        raise ScrubAssertionError(
            _message(result, [f"score {result.loss_recovered:.1%} is outside the expected range {elo:.1%} .. {ehi:.1%} "
                              f"of case {case.name!r}"], None),
            result, None,
        )
    return result


def case_params(suite: str | Path | ModuleType | Iterable[Case], k: str | None = None) -> list[Any]:
    """``pytest.param`` for each case of a suite (ids: case names; marked ``scrub``) for
    ``@pytest.mark.parametrize("case", case_params("mysuite"))`` with :func:`assert_case`."""
    import pytest

    cases = list(suite) if not isinstance(suite, (str, Path, ModuleType)) else load_suite(suite)
    return [pytest.param(c, id=c.name, marks=pytest.mark.scrub) for c in select(cases, k)]

