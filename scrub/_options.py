"""One value for how a hypothesis is scored: :class:`RunOptions`.

Every call that scores (:func:`scrub.run`, :func:`scrub.run_many`, :func:`scrub._breakdown.breakdown`,
:func:`scrub.assert_faithful`, :func:`scrub.run_suite`) takes ``options=RunOptions(...)`` and/or the same fields as
keywords; keywords override the options value. A suite's :class:`~scrub.Case` builds its value
from its own fields (:meth:`~scrub.Case.options`). The record a
:class:`~scrub.Result` keeps holds :meth:`RunOptions.record`, and :func:`scrub.reproduce` rebuilds
the options from it with :meth:`RunOptions.from_record`.

>>> opts = RunOptions(seed=3, n_seeds=2)
>>> opts.replace(n_boot=500).record()["n_boot"]
500
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from scrub._ablation import Ablation, check_ablation
from scrub._checkpoint import check_device
from scrub._metrics import METRICS, Metric, metric_name
from scrub._result import MIN_BOOT
from scrub.errors import MetricError, RunOptionsError

__all__ = ["RunOptions", "resolve_options", "check_run_options", "MAX_SEEDS"]

#: The most sampling seeds one run pools. Every seed is a full set of forward passes over the data
#: and pooling more seeds only shrinks the sampling noise, not the spread over examples that the
#: interval measures: a larger count is a typo (``n_seeds=10**7`` would run for days).
MAX_SEEDS = 1000


def _int_option(name: str, value, lo: int, hi: int | None, why: str = "") -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise RunOptionsError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f"at least {lo}"
        raise RunOptionsError(f"{name} must be {rng}, got {value}{why}")
    return value


def check_run_options(
    *, seed=0, n_seeds=1, batch_size=None, n_boot=1000, device=None, progress=None, ray=None
) -> dict[str, Any]:
    """Validate run options before anything runs; returns them normalised (numpy ints as ints).

    Raises :class:`~scrub.RunOptionsError` naming the option: ``seed`` a non-negative int (not a
    bool), ``n_seeds`` an int in ``1..MAX_SEEDS``, ``batch_size`` None or a positive int, ``n_boot``
    an int of at least :data:`~scrub._result.MIN_BOOT`, ``device`` None, a string or a torch.device
    that is available here (not ``'meta'``), ``progress`` None or a bool, ``ray`` None, ``"auto"``
    or a cluster address (``HOST:PORT`` or ``ray://HOST:PORT``).
    """
    out = {
        "seed": _int_option("seed", seed, 0, None),
        "n_seeds": _int_option(
            "n_seeds", n_seeds, 1, MAX_SEEDS,
            " (each seed is a full set of forward passes; more seeds shrink only the sampling noise)"
            if not isinstance(n_seeds, bool) and isinstance(n_seeds, (int, np.integer)) and n_seeds > MAX_SEEDS else "",
        ),
        "batch_size": None if batch_size is None else _int_option("batch_size", batch_size, 1, None),
        "n_boot": _int_option(
            "n_boot", n_boot, MIN_BOOT, None,
            f" (a 95% interval needs at least {MIN_BOOT} bootstrap resamples to have meaningful 2.5% and 97.5% points)",
        ),
        "device": check_device(device),
    }
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise RunOptionsError(f"progress must be True, False or None, got {type(progress).__name__} {progress!r}")
    out["progress"] = None if progress is None else bool(progress)
    out["ray"] = _cluster_option(ray)
    return out


def _cluster_option(ray) -> str | None:
    if ray is None:
        return None
    if not isinstance(ray, str) or not ray.strip() or any(c.isspace() for c in ray.strip()):
        raise RunOptionsError(
            f"ray must be None, 'auto' or a Ray cluster address such as '10.0.0.5:6379', got {type(ray).__name__} {ray!r}"
        )
    ray = ray.strip()
    host, _, port = ray.removeprefix("ray://").rpartition(":")
    if ray != "auto" and not (host and port.isdigit()):
        raise RunOptionsError(
            f"ray={ray!r}: a cluster address is HOST:PORT (the address `ray start --head` prints, e.g. "
            "'10.0.0.5:6379'), ray://HOST:PORT (Ray Client) or 'auto' (the cluster started on this machine, or RAY_ADDRESS)"
        )
    return ray


@dataclass(frozen=True)
class RunOptions:
    """How a hypothesis is scored, validated when it is made.

    Attributes:
        seed: seeds the sampling; seeds ``seed .. seed + n_seeds - 1`` are run and pooled.
        n_seeds: how many seeds to pool, ``1 ..`` :data:`MAX_SEEDS`.
        metric: ``"loss"``, ``"kl"``, ``"accuracy"`` or a function ``(logits [N, vocab], data) -> [N]``.
        batch_size: rows per forward pass (None: sized to the model and sequence length).
        device: move the model and data there (None: where the model is).
        progress: show progress bars (None: when writing to a terminal).
        n_boot: bootstrap resamples for the interval, at least :data:`~scrub._result.MIN_BOOT`.
        ablation: None (the default: unclaimed inputs are resampled, causal scrubbing), or
            :class:`~scrub.Mean` / :class:`~scrub.Zero`: unclaimed inputs take each component's
            mean output over the dataset (per position) or zero. **Not causal scrubbing**: results
            say so in their summary, record and report.
        ray: run the scrubbed forward passes on a Ray cluster (``pip install 'scrub[ray]'``):
            ``"auto"`` (the cluster started on this machine, or ``RAY_ADDRESS``) or its address
            ``HOST:PORT``; None runs here. The scores are the same bit for bit; the result's
            ``record["ran_on"]`` says where it ran (see the distributed page of the docs).
    """

    seed: int = 0
    n_seeds: int = 1
    metric: Metric = "loss"
    batch_size: int | None = None
    device: str | None = None
    progress: bool | None = None
    n_boot: int = 1000
    ablation: Ablation | None = None
    ray: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ablation", check_ablation(self.ablation))
        opts = check_run_options(seed=self.seed, n_seeds=self.n_seeds, batch_size=self.batch_size, n_boot=self.n_boot,
                                 device=self.device, progress=self.progress, ray=self.ray)
        for key in ("seed", "n_seeds", "batch_size", "n_boot", "progress", "ray"):
            object.__setattr__(self, key, opts[key])
        object.__setattr__(self, "device", None if opts["device"] is None else str(opts["device"]))
        if isinstance(self.metric, str) and self.metric not in METRICS:
            raise MetricError(f"unknown metric {self.metric!r}; choose one of {sorted(METRICS)} or pass a function")
        if not isinstance(self.metric, str) and not callable(self.metric):
            raise MetricError(f"metric must be a name {sorted(METRICS)} or a function (logits, data) -> losses, "
                              f"got {type(self.metric).__name__}")

    @property
    def seeds(self) -> list[int]:
        """The sampling seeds pooled: ``seed .. seed + n_seeds - 1``."""
        return [self.seed + k for k in range(self.n_seeds)]

    @property
    def torch_device(self) -> torch.device | None:
        return None if self.device is None else torch.device(self.device)

    def replace(self, **changes: Any) -> RunOptions:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def record(self) -> dict[str, Any]:
        """The options as the reproduction record stores them (a custom metric by its name; not ``ray``
        or ``device``: where a run ran does not change its score)."""
        out = {"seed": self.seed, "n_seeds": self.n_seeds, "metric": metric_name(self.metric),
               "batch_size": self.batch_size, "n_boot": self.n_boot}
        if self.ablation is not None:  # only when set: records of causal scrubbing runs are unchanged
            out["ablation"] = self.ablation.name
        return out

    @classmethod
    def from_record(cls, record: Mapping[str, Any], *, metric: Metric | None = None) -> RunOptions:
        """The options a record was scored with (a custom metric must be passed again as ``metric``)."""
        return cls(seed=record["seed"], n_seeds=record["n_seeds"], batch_size=record.get("batch_size"),
                   n_boot=record.get("n_boot", 1000), metric=metric if metric is not None else record.get("metric", "loss"),
                   progress=False, ablation=record.get("ablation"))


def resolve_options(options: RunOptions | None, **given: Any) -> RunOptions:
    """``options`` (default: ``RunOptions()``) with every keyword that is not None applied over it."""
    if options is None:
        options = RunOptions()
    elif not isinstance(options, RunOptions):
        raise RunOptionsError(f"options must be a scrub.RunOptions, got {type(options).__name__} {options!r}")
    changes = {k: v for k, v in given.items() if v is not None}
    return options.replace(**changes) if changes else options
