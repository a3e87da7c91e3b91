"""``scrub.run``: score a hypothesis by the fraction of loss it recovers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch

from scrub._ablation import NOT_CAUSAL, Ablation, Mean, Zero
from scrub._checkpoint import model_config, weights_hash
from scrub._dataset import Dataset
from scrub._executor import default_batch_size, model_device, n_blocks, run_clean, run_plan
from scrub._graph import ModelGraph
from scrub._hypothesis import Hypothesis
from scrub._metrics import METRICS, Metric, check_metric, metric_name, per_example
from scrub._options import RunOptions, resolve_options
from scrub._plan import make_plan
from scrub._result import Result, bootstrap_ci, recovered
from scrub._sampling import Exact, Random
from scrub.errors import (
    BaselineError,
    DatasetError,
    HypothesisError,
    ReproductionError,
    RunOptionsError,
)

__all__ = [
    "run", "run_many", "reproduce", "fully_scrubbed", "check_data", "hypothesis_fingerprint",
    "ReproductionError",
]

_T = TypeVar("_T")



def fully_scrubbed() -> Hypothesis:
    """The default baseline, "nothing matters": the output fed a random example, scored on the reference's label."""
    h = Hypothesis("fully scrubbed")
    h.output()
    return h


def check_data(model, data: Dataset) -> None:
    """Reject data the model cannot run on, naming what is wrong."""
    if not isinstance(data, Dataset):
        raise DatasetError(f"data must be a scrub.Dataset, got {type(data).__name__}")
    if len(data) < 2:
        raise DatasetError(f"Dataset: causal scrubbing needs at least 2 examples to sample from, the dataset has {len(data)}")
    cfg = model.cfg
    if data.seq_len > cfg.n_ctx:
        raise DatasetError(f"Dataset: sequences have length {data.seq_len} but the model's context is n_ctx={cfg.n_ctx}")
    lo, hi = int(data.tokens.min()), int(data.tokens.max())
    if lo < 0 or hi >= cfg.d_vocab:
        raise DatasetError(f"Dataset: tokens range over {lo}..{hi} but the model's vocabulary is 0..{cfg.d_vocab - 1}")
    d_out = getattr(cfg, "d_vocab_out", -1)
    d_out = cfg.d_vocab if d_out is None or d_out < 0 else d_out
    if data.labels is not None and (int(data.labels.min()) < 0 or int(data.labels.max()) >= d_out):
        raise DatasetError(f"Dataset: labels range over {int(data.labels.min())}..{int(data.labels.max())} "
                         f"but the model has {d_out} outputs")


def _data_hash(data: Dataset) -> str:
    h = hashlib.sha256(data.tokens.numpy().tobytes())
    for t in (data.labels, data.target_pos, data.attention_mask):
        h.update(b"|" + (b"" if t is None else t.numpy().tobytes()))
    for name in data.columns.columns:
        col = data.columns[name]
        h.update(b"|" + repr(name).encode())
        try:
            h.update(pd.util.hash_pandas_object(col, index=True).to_numpy().tobytes())  # pyright: ignore
        except TypeError:  # unhashable cells (lists, dicts): hash their text, which is stable for equal values
            h.update("\x1f".join(map(repr, col.tolist())).encode())
    return h.hexdigest()


def _check_hypothesis(h, what: str = "hypothesis") -> Hypothesis:
    if isinstance(h, Hypothesis):
        return h
    if callable(h):
        name = getattr(h, "__name__", type(h).__name__)
        raise HypothesisError(
            f"{what} is the function {name!r}, not a scrub.Hypothesis: call it ({name}()) and pass what it returns"
        )
    raise HypothesisError(f"{what} must be a scrub.Hypothesis, got {type(h).__name__} {h!r}"[:300])


def _feature_id(f) -> Any:
    if f is None or isinstance(f, str):
        return f
    if isinstance(f, (Exact, Random)) or f is Exact or f is Random:
        return getattr(f, "__name__", type(f).__name__)
    if isinstance(f, list):
        return list(f)
    return "fn:" + getattr(f, "__module__", "?") + "." + getattr(f, "__qualname__", type(f).__qualname__)


def _check_subspaces(h: Hypothesis, d_model: int) -> None:
    for node in h.nodes():
        sub = node.subspace
        if sub is not None and sub.d_model != d_model:
            raise HypothesisError(
                f"node {node.name!r}: its subspace lives in {sub.d_model} dimensions but the model's residual "
                f"stream has d_model={d_model}"
            )


def hypothesis_fingerprint(h: Hypothesis) -> str:
    """A SHA-256 of the hypothesis's structure: every node's name, model nodes, ports, positions and
    feature kind, and the tree's shape. Functions count by their qualified name (their code cannot be
    hashed reliably), so :func:`reproduce` also checks the rerun's score."""
    seen: set[int] = set()
    nodes = []

    def walk(n) -> None:
        if id(n) in seen:
            return
        seen.add(id(n))
        nodes.append({
            "name": n.name, "model": list(n.model), "port": None if n.port is None else list(n.port),
            "positions": _feature_id(n.positions), "agree": _feature_id(n.agree), "open": bool(n.open),
            "subspace": None if getattr(n, "subspace", None) is None else n.subspace.fingerprint(),
            "children": [c.name for c in n.children],
            # only where set, so fingerprints of hypotheses without neuron sets are unchanged
            **({} if getattr(n, "neurons", None) is None else {"neurons": list(n.neurons)}),
        })
        for c in n.children:
            walk(c)

    walk(h.root)
    return hashlib.sha256(json.dumps(nodes, sort_keys=True, default=str).encode()).hexdigest()


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
    options: RunOptions | None = None,
    baseline: Hypothesis | None = None,
    metric: Metric | None = None,
    seed: int | None = None,
    n_seeds: int | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    n_boot: int | None = None,
    ablation: Ablation | None = None,
    ray: str | None = None,
) -> Result:
    """Causally scrub ``model`` under ``hypothesis`` on ``data``.

    Args:
        model: a TransformerLens ``TransformerBridge`` (native, or a HuggingFace model wrapped by
            :func:`scrub.from_hf`).
        options: a :class:`~scrub.RunOptions` holding the options below; each keyword that is
            given (not None) overrides its field. Defaults: ``RunOptions()``.
        hypothesis: the :class:`~scrub.Hypothesis` to test.
        data: the :class:`~scrub.Dataset`; every example is a reference once per seed.
        baseline: the hypothesis whose loss counts as 0% recovered; default: fully scrubbed
            (the output fed a random example).
        metric: ``"loss"`` (cross-entropy at the target position), ``"kl"``, ``"accuracy"``
            (scored as error rate) or a function ``(logits [N, vocab], data) -> [N]`` losses.
        seed: seeds the sampling (a non-negative int; numpy ints are accepted); seeds
            ``seed .. seed + n_seeds - 1`` are run and pooled.
        n_seeds: how many seeds to pool, ``1 ..`` :data:`~scrub._options.MAX_SEEDS` (1000).
        batch_size: rows per forward pass, a positive int (default: sized to the model and
            sequence length).
        device: move the model and data there (default: where the model is): a string or a
            :class:`torch.device` available on this machine (not ``"meta"``). The model is moved
            only after every check has passed; a move that fails is undone.
        progress: show progress bars (default: when writing to a terminal).
        n_boot: bootstrap resamples for the interval, at least :data:`~scrub._result.MIN_BOOT` (100).
        ablation: :class:`~scrub.Mean` or :class:`~scrub.Zero` to give unclaimed inputs fixed values
            instead of resampling them: **not causal scrubbing** (the result says so). Default None.
        ray: run the scrubbed forward passes on a Ray cluster (``pip install 'scrub[ray]'``):
            ``"auto"`` or its address ``HOST:PORT``; the score is the same bit for bit, and
            ``record["ran_on"]`` says where it ran. The model must be on the CPU.

    Returns:
        a :class:`~scrub.Result`; its ``record`` holds what reproduces it, including the score
        and a fingerprint of the hypothesis (see :func:`reproduce`).

    Raises:
        HypothesisError: ``hypothesis`` is not a Hypothesis (e.g. the function that builds one),
            or does not fit the model's graph (:class:`~scrub.GraphError`) or the data.
        DatasetError, FeatureError, MetricError, RunOptionsError: a bad dataset, feature, metric
            or option, named in the message.
        BaselineError: the baseline has the model's own loss.
        ClusterError: ``ray=`` names a cluster that does not answer, or that lost the work.

    Everything is validated (options, hypothesis against the model's graph, features and
    positions on the data, the metric) before any model runs.
    """
    opts = resolve_options(options, metric=metric, seed=seed, n_seeds=n_seeds, batch_size=batch_size, device=device,
                           progress=progress, n_boot=n_boot, ablation=ablation, ray=ray)
    (result,) = run_many(model, [hypothesis], data, options=opts, baseline=baseline)
    return result


def run_many(
    model,
    hypotheses: Sequence[Hypothesis],
    data: Dataset,
    *,
    options: RunOptions | None = None,
    baseline: Hypothesis | None = None,
    metric: Metric | None = None,
    seed: int | None = None,
    n_seeds: int | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    n_boot: int | None = None,
    ablation: Ablation | None = None,
    ray: str | None = None,
) -> list[Result]:
    """:func:`run` for several hypotheses on the same model, data and seeds.

    The model's clean run and the baseline are computed once and shared, and every hypothesis is
    sampled with the same seeds, so differences between the results are paired (common random
    numbers). Each Result equals what :func:`run` gives for that hypothesis alone. Arguments as
    for :func:`run`; every hypothesis is validated before any model runs.
    """
    if isinstance(hypotheses, Hypothesis):
        raise HypothesisError("run_many takes a list of hypotheses: pass [h], or call scrub.run for one")
    if callable(hypotheses) or isinstance(hypotheses, (str, bytes, Mapping)) or not isinstance(hypotheses, Iterable):
        _check_hypothesis(hypotheses, "hypotheses")  # a function: "call it"; anything else: not a Hypothesis
    hypotheses = [_check_hypothesis(h, f"hypotheses[{i}]") for i, h in enumerate(hypotheses)]
    if not hypotheses:
        raise HypothesisError("run_many needs at least one hypothesis")
    baseline = fully_scrubbed() if baseline is None else _check_hypothesis(baseline, "baseline")
    opts = resolve_options(options, metric=metric, seed=seed, n_seeds=n_seeds, batch_size=batch_size, device=device,
                           progress=progress, n_boot=n_boot, ablation=ablation, ray=ray)
    return score_many(model, hypotheses, data, opts, baseline)


def score_many(model, hypotheses: list[Hypothesis], data: Dataset, opts: RunOptions, baseline: Hypothesis,
               shared: dict | None = None) -> list[Result]:
    """:func:`run_many` on checked hypotheses and resolved options.

    ``shared``: a dict kept between calls on the same model, data, baseline and options (a search
    scoring batch after batch, :func:`scrub.discover`): the clean run's logits and the baseline's
    losses are computed by the first call and reused by the later ones (the same numbers the
    later calls would compute).
    """
    seed, n_seeds, batch_size, n_boot, metric = opts.seed, opts.n_seeds, opts.batch_size, opts.n_boot, opts.metric
    progress = opts.progress
    target: torch.device | None = opts.torch_device
    graph = ModelGraph.from_model(model)
    for h in [*hypotheses, baseline]:
        _check_subspaces(h, int(model.cfg.d_model))
    check_data(model, data)
    check_metric(metric, data, _n_outputs(model))
    seeds = opts.seeds
    # the baseline is sampled with the same seed: common random numbers (an identical hypothesis
    # gives identical samples, and the ratio's variance shrinks)
    plans = [[make_plan(h, graph, data, s) for s in seeds] for h in hypotheses]
    # a search's later batches reuse the clean run and the baseline's losses (same model, data and options)
    key = (id(model), id(data), hypothesis_fingerprint(baseline), metric_name(metric), tuple(seeds),
           None if opts.ablation is None else opts.ablation.name)
    reuse = shared is not None and shared.get("key") == key and opts.ray is None
    base_plans = [] if reuse else [make_plan(baseline, graph, data, s, warn=False) for s in seeds]
    if target is not None:
        _move(model, target)
    cluster = None if opts.ray is None else _connect(opts.ray, model)
    rows = [batch_size or default_batch_size(model, data.seq_len)]  # shrinks if a pass does not fit in memory
    floor = max(n_blocks(p, data) for p in [*base_plans, *(p for ps in plans for p in ps)])
    base_descs = [f"the baseline {baseline.name!r} (seed {s})" for s in seeds]
    descs = [[f"hypothesis {h.name!r} (seed {s})" for s in seeds] for h in hypotheses]

    def scrub(plan, desc: str) -> np.ndarray:
        try:
            logits = _fitting(
                lambda b: run_plan(model, plan, data, batch_size=b, progress=progress, desc=desc, ablation=opts.ablation),
                rows, floor, model
            )
            return per_example(metric, logits, data, model_logits)
        except Exception as exc:  # say which run failed, keeping the error's type
            exc.add_note(f"while scoring {desc} on {len(data)} examples")
            raise

    if reuse:
        assert shared is not None
        model_logits = shared["model_logits"]
    else:
        model_logits = _fitting(lambda b: run_clean(model, data, batch_size=b), rows, 1, model)
    loss_model = per_example(metric, model_logits, data, model_logits)
    hyp_losses: list[list[np.ndarray]] = []
    if cluster is not None:  # every plan's passes on the cluster, in the chunks a local run makes
        from scrub._distributed import run_plans

        flat = [*base_plans, *(p for ps in plans for p in ps)]
        flat_descs = [*base_descs, *(d for ds in descs for d in ds)]
        losses = iter(run_plans(
            cluster, model, data, flat, batch_size=rows[0], descs=flat_descs, progress=progress, ablation=opts.ablation,
            finish=lambda k, logits: per_example(metric, logits, data, model_logits),
        ))
        loss_base = [next(losses) for _ in seeds]
        hyp_losses = [[next(losses) for _ in seeds] for _ in hypotheses]
    elif reuse:
        assert shared is not None
        loss_base = shared["loss_base"]
    else:
        loss_base = [scrub(p, d) for p, d in zip(base_plans, base_descs, strict=True)]
    if shared is not None:
        shared.update(key=key, model_logits=model_logits, loss_base=loss_base)
    lm, lb = float(loss_model.mean()), float(np.mean(loss_base))
    if abs(lb - lm) <= 1e-6 * max(1.0, abs(lm)):  # float noise of an identical computation
        raise BaselineError(
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
        "ran_on": "here" if cluster is None else cluster.describe(),
        # only when set: a mean or zero ablation is not causal scrubbing, and the record says so
        **({} if opts.ablation is None else {"ablation": opts.ablation.name, "method": f"{opts.ablation.name} ablation "
                                             f"of unclaimed inputs ({NOT_CAUSAL})"}),
    }
    results = []
    fixed_base = _fixed_claims(baseline)
    for k, (h, hplans) in enumerate(zip(hypotheses, plans, strict=True)):
        fixed = _fixed_claims(h)
        scrubbed = hyp_losses[k] if cluster is not None else [scrub(p, d) for p, d in zip(hplans, descs[k], strict=True)]
        table = pd.concat(
            [
                pd.DataFrame(
                    {
                        "example": np.arange(len(data)),
                        "seed": s,
                        "loss_model": loss_model,
                        "loss_scrubbed": loss,
                        "loss_baseline": base,
                    }
                )
                for s, loss, base in zip(seeds, scrubbed, loss_base, strict=True)
            ],
            ignore_index=True,
        )
        lm, ls, lb = (float(table[c].to_numpy().mean()) for c in ("loss_model", "loss_scrubbed", "loss_baseline"))
        ci = bootstrap_ci(table, n_boot=n_boot, seed=seed)
        results.append(
            Result(
                hypothesis=h.name,
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
                plan_size={"instances": len(hplans[0].instances), "random_contexts": hplans[0].n_random},
                per_example=table,
                record={
                    **shared,
                    "hypothesis": h.name,
                    "baseline": baseline.name,
                    "metric": metric_name(metric),
                    "batch_size": rows[0],
                    "n_boot": n_boot,
                    # only when some are: claims fixed to a mean or zero (agree=Mean()/Zero()) are not causal scrubbing
                    **({"fixed_claims": fixed} if fixed else {}),
                    **({"baseline_fixed_claims": fixed_base} if fixed_base else {}),
                    "hypothesis_fingerprint": hypothesis_fingerprint(h),
                    "baseline_fingerprint": hypothesis_fingerprint(baseline),
                    "score": {"loss_model": lm, "loss_scrubbed": ls, "loss_baseline": lb,
                              "loss_recovered": recovered(lm, ls, lb), "ci": list(ci)},
                },
                spec=h,
                graph=graph,
            )
        )
    return results


def _fixed_claims(h: Hypothesis) -> dict[str, str]:
    """The nodes claimed as a fixed value (``agree=scrub.Mean()`` or ``scrub.Zero()``), by name: ``"mean"``/``"zero"``."""
    return {n.name: n.agree.name for n in h.nodes() if isinstance(n.agree, (Mean, Zero))}


def _connect(address: str, model):
    """The Ray cluster at ``address`` (scrub._distributed), for a model the workers can run."""
    from scrub._distributed import connect

    device = model_device(model)
    if device.type != "cpu":
        raise RunOptionsError(
            f"ray={address!r} runs the forward passes on the workers' CPUs, but the model is on {device}: "
            "move it with model.to('cpu') (or pass device='cpu'), or score here without ray="
        )
    return connect(address)


def _move(model, device: torch.device) -> None:
    """Move ``model`` to ``device``; if the move fails part-way, move it back and say so."""
    try:
        before = model_device(model)
    except Exception:  # a model without parameters: nothing to restore
        before = None
    try:
        model.to(device)
    except Exception as exc:
        if before is not None:
            with contextlib.suppress(Exception):
                model.to(before)
        raise RunOptionsError(f"device={str(device)!r}: moving the model there failed ({type(exc).__name__}: {exc})") from exc


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


#: Record fields :func:`reproduce` needs, and the types each must have.
_RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "seed": (int,), "n_seeds": (int,), "batch_size": (int,), "n_boot": (int,),
    "weights_sha256": (str,), "data_sha256": (str,), "hypothesis": (str,), "baseline": (str,), "metric": (str,),
    "hypothesis_fingerprint": (str,), "baseline_fingerprint": (str,), "score": (dict,),
}
_OPTIONAL_FIELDS: dict[str, tuple[type, ...]] = {"model_config": (dict,), "versions": (dict,), "device": (str,)}
_SCORE_FIELDS = ("loss_model", "loss_scrubbed", "loss_baseline", "loss_recovered")


def _parse_record(record) -> dict[str, Any]:
    """``record`` (a Result, its record dict or that dict's JSON text) as a checked dict, or a ReproductionError."""
    if isinstance(record, Result):
        record = record.record
    elif isinstance(record, (str, bytes)):
        text = record.decode(errors="replace") if isinstance(record, bytes) else record
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            hint = ""
            if text.strip() and not text.lstrip().startswith(("{", "[")) and len(text) < 4096:
                hint = " (to use a file, pass json.loads(open(path).read()), or the record of one case of a --json file)"
            raise ReproductionError(
                f"the record is not JSON ({exc.msg} at character {exc.pos} of {len(text)}){hint}; pass "
                "Result.record, the Result, or json.dumps(Result.record)"
            ) from None
    elif isinstance(record, os.PathLike):
        raise ReproductionError(
            f"the record is a path ({os.fspath(record)!r}); pass json.loads(path.read_text()) or the Result itself"
        )
    if not isinstance(record, Mapping):
        raise ReproductionError(
            f"the record must be a dict (Result.record), a Result or its JSON text; got {type(record).__name__}"
        )
    missing = [k for k in _RECORD_FIELDS if k not in record]
    if missing:
        raise ReproductionError(f"the record lacks {missing}: it was not written by this version of scrub.run")
    wrong = []
    for k, types in {**_RECORD_FIELDS, **_OPTIONAL_FIELDS}.items():
        if k not in record or (record[k] is None and k in _OPTIONAL_FIELDS):
            continue
        if not isinstance(record[k], types) or isinstance(record[k], bool):
            wrong.append(f"{k} is {type(record[k]).__name__} {record[k]!r}, not {types[0].__name__}"[:120])
    score = record["score"]
    if isinstance(score, Mapping):
        for k in _SCORE_FIELDS:
            v = score.get(k)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                wrong.append(f"score.{k} is {type(v).__name__} {v!r}, not a number"[:120])
    if wrong:
        raise ReproductionError("the record's fields have the wrong type: " + "; ".join(wrong))
    return dict(record)


def _score_differences(record: dict[str, Any], result: Result, rtol: float) -> list[str]:
    rec = record["score"]
    now = {"loss_model": result.loss_model, "loss_scrubbed": result.loss_scrubbed,
           "loss_baseline": result.loss_baseline, "loss_recovered": result.loss_recovered}
    out = []
    for k, v in now.items():
        if not np.isclose(v, float(rec[k]), rtol=rtol, atol=1e-12):
            out.append(f"{k} (recorded {float(rec[k]):.10g}, rerun {v:.10g})")
    ci = rec.get("ci")
    numbers = isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(c, (int, float)) for c in ci)
    if numbers and not np.allclose(result.ci, [float(c) for c in ci], rtol=rtol, atol=1e-12):
        out.append(f"ci (recorded {list(ci)}, rerun {list(result.ci)})")
    return out


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
    """Run again what ``record`` describes, and check it is the same run with the same score.

    ``record`` is :attr:`Result.record` (or the Result, or its JSON text). The model's weights and
    config, the data, the hypothesis (its name and its structure: nodes, model nodes, ports,
    positions and feature kinds) and the baseline must match the record: a mismatch raises
    :class:`ReproductionError` naming each field. Seeds, seed count, batch size and bootstrap size
    are taken from the record. The rerun's losses, fraction recovered and interval are then
    compared with the recorded ones: on the same device and package versions they must agree to
    a relative 1e-9 (they are equal bit for bit), elsewhere to 1e-4, since kernels may change the
    last bits; differing versions also give a warning (or an error with ``strict_versions=True``).
    A score that differs (an edited seed, seed count or metric in the record, or a feature
    function that changed) raises :class:`ReproductionError` naming the numbers.

    A custom metric function cannot be recorded: pass it again as ``metric=``.
    """
    record = _parse_record(record)
    hypothesis = _check_hypothesis(hypothesis)
    baseline = fully_scrubbed() if baseline is None else _check_hypothesis(baseline, "baseline")
    if not isinstance(data, Dataset):
        raise DatasetError(f"data must be a scrub.Dataset, got {type(data).__name__}")
    ModelGraph.from_model(model)  # an unsupported model is named before its weights are hashed
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
    if record["hypothesis"] != hypothesis.name:
        problems.append(f"hypothesis (the record scored {record['hypothesis']!r}, given {hypothesis.name!r})")
    elif record["hypothesis_fingerprint"] != hypothesis_fingerprint(hypothesis):
        problems.append(
            f"hypothesis_fingerprint (the hypothesis {hypothesis.name!r} has the recorded name but a different "
            "structure: its nodes, model nodes, ports, positions or features differ)"
        )
    if record["baseline"] != baseline.name:
        problems.append(f"baseline (the record used {record['baseline']!r}, given {baseline.name!r})")
    elif record["baseline_fingerprint"] != hypothesis_fingerprint(baseline):
        problems.append(f"baseline_fingerprint (the baseline {baseline.name!r} has a different structure)")
    if metric is None:
        metric = str(record["metric"])
        if metric not in METRICS:
            problems.append(f"metric (the record used the custom metric {metric!r}: pass it as metric=)")
    elif record["metric"] != metric_name(metric):
        problems.append(f"metric (the record used {record['metric']!r}, given {metric_name(metric)!r})")
    if problems:
        raise ReproductionError("this is not the recorded run: " + "; ".join(problems))
    versions = _versions()
    changed = {k: (v, versions.get(k)) for k, v in (record.get("versions") or {}).items() if versions.get(k) != v}
    if changed:
        msg = "package versions differ from the record (recorded, now): " + ", ".join(
            f"{k} {a} -> {b}" for k, (a, b) in changed.items()
        )
        if strict_versions:
            raise ReproductionError(msg)
        warnings.warn(msg + "; the score may differ in its last bits", stacklevel=2)
    try:
        again = run(
            model, hypothesis, data, baseline=baseline, options=RunOptions.from_record(record, metric=metric),
        )
    except RunOptionsError as exc:
        raise ReproductionError(f"the record's run options are not valid: {exc}") from exc
    same_place = not changed and record.get("device") in (None, again.record["device"])
    rtol = 1e-9 if same_place else 1e-4
    diff = _score_differences(record, again, rtol)
    if diff:
        raise ReproductionError(
            "the rerun does not give the recorded score: " + "; ".join(diff) + f" (relative tolerance {rtol:g}). "
            "The record's seed, n_seeds, n_boot or metric was edited, or a feature, positions or metric "
            "function changed since the run"
        )
    return again
