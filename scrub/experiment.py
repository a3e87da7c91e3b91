"""``scrub.run``: score a hypothesis by the fraction of loss it recovers."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata

import numpy as np
import pandas as pd
import torch

from scrub.checkpoint import model_config, weights_hash
from scrub.dataset import Dataset
from scrub.executor import run_clean, run_plan
from scrub.graph import ModelGraph
from scrub.hypothesis import Hypothesis
from scrub.metrics import Metric, check_metric, metric_name, per_example
from scrub.plan import make_plan
from scrub.result import Result, bootstrap_ci, recovered

__all__ = ["run", "fully_scrubbed", "check_data"]


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
    graph = ModelGraph.from_model(model)
    check_data(model, data)
    check_metric(metric, data)
    if n_seeds < 1:
        raise ValueError(f"n_seeds must be at least 1, got {n_seeds}")
    baseline = baseline or fully_scrubbed()
    seeds = [seed + k for k in range(n_seeds)]
    # the baseline is sampled with the same seed: common random numbers (an identical hypothesis
    # gives identical samples, and the ratio's variance shrinks)
    plans = [(make_plan(hypothesis, graph, data, s), make_plan(baseline, graph, data, s, warn=False)) for s in seeds]
    if device is not None:
        model.to(device)
    model_logits = run_clean(model, data, batch_size=batch_size)
    loss_model = per_example(metric, model_logits, data, model_logits)
    frames = []
    for s, (plan, base_plan) in zip(seeds, plans):
        scrubbed = run_plan(model, plan, data, batch_size=batch_size, progress=progress, desc=f"{hypothesis.name} (seed {s})")
        base = run_plan(model, base_plan, data, batch_size=batch_size, progress=progress, desc=f"baseline (seed {s})")
        frames.append(
            pd.DataFrame(
                {
                    "example": np.arange(len(data)),
                    "seed": s,
                    "loss_model": loss_model,
                    "loss_scrubbed": per_example(metric, scrubbed, data, model_logits),
                    "loss_baseline": per_example(metric, base, data, model_logits),
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)
    lm, ls, lb = (float(table[c].mean()) for c in ("loss_model", "loss_scrubbed", "loss_baseline"))
    if abs(lb - lm) <= 1e-6 * max(1.0, abs(lm)):  # float noise of an identical computation
        raise ValueError(
            f"the baseline {baseline.name!r} has the model's own loss ({lb:.6g} vs {lm:.6g}): the fraction recovered "
            "has a zero denominator and is undefined; use a baseline that removes the behaviour"
        )
    ci = bootstrap_ci(table, n_boot=n_boot, seed=seed)
    first = plans[0][0]
    return Result(
        hypothesis=hypothesis.name,
        baseline=baseline.name,
        metric=metric_name(metric),
        loss_model=lm,
        loss_scrubbed=ls,
        loss_baseline=lb,
        loss_recovered=recovered(lm, ls, lb),
        ci=ci,
        ci_method=f"percentile bootstrap over examples, {n_boot} resamples, 95%, {n_seeds} seed(s) pooled per example",
        n_examples=len(data),
        seeds=seeds,
        plan_size={"instances": len(first.instances), "random_contexts": first.n_random},
        per_example=table,
        record={
            "seed": seed,
            "n_seeds": n_seeds,
            "versions": _versions(),
            "model_config": model_config(model),
            "weights_sha256": weights_hash(model),
            "data_sha256": _data_hash(data),
            "device": str(next(model.parameters()).device),
        },
        spec=hypothesis,
        graph=graph,
    )
