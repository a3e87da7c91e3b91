"""Plain ACDC (Conmy et al., 2023), the baseline :func:`scrub.discover` is compared with.

Single-level patching against a corrupted input (:func:`scrub._attribution.corrupt`: the examples
reordered, resample patching): receivers are visited from the output back, in reverse forward
order; each incoming edge of a receiver still connected to the output is patched to its
corrupted value, and removed for good when the mean loss rises by less than ``tau`` times the gap
between the fully corrupted and the clean loss. One patched forward pass per edge tested.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
import torch

from scrub._attribution import Edge, EdgePatcher, corrupt, edges_of, losses, one_pass_seconds
from scrub._dataset import Dataset
from scrub._metrics import Metric, check_metric

__all__ = ["acdc", "PeerResult"]


@dataclass
class PeerResult:
    """A peer algorithm's circuit (ACDC, or EAP cut at a size) on one model and dataset.

    Attributes:
        edges: the edges kept, on a path to the output.
        ranking: one row per edge: ``up, node, port, score`` (higher: more important; for ACDC the
            loss increase when the edge was tested, ``-inf`` for edges never tested), ``kept``.
        forward_passes: patched or clean forward passes over the data (a backward pass counts 2).
        seconds: wall time; ``forward_equivalents``: seconds / one plain forward pass over the data.
    """

    method: str
    edges: set[Edge]
    ranking: pd.DataFrame = field(repr=False)
    forward_passes: int = 0
    seconds: float = 0.0
    forward_equivalents: float = 0.0


def _connected(kept: set[Edge], node: str) -> bool:
    """Whether ``node`` still reaches the output through kept edges."""
    if node == "out":
        return True
    stack, seen = [node], set()
    out_of: dict[str, list[str]] = {}
    for u, c, _ in kept:
        out_of.setdefault(u, []).append(c)
    while stack:
        n = stack.pop()
        if n == "out":
            return True
        if n in seen:
            continue
        seen.add(n)
        stack.extend(out_of.get(n, []))
    return False


def acdc(model, data: Dataset, *, metric: Metric = "loss", tau: float = 0.01, corrupted: Dataset | None = None,
         seed: int = 0) -> PeerResult:
    """Run plain ACDC: prune every edge whose patching raises the loss by less than ``tau`` x (corrupted - clean).

    Args:
        model: a TransformerLens model (as :class:`~scrub._attribution.EdgePatcher` supports).
        data: the examples (one batch); ``corrupted``: the corrupted inputs (default: ``data`` reordered
            with ``seed``).
        metric: as for :func:`scrub.run`.
        tau: the threshold, as a fraction of the clean-to-corrupted loss gap.

    Returns:
        a :class:`PeerResult`; ``forward_passes`` counts every pass (one per edge tested, plus the
        clean, corrupted and fully patched ones).
    """
    check_metric(metric, data)
    one = one_pass_seconds(model, data)
    t0 = time.perf_counter()
    patcher = EdgePatcher(model)
    graph = patcher.graph
    corrupted = corrupt(data, seed) if corrupted is None else corrupted
    tokens, tp, mask = data.tokens, data.target_pos, data.attention_mask
    passes = 0
    with torch.no_grad():
        corr = patcher.forward(corrupted.tokens, tp, attention_mask=corrupted.attention_mask).outputs
        clean = patcher.forward(tokens, tp, attention_mask=mask).logits
        passes += 2
        removed: dict[tuple[str, str], list[str]] = {}

        def delta(node: str, port: str, outs: dict[str, torch.Tensor]) -> torch.Tensor | None:
            ups = removed.get((node, port))
            if not ups:
                return None
            total = corr[ups[0]] - outs[ups[0]]
            for u in ups[1:]:
                total = total + (corr[u] - outs[u])
            return total

        def loss() -> float:
            nonlocal passes
            passes += 1
            logits = patcher.forward(tokens, tp, delta=delta, attention_mask=mask).logits
            return float(losses(metric, logits, data, clean).mean())

        all_edges = edges_of(graph)
        removed = {(c, p): [u for u, c2, p2 in all_edges if (c2, p2) == (c, p)] for c in graph.components
                   for p in graph.ports(c)}
        full_corrupt = loss()
        removed = {}
        current = loss()
        gap = max(full_corrupt - current, 1e-12)
        kept = set(all_edges)
        score = {e: float("-inf") for e in all_edges}
        for node in reversed(graph.components):
            if node in graph.inputs or not _connected(kept, node):
                continue
            for port in graph.ports(node):
                for up in reversed(graph.upstream(node, port)):
                    removed.setdefault((node, port), []).append(up)
                    new = loss()
                    score[(up, node, port)] = (new - current) / gap
                    if new - current < tau * gap:
                        kept.discard((up, node, port))
                        current = new
                    else:
                        removed[(node, port)].remove(up)
    seconds = time.perf_counter() - t0
    reach = _reachable(kept)
    ranking = pd.DataFrame([{"up": e[0], "node": e[1], "port": e[2], "score": score[e], "kept": e in reach}
                            for e in all_edges])
    return PeerResult("ACDC", reach, ranking, passes, seconds, seconds / max(one, 1e-9))


def _reachable(kept: set[Edge]) -> set[Edge]:
    return {e for e in kept if _connected(kept, e[1])}
