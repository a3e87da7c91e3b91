"""Timing primitives: one thread, device synchronised, interleaved repetitions, medians with spread."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch

import scrub
from scrub._executor import _layout, _merge_groups, default_batch_size, n_blocks

__all__ = ["Spread", "sync", "timed", "plain_forward", "executor_rows", "batch_rows", "one_thread"]


def sync(device: torch.device | str) -> None:
    """Wait for queued kernels (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> tuple[float, object]:
    """Wall seconds of ``fn()``, synchronised on ``device`` before and after, and its result."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


@dataclass
class Spread:
    """Median of repeated measurements with their range and interquartile range."""

    values: list[float]

    @property
    def median(self) -> float:
        return float(np.median(self.values))

    @property
    def lo(self) -> float:
        return float(np.min(self.values))

    @property
    def hi(self) -> float:
        return float(np.max(self.values))

    @property
    def iqr(self) -> tuple[float, float]:
        return float(np.percentile(self.values, 25)), float(np.percentile(self.values, 75))

    def fmt(self, unit: str = "", digits: int = 3) -> str:
        if len(self.values) == 1:
            return f"{self.median:.{digits}g}{unit} (1 run)"
        return f"{self.median:.{digits}g}{unit} [{self.lo:.{digits}g}..{self.hi:.{digits}g}]"


def executor_rows(plan, data, model=None) -> dict[str, int]:
    """Rows the executor runs, counted three ways, and its batch size.

    ``issue_rows``: (instances + random contexts) x N, the issue's definition of the limit;
    ``block_rows``: blocks x N after host and context blocks merge (the executor before passes
    were truncated); ``forward_rows``: rows actually sent through the model (gathered embedding
    blocks excluded; truncated passes counted as full rows); ``depth_rows``: the same weighted by
    the fraction of the model each pass runs.
    """
    full = 2 * plan.graph.n_layers + 1
    rows = {"block_rows": 0, "forward_rows": 0, "depth_rows": 0.0}
    blocks = 0
    masks = model is not None and scrub.Architecture.of(model).per_layer_masks
    for merge, refs in _merge_groups(plan, data, masks):  # padded data: references whose heads may merge, and the rest
        lay, n = _layout(plan, merge), len(refs)
        blocks = max(blocks, lay.n_blocks)
        rows["block_rows"] += lay.n_blocks * n
        rows["forward_rows"] += sum(len(b) for _, b in lay.passes) * n
        rows["depth_rows"] += sum(len(b) * min(s, full) / full for s, b in lay.passes) * n
    return {
        "issue_rows": (len(plan.instances) + plan.n_random) * plan.n,
        "block_rows": int(rows["block_rows"]),
        "forward_rows": int(rows["forward_rows"]),
        "depth_rows": round(rows["depth_rows"]),
        "n_blocks": blocks,
    }


def plain_forward(model, data: scrub.Dataset, rows: int, batch_size: int, seed: int = 0, shuffle: bool = True) -> None:
    """``model(tokens)`` (no hooks) over ``rows`` rows drawn from ``data`` (or, with ``shuffle=False``,
    its first ``rows`` examples in order), ``batch_size`` rows at a time."""
    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, rows, batch_size):
            size = min(batch_size, rows - start)
            idx = torch.from_numpy(rng.integers(0, len(data), size=size) if shuffle else np.arange(start, start + size) % len(data))
            kw = {} if data.attention_mask is None else {"attention_mask": data.attention_mask[idx].to(device)}
            model(data.tokens[idx].to(device), **kw)


def batch_rows(model, data: scrub.Dataset, plan, batch_size: int | None) -> int:
    """Rows per forward pass the executor uses (its chunk of references times its blocks)."""
    size = batch_size or default_batch_size(model, data.seq_len)
    blocks = n_blocks(plan, data, model)
    return max(1, size // blocks) * blocks


def one_thread() -> None:
    """Pin torch (and BLAS, for subprocesses) to one thread."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    torch.set_num_threads(1)

