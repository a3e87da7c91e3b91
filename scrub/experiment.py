"""``scrub.run``: score a hypothesis by the fraction of loss it recovers."""

from __future__ import annotations

import hashlib
import json
import platform
import warnings
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch

from scrub.checkpoint import model_config, weights_hash
from scrub.dataset import Dataset
from scrub.executor import _layout, default_batch_size, model_device, run_clean, run_plan
from scrub.graph import ModelGraph
from scrub.hypothesis import Hypothesis
from scrub.metrics import METRICS, Metric, check_metric, metric_name, per_example
from scrub.plan import make_plan
from scrub.result import Result, bootstrap_ci, recovered
from scrub.errors import ReproductionError

__all__ = ["run", "run_many", "reproduce", "fully_scrubbed", "check_data", "ReproductionError"]

_T = TypeVar("_T")



def fully_scrubbed() -> Hypothesis:
    """The default baseline, "nothing matters": the output fed a random example, scored on the reference's label."""
    h = Hypothesis("fully scrubbed")
    h.output()
    return h


def check_data(model, data: Dataset) -> None:
    """Reject data the model cannot run on, naming what is wrong."""
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a scrub.Dataset, got {type(data).__name__}")
    cfg = model.cfg
    if data.seq_len > cfg.n_ctx:
        raise ValueError(f"Dataset: sequences have length {data.seq_len} but the model's context is n_ctx={cfg.n_ctx}")
    lo, hi = int(data.tokens.min()), int(data.tokens.max())
    if lo < 0 or hi >= cfg.d_vocab:
        raise ValueError(f"Dataset: tokens range over {lo}..{hi} but the model's vocabulary is 0..{cfg.d_vocab - 1}")
    d_out = getattr(cfg, "d_vocab_out", -1)
    d_out = cfg.d_vocab if d_out is None or d_out < 0 else d_out
    if data.labels is not None and (int(data.labels.min()) < 0 or int(data.labels.max()) >= d_out):
        raise ValueError(f"Dataset: labels range over {int(data.labels.min())}..{int(data.labels.max())} "
                         f"but the model has {d_out} outputs")


def _data_hash(data: Dataset) -> str:
    h = hashlib.sha256(data.tokens.numpy().tobytes())
    for t in (data.labels, data.target_pos, data.attention_mask):
        h.update(b"|" + (b"" if t is None else t.numpy().tobytes()))
    h.update(pd.util.hash_pandas_object(data.columns, index=True).to_numpy().tobytes() if len(data.columns.columns) else b"")
    return h.hexdigest()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("scrub", "torch", "transformer-lens", "numpy", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def run(
    model,
    hypothesis: Hypothesis,
    data: Dataset,
    *,
    baseline: Hypothesis | None = None,
    metric: Metric = "loss",
    seed: int = 0,
    n_seeds: int = 1,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    n_boot: int = 1000,
) -> Result:
    """Causally scrub ``model`` under ``hypothesis`` on ``data``.

    Args:
        model: a TransformerLens ``TransformerBridge`` (or a model with its hook names).
        hypothesis: the :class:`~scrub.Hypothesis` to test.
        data: the :class:`~scrub.Dataset`; every example is a reference once per seed.
        baseline: the hypothesis whose loss counts as 0% recovered; default: fully scrubbed
            (the output fed a random example).
        metric: ``"loss"`` (cross-entropy at the target position), ``"kl"``, ``"accuracy"``
            (scored as error rate) or a function ``(logits [N, vocab], data) -> [N]`` losses.
        seed: seeds the sampling; seeds ``seed .. seed + n_seeds - 1`` are run and pooled.
        batch_size: rows per forward pass (default: sized to the model and sequence length).
        device: move the model and data there (default: where the model is).
        progress: show progress bars (default: when writing to a terminal).
        n_boot: bootstrap resamples for the interval.

    Returns:
        a :class:`~scrub.Result`.

    Everything is validated (hypothesis against the model's graph, features and positions on
    the data, the metric) before any model runs.
    """
    (result,) = run_many(
        model, [hypothesis], data, baseline=baseline, metric=metric, seed=seed, n_seeds=n_seeds,
        batch_size=batch_size, device=device, progress=progress, n_boot=n_boot,
    )
    return result


def run_many(
    model,
    hypotheses: Sequence[Hypothesis],
    data: Dataset,
    *,
    baseline: Hypothesis | None = None,
    metric: Metric = "loss",
    seed: int = 0,
    n_seeds: int = 1,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    n_boot: int = 1000,
) -> list[Result]:
    """:func:`run` for several hypotheses on the same model, data and seeds.

    The model's clean run and the baseline are computed once and shared, and every hypothesis is
    sampled with the same seeds, so differences between the results are paired (common random
    numbers). Each Result equals what :func:`run` gives for that hypothesis alone. Arguments as
    for :func:`run`; every hypothesis is validated before any model runs.
    """
    hypotheses = list(hypotheses)
    if not hypotheses:
        raise ValueError("run_many needs at least one hypothesis")
    graph = ModelGraph.from_model(model)
    check_data(model, data)
    check_metric(metric, data, _n_outputs(model))
    if n_seeds < 1:
        raise ValueError(f"n_seeds must be at least 1, got {n_seeds}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of rows per forward pass, got {batch_size}")
    baseline = baseline or fully_scrubbed()
    seeds = [seed + k for k in range(n_seeds)]
    # the baseline is sampled with the same seed: common random numbers (an identical hypothesis
    # gives identical samples, and the ratio's variance shrinks)
    plans = [[make_plan(h, graph, data, s) for s in seeds] for h in hypotheses]
    base_plans = [make_plan(baseline, graph, data, s, warn=False) for s in seeds]
    if device is not None:
        model.to(device)
    rows = [batch_size or default_batch_size(model, data.seq_len)]  # shrinks if a pass does not fit in memory
    masked = data.attention_mask is not None
    floor = max(_layout(p, masked).n_blocks for p in [*base_plans, *(p for ps in plans for p in ps)])

    def scrub(plan, desc: str) -> np.ndarray:
        logits = _fitting(
            lambda b: run_plan(model, plan, data, batch_size=b, progress=progress, desc=desc), rows, floor, model
        )
        return per_example(metric, logits, data, model_logits)

    model_logits = _fitting(lambda b: run_clean(model, data, batch_size=b), rows, 1, model)
    loss_model = per_example(metric, model_logits, data, model_logits)
    loss_base = [scrub(p, f"baseline (seed {s})") for s, p in zip(seeds, base_plans)]
    lm, lb = float(loss_model.mean()), float(np.mean(loss_base))
    if abs(lb - lm) <= 1e-6 * max(1.0, abs(lm)):  # float noise of an identical computation
        raise ValueError(
            f"the baseline {baseline.name!r} has the model's own loss ({lb:.6g} vs {lm:.6g}): the fraction recovered "
            "has a zero denominator and is undefined; use a baseline that removes the behaviour"
        )
    shared = {
        "seed": seed,
        "n_seeds": n_seeds,
        "versions": _versions(),
        "model_config": model_config(model),
        "weights_sha256": weights_hash(model),
        "data_sha256": _data_hash(data),
        "device": str(next(model.parameters()).device),
    }
    results = []
    for h, hplans in zip(hypotheses, plans):
        table = pd.concat(
            [
                pd.DataFrame(
                    {
                        "example": np.arange(len(data)),
                        "seed": s,
                        "loss_model": loss_model,
                        "loss_scrubbed": scrub(p, f"{h.name} (seed {s})"),
                        "loss_baseline": base,
                    }
                )
                for s, p, base in zip(seeds, hplans, loss_base)
            ],
            ignore_index=True,
        )
        lm, ls, lb = (float(table[c].mean()) for c in ("loss_model", "loss_scrubbed", "loss_baseline"))
        results.append(
            Result(
                hypothesis=h.name,
                baseline=baseline.name,
                metric=metric_name(metric),
                loss_model=lm,
                loss_scrubbed=ls,
                loss_baseline=lb,
                loss_recovered=recovered(lm, ls, lb),
                ci=bootstrap_ci(table, n_boot=n_boot, seed=seed),
                ci_method=f"percentile bootstrap over examples, {n_boot} resamples, 95%, {n_seeds} seed(s) pooled per example",
                n_examples=len(data),
                seeds=seeds,
                plan_size={"instances": len(hplans[0].instances), "random_contexts": hplans[0].n_random},
                per_example=table,
                record={
                    **shared,
                    "hypothesis": h.name,
                    "baseline": baseline.name,
                    "metric": metric_name(metric),
                    "batch_size": rows[0],
                    "n_boot": n_boot,
                },
                spec=h,
                graph=graph,
            )
        )
    return results


def _n_outputs(model) -> int:
    cfg = model.cfg
    d_out = getattr(cfg, "d_vocab_out", -1)
    return int(cfg.d_vocab if d_out is None or d_out < 0 else d_out)


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("out of memory", "can't allocate memory", "not enough memory", "failed to allocate")
    )


def _fitting(step: Callable[[int], _T], rows: list[int], floor: int, model) -> _T:
    """Run ``step(batch_size)``, halving the batch size while a pass does not fit in memory.

    ``rows[0]`` holds the batch size and is updated, so later steps start from what fitted.
    ``floor`` is the smallest pass the plan can make (one reference: one row per block).
    """
    while True:
        try:
            return step(rows[0])
        except Exception as exc:
            if not _is_oom(exc):
                raise
            device = model_device(model)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if rows[0] <= floor:
                raise MemoryError(
                    f"the scrub does not fit in memory on {device} even one reference at a time "
                    f"({floor} rows of {_describe_rows(model)} per pass): use a device with more memory, a shorter "
                    "sequence, or a hypothesis with fewer instances (per-position features multiply them)"
                ) from exc
            smaller = max(floor, rows[0] // 2)
            warnings.warn(
                f"a forward pass of batch_size={rows[0]} rows ran out of memory on {device}; retrying with "
                f"batch_size={smaller} (pass batch_size={smaller} or less to scrub.run to skip this search)",
                stacklevel=3,
            )
            rows[0] = smaller


def _describe_rows(model) -> str:
    cfg = model.cfg
    return f"{cfg.n_layers} layers x d_model {cfg.d_model}"


def reproduce(
    record: Mapping[str, Any] | Result | str,
    model,
    hypothesis: Hypothesis,
    data: Dataset,
    *,
    baseline: Hypothesis | None = None,
    metric: Metric | None = None,
    strict_versions: bool = False,
) -> Result:
    """Run again what ``record`` describes, and check it is the same run.

    ``record`` is :attr:`Result.record` (or the Result, or its JSON text). The model's weights and
    config, the data and the hypothesis's name must match the record: a mismatch raises
    :class:`ReproductionError` naming each field. Seeds, seed count, batch size and bootstrap size
    are taken from the record. On the same device and package versions the returned Result equals
    the recorded one bit for bit; differing versions give a warning (or an error with
    ``strict_versions=True``), since kernels may change the last bits.

    A custom metric function cannot be recorded: pass it again as ``metric=``.
    """
    if isinstance(record, Result):
        record = record.record
    elif isinstance(record, str):
        record = json.loads(record)
    missing = [k for k in ("seed", "n_seeds", "weights_sha256", "data_sha256", "batch_size") if k not in record]
    if missing:
        raise ReproductionError(f"the record lacks {missing}: it was not written by this version of scrub.run")
    problems = []
    if weights_hash(model) != record["weights_sha256"]:
        problems.append(f"weights_sha256 (the model's weights hash to {weights_hash(model)[:12]}..., "
                        f"the record has {record['weights_sha256'][:12]}...)")
    cfg = json.loads(json.dumps(model_config(model), default=str))
    rec_cfg = record.get("model_config")
    if rec_cfg is not None and cfg != rec_cfg:
        keys = sorted(k for k in set(cfg) | set(rec_cfg) if cfg.get(k) != rec_cfg.get(k))
        problems.append(f"model_config (differs in {keys})")
    if _data_hash(data) != record["data_sha256"]:
        problems.append("data_sha256 (the dataset differs: tokens, labels, target positions, mask or columns)")
    if record.get("hypothesis") not in (None, hypothesis.name):
        problems.append(f"hypothesis (the record scored {record['hypothesis']!r}, given {hypothesis.name!r})")
    base_name = (baseline or fully_scrubbed()).name
    if record.get("baseline") not in (None, base_name):
        problems.append(f"baseline (the record used {record['baseline']!r}, given {base_name!r})")
    if metric is None:
        metric = record.get("metric", "loss")
        if metric not in METRICS:
            problems.append(f"metric (the record used the custom metric {metric!r}: pass it as metric=)")
    elif record.get("metric") not in (None, metric_name(metric)):
        problems.append(f"metric (the record used {record['metric']!r}, given {metric_name(metric)!r})")
    if problems:
        raise ReproductionError("this is not the recorded run: " + "; ".join(problems))
    versions = _versions()
    changed = {k: (v, versions.get(k)) for k, v in record.get("versions", {}).items() if versions.get(k) != v}
    if changed:
        msg = "package versions differ from the record (recorded, now): " + ", ".join(
            f"{k} {a} -> {b}" for k, (a, b) in changed.items()
        )
        if strict_versions:
            raise ReproductionError(msg)
        warnings.warn(msg + "; the score may differ in its last bits", stacklevel=2)
    return run(
        model, hypothesis, data, baseline=baseline, metric=metric, seed=record["seed"], n_seeds=record["n_seeds"],
        batch_size=record["batch_size"], n_boot=record.get("n_boot", 1000), progress=False,
    )
