"""Behaviour metrics: one loss per example from the logits at each example's target position.

A metric is a name or a function ``(logits, data) -> losses``: ``logits`` is ``[N, vocab]``
(the target position of each example), ``data`` the :class:`~scrub.Dataset` of those
examples, and ``losses`` one float per example where lower is better. Every metric's
score is reported as the same "fraction recovered" normalisation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from scrub._dataset import Dataset
from scrub.errors import MetricError

__all__ = ["Metric", "METRICS", "per_example", "MetricError", "metric_name"]

Metric = str | Callable[[torch.Tensor, Dataset], torch.Tensor]



def _labels(data: Dataset, name: str) -> torch.Tensor:
    if data.labels is None:
        raise MetricError(f"metric {name!r} needs labels: pass labels= to scrub.Dataset, or a metric function")
    return data.labels


def _loss(logits: torch.Tensor, data: Dataset, model_logits: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, _labels(data, "loss"), reduction="none")


def _error(logits: torch.Tensor, data: Dataset, model_logits: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) != _labels(data, "accuracy")).float()


def _kl(logits: torch.Tensor, data: Dataset, model_logits: torch.Tensor) -> torch.Tensor:
    p = F.log_softmax(model_logits, -1)
    return (p.exp() * (p - F.log_softmax(logits, -1))).sum(-1)


METRICS: dict[str, Callable] = {
    "loss": _loss,  # cross-entropy against the label at the target position
    "accuracy": _error,  # error rate (1 - accuracy), so lower is better like every loss
    "kl": _kl,  # KL(model || scrubbed) of the output distributions
}


def metric_name(metric: Metric) -> str:
    return metric if isinstance(metric, str) else getattr(metric, "__name__", "custom")


def check_metric(metric: Metric, data: Dataset, n_outputs: int | None = None) -> None:
    """Fail early, before any model runs: an unknown metric name, a missing label column, or (given
    ``n_outputs``) a metric function that gives the wrong shape or a non-finite loss on uniform logits."""
    if isinstance(metric, str):
        if metric not in METRICS:
            raise MetricError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)} or pass a function")
        if metric in ("loss", "accuracy"):
            _labels(data, metric)
    elif not callable(metric):
        raise MetricError(f"metric must be a name {sorted(METRICS)} or a function (logits, data) -> losses")
    elif n_outputs is not None:
        probe = torch.zeros(len(data), n_outputs)
        try:
            per_example(metric, probe, data, probe)
        except MetricError as exc:
            raise MetricError(f"{exc} (checked on uniform logits [{len(data)}, {n_outputs}] before running)") from None
        except Exception as exc:
            raise MetricError(
                f"metric {metric_name(metric)!r} raised {type(exc).__name__} on logits [{len(data)}, {n_outputs}]: {exc}"
            ) from exc


def per_example(metric: Metric, logits: torch.Tensor, data: Dataset, model_logits: torch.Tensor) -> np.ndarray:
    """One loss per example, checked: the right length, and finite."""
    name = metric_name(metric)
    fn = METRICS[metric] if isinstance(metric, str) else (lambda lg, d, _m: metric(lg, d))
    values = fn(logits, data, model_logits)
    try:
        arr = np.asarray(values.detach().cpu().double() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise MetricError(
            f"metric {name!r} returned {type(values).__name__}, not one number per example [{len(data)}] ({exc})"
        ) from None
    if arr.shape != (len(data),):
        raise MetricError(f"metric {name!r} returned shape {arr.shape}; expected one loss per example [{len(data)}]")
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise MetricError(f"metric {name!r} returned a non-finite loss ({arr[bad]}) for example {bad}")
    return arr
