"""The result of a scrub: per-example losses, the fraction of loss recovered and its bootstrap interval."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scrub.errors import RunOptionsError

__all__ = [
    "Result", "recovered", "bootstrap_ci", "per_example_losses", "resampled_recovered", "percentile_interval",
    "MIN_BOOT",
]

#: The fewest bootstrap resamples an interval is computed from. A 95% percentile interval reads the
#: 2.5% and 97.5% points of the resamples: with 100 they lie between the 2nd/3rd and 97th/98th
#: values; with fewer they are the extreme draws, and with one the "interval" has zero width and
#: need not contain the estimate. 1000 (the default) is the usual choice.
MIN_BOOT = 100


def _check_boot(n_boot) -> int:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < MIN_BOOT:
        raise RunOptionsError(
            f"n_boot must be an int of at least {MIN_BOOT} (bootstrap resamples for a 95% interval), got {n_boot!r}"
        )
    return int(n_boot)


def recovered(model: float, scrubbed: float, baseline: float) -> float:
    """``(L_baseline - L_scrubbed) / (L_baseline - L_model)``."""
    return (baseline - scrubbed) / (baseline - model)


def per_example_losses(table: pd.DataFrame) -> np.ndarray:
    """``[N, 3]``: each example's model, scrubbed and baseline losses, averaged over seeds, in example order."""
    means = pd.DataFrame(table.groupby("example")[["loss_model", "loss_scrubbed", "loss_baseline"]].mean())
    return means.sort_index().to_numpy()


def resampled_recovered(*per: np.ndarray, n_boot: int = 1000, seed: int = 0) -> list[np.ndarray]:
    """Bootstrap replicates of the fraction recovered for each ``[N, 3]`` loss table in ``per``.

    All tables are resampled with the *same* example draws (paired), ``n_boot`` times; each result
    is ``[n_boot]`` (non-finite where a replicate's denominator is zero).
    """
    n_boot = _check_boot(n_boot)
    n = per[0].shape[0]
    rng = np.random.default_rng(seed)
    out: list[list[np.ndarray]] = [[] for _ in per]
    for start in range(0, n_boot, 200):  # bounded memory: 200 resamples x N counts at a time
        k = min(200, n_boot - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=k).astype(np.float64)
        for acc, p in zip(out, per, strict=True):
            means = counts @ p / n  # [k, 3]
            with np.errstate(divide="ignore", invalid="ignore"):
                acc.append((means[:, 2] - means[:, 1]) / (means[:, 2] - means[:, 0]))
    return [np.concatenate(acc) for acc in out]


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of the finite ``samples``."""
    s = samples[np.isfinite(samples)]
    if s.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(s, alpha)), float(np.quantile(s, 1 - alpha))


def bootstrap_ci(
    table: pd.DataFrame, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap over examples of the fraction recovered.

    Each example's losses are first averaged over the scrub seeds (seeds pooled), then
    examples are resampled with replacement ``n_boot`` times.
    """
    (samples,) = resampled_recovered(per_example_losses(table), n_boot=n_boot, seed=seed)
    return percentile_interval(samples, level)


@dataclass
class Result:
    """What :func:`scrub.run` returns.

    Attributes:
        loss_model: mean loss of the unmodified model.
        loss_scrubbed: mean loss of the scrubbed model (over examples and seeds).
        loss_baseline: mean loss of the baseline (by default the fully scrubbed model).
        loss_recovered: ``(baseline - scrubbed) / (baseline - model)``; may leave [0, 1].
        ci: ``(low, high)`` bootstrap interval of ``loss_recovered``; ``ci_method`` says how.
        record: what reproduces the run: seeds, package versions, model config, hashes.
        spec: the :class:`~scrub.Hypothesis` object that was scored (``hypothesis`` is its name).
        graph: the :class:`~scrub.ModelGraph` of the model it was scored on.
    """

    hypothesis: str
    baseline: str
    metric: str
    loss_model: float
    loss_scrubbed: float
    loss_baseline: float
    loss_recovered: float
    ci: tuple[float, float]
    ci_method: str
    n_examples: int
    seeds: list[int]
    plan_size: dict[str, int]
    per_example: pd.DataFrame = field(repr=False)
    record: dict[str, Any] = field(default_factory=dict, repr=False)
    spec: Any = field(default=None, repr=False, compare=False)  # the scrub.Hypothesis that was run
    graph: Any = field(default=None, repr=False, compare=False)  # the scrub.ModelGraph it was run on

    def table(self) -> pd.DataFrame:
        """One row per example and seed: ``example, seed, loss_model, loss_scrubbed, loss_baseline``."""
        return self.per_example.copy()

    @property
    def stderr(self) -> float:
        """Standard error of ``loss_recovered`` by the delta method over examples (seeds pooled)."""
        m, s, b = per_example_losses(self.per_example).T
        num, den = b - s, b - m
        r = num.mean() / den.mean()
        infl = (num - r * den) / den.mean()
        return float(infl.std(ddof=1) / np.sqrt(len(infl)))

    def to_dict(self) -> dict[str, Any]:
        """Everything but the per-example table, as plain JSON-able values."""
        return {
            "hypothesis": self.hypothesis,
            "baseline": self.baseline,
            "metric": self.metric,
            "loss_model": self.loss_model,
            "loss_scrubbed": self.loss_scrubbed,
            "loss_baseline": self.loss_baseline,
            "loss_recovered": self.loss_recovered,
            "ci": list(self.ci),
            "ci_method": self.ci_method,
            "n_examples": self.n_examples,
            "seeds": list(self.seeds),
            "plan_size": dict(self.plan_size),
            "record": self.record,
        }

    def summary(self) -> str:
        """The one way scrub prints a result (``str(result)``, the CLI, failed assertions)::

            fraction of loss recovered: 88.2% (95% CI 86.9% .. 89.5%; N=200, seeds=[0])
              loss: model 0.3112, scrubbed 0.5213, baseline 2.0000 (fully scrubbed)
        """
        lo, hi = self.ci
        text = (
            f"fraction of {self.metric} recovered: {self.loss_recovered:.1%} (95% CI {lo:.1%} .. {hi:.1%}; "
            f"N={self.n_examples}, seeds={self.seeds})\n"
            f"  {self.metric}: model {self.loss_model:.4f}, scrubbed {self.loss_scrubbed:.4f}, "
            f"baseline {self.loss_baseline:.4f} ({self.baseline})"
        )
        if self.ablation is not None:
            text += f"\n  {self.ablation} ablation of unclaimed inputs: not causal scrubbing"
        for key, whose in (("fixed_claims", "hypothesis"), ("baseline_fixed_claims", "baseline")):
            fixed = self.record.get(key)
            if fixed:
                names = ", ".join(f"{name!r} ({kind})" for name, kind in fixed.items())
                text += f"\n  {whose} claims fixed to a mean or zero, {names}: not causal scrubbing"
        return text

    @property
    def ablation(self) -> str | None:
        """``"mean"`` or ``"zero"`` when unclaimed inputs were ablated rather than resampled
        (not causal scrubbing); None for causal scrubbing."""
        return self.record.get("ablation")

    def __str__(self) -> str:
        return f"hypothesis {self.hypothesis!r}\n{self.summary()}"

    def __eq__(self, other: object) -> bool:
        """Equal when every figure, the record and the per-example table are equal."""
        if not isinstance(other, Result):
            return NotImplemented
        return self.to_dict() == other.to_dict() and self.per_example.equals(other.per_example)

    __hash__ = None  # type: ignore[assignment]
