"""Regression suites: circuit claims kept as code.

A suite is a plain Python module (or package) with a module-level ``CASES`` list of
:class:`Case`. Each case says how to load a model, make data, build a hypothesis, and the range
its fraction of loss recovered is expected to fall in::

    CASES = [
        Case("induction/naive", model=load_model, data=make_data, hypothesis=naive,
             expected=(0.84, 0.92), n=1000, n_seeds=2),
    ]

``hypotheses/`` is itself such a suite: ``scrub suite hypotheses``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scrub.dataset import Dataset
from scrub.hypothesis import Hypothesis

__all__ = ["Case"]


@dataclass
class Case:
    """One hypothesis about one model, with the score range it is expected to keep.

    Attributes:
        name: unique within the suite, e.g. ``"induction/naive"``.
        model: a function of no arguments returning the model.
        data: a function ``(n, seed) -> Dataset``.
        hypothesis: a function of no arguments returning the :class:`~scrub.Hypothesis`.
        expected: ``(low, high)``: the point estimate of the fraction of loss recovered must lie
            in this range, measured with ``n`` examples and ``n_seeds`` seeds.
        kind: ``"true"``, ``"refined"``, ``"false"`` or ``"path"`` (what the zoo claims it is).
        n, n_seeds, seed, data_seed: the run's size and seeds.
        metric: passed to :func:`scrub.run`.
        baseline: a function of no arguments returning a baseline hypothesis, or None (fully scrubbed).
        skip: a function of no arguments returning a reason to skip (e.g. weights not available
            offline), or None when the case can run.
        notes: one line for reports.
    """

    name: str
    model: Callable[[], Any]
    data: Callable[[int, int], Dataset]
    hypothesis: Callable[[], Hypothesis]
    expected: tuple[float, float]
    kind: str = "true"
    n: int = 1000
    n_seeds: int = 2
    seed: int = 0
    data_seed: int = 1234
    metric: str | Callable = "loss"
    baseline: Callable[[], Hypothesis] | None = None
    skip: Callable[[], str | None] | None = None
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        lo, hi = self.expected
        if not lo <= hi:
            raise ValueError(f"case {self.name!r}: expected range {self.expected} has low > high")
        if self.kind not in {"true", "refined", "false", "path"}:
            raise ValueError(f"case {self.name!r}: kind must be true, refined, false or path, got {self.kind!r}")
