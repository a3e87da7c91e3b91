"""Edge-level patching of a TransformerLens model, and edge attribution patching (EAP).

An *edge* is ``(up, node, port)``: component ``up`` feeding input ``port`` of component ``node``
(:class:`~scrub.ModelGraph`'s edges). The patched forward pass here is the single-level patching
of ACDC and EAP, not scrub's recursive resampling: the input of each port is the clean residual,
with the contribution of each *removed* upstream component swapped for its value on a corrupted
input (``corr_u - cur_u`` added, ``cur_u`` being ``up``'s output in this same pass).

:func:`edge_attribution` ranks every edge with one clean pass, one corrupted pass and one backward
pass (Syed et al., "Attribution patching outperforms automated circuit discovery", 2023): the
score of ``up -> node.port`` is ``(corr_up - clean_up) . dL/d(input of node.port)``, summed over
positions and averaged over examples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from scrub import _architecture as A
from scrub._architecture import Architecture
from scrub._dataset import Dataset
from scrub._graph import ModelGraph
from scrub._metrics import METRICS, Metric, check_metric
from scrub.errors import UnsupportedModelError

__all__ = ["Edge", "edges_of", "EdgePatcher", "edge_attribution", "corrupt", "one_pass_seconds", "PassCounter"]

Edge = tuple[str, str, str]  # (up, node, port)


def edges_of(graph: ModelGraph) -> list[Edge]:
    """Every edge ``(up, node, port)`` of the graph, receivers in forward order, ports in order."""
    out: list[Edge] = []
    for node in graph.components:
        for port in graph.ports(node):
            out.extend((up, node, port) for up in graph.upstream(node, port))
    return out


def corrupt(data: Dataset, seed: int = 0) -> Dataset:
    """The corrupted input of ACDC and EAP: the examples in a seeded random order (resample patching)."""
    perm = np.random.default_rng(seed).permutation(len(data))
    return data.subset(perm.tolist())


def one_pass_seconds(model, data: Dataset, repeats: int = 5) -> float:
    """The fastest of ``repeats`` plain forward passes over ``data``: the unit of forward-pass equivalents."""
    import time

    from scrub._executor import run_clean

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_clean(model, data)
        best = min(best, time.perf_counter() - t0)
    return best


class PassCounter:
    """Counts the rows ``model`` runs forward while active: ``passes(n)`` is that over ``n`` examples.

    A deterministic cost measure (unlike wall time on a shared machine): a forward pass stopped
    early counts whole, a backward pass is not seen (add it yourself).
    """

    def __init__(self, model) -> None:
        self.model = model
        self.rows = 0
        self._handle = None

    def __enter__(self) -> PassCounter:
        def pre(_module, args, kwargs):
            x = args[0] if args else next(iter(kwargs.values()), None)
            if isinstance(x, torch.Tensor) and x.ndim >= 1:
                self.rows += int(x.shape[0])

        self._handle = self.model.register_forward_pre_hook(pre, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()

    def passes(self, n: int) -> float:
        return self.rows / n


def losses(metric: Metric, logits: torch.Tensor, data: Dataset, clean_logits: torch.Tensor) -> torch.Tensor:
    """Per-example losses ``[N]`` as a differentiable tensor (the same metrics as :func:`scrub.run`)."""
    if isinstance(metric, str):
        return METRICS[metric](logits, data, clean_logits)
    return metric(logits, data)


@dataclass
class _Pass:
    """What one forward pass computed: every component's output ``[B, T, d]`` and the logits at the target."""

    outputs: dict[str, torch.Tensor]
    logits: torch.Tensor


class EdgePatcher:
    """Forward passes of ``model`` with chosen edges patched to a corrupted run (ACDC/EAP style).

    Refuses models whose heads share keys and values (grouped-query attention), whose attention
    layers are normalised as a whole, or whose MLP reads a normalised residual: the single-level
    baselines here only handle the plain pre-norm layout of the zoo.
    """

    def __init__(self, model) -> None:
        self.model = model
        self.arch = Architecture.of(model)
        self.graph = ModelGraph.from_model(model)
        if self.graph.whole_layers or self.arch.mlp_in_normalized or self.arch.group_size != 1:
            raise UnsupportedModelError(
                f"architecture {self.arch.name}: edge patching (ACDC, EAP) supports models with one key/value "
                "per head, per-head outputs and an MLP reading the raw residual; use scrub.discover's "
                "pre_rank='order' for this model"
            )

    def forward(
        self, tokens: torch.Tensor, target_pos: torch.Tensor,
        delta: Callable[[str, str, dict[str, torch.Tensor]], torch.Tensor | None] | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> _Pass:
        """One pass; ``delta(node, port, outputs)`` returns what to add to that port's input residual
        (``outputs`` holds the components computed so far in this pass) or None."""
        model, arch, g = self.model, self.arch, self.graph
        outs: dict[str, torch.Tensor] = {}
        resid_pre: dict[int, torch.Tensor] = {}
        final: dict[str, torch.Tensor] = {}
        hooks: list[tuple[str, Callable]] = []
        b = tokens.shape[0]

        def keep(name):
            def fn(x, hook=None):
                outs[name] = x if x.shape[0] == b else x.expand(b, -1, -1)
                return x
            return fn

        hooks.append((A.HOOK_EMBED, keep("embed")))
        if "pos" in g.inputs:
            hooks.append((A.HOOK_POS, keep("pos")))
        for layer in range(g.n_layers):
            def pre(x, hook=None, L=layer):
                resid_pre[L] = x
                return x
            hooks.append((A.hook_resid_pre(layer), pre))

            def qkv(x, hook=None, L=layer, P=None):
                assert P is not None
                if delta is None:
                    return x
                ln = arch.ln1(model, L)
                w, bias = arch.qkv(model, L, P)
                x = x.clone()
                for h in range(g.n_heads):
                    d = delta(f"a{L}.{h}", P, outs)
                    if d is None:
                        continue
                    x[:, :, h] = (ln(resid_pre[L] + d) @ w[h] + bias[h]).to(x.dtype)
                return x
            for port in ("q", "k", "v"):
                hooks.append((A.hook_qkv(layer, port), lambda x, hook=None, L=layer, P=port, f=qkv: f(x, L=L, P=P)))

            def z(x, hook=None, L=layer):
                w_o = arch.W_O(model, L)
                for h in range(g.n_heads):
                    outs[f"a{L}.{h}"] = x[:, :, h] @ w_o[h]
                return x
            hooks.append((A.hook_z(layer), z))
            if not g.attn_only:
                def mlp_in(x, hook=None, L=layer):
                    d = None if delta is None else delta(f"m{L}", "in", outs)
                    return x if d is None else x + d
                hooks.append((arch.hook_mlp_in(layer), mlp_in))
                hooks.append((arch.hook_mlp_out(layer), keep(f"m{layer}")))

        def out(x, hook=None):
            d = None if delta is None else delta("out", "in", outs)
            x = x if d is None else x + d
            final["x"] = x
            return x
        hooks.append((A.HOOK_FINAL, out))
        restore = arch.enable_hooks(model)
        try:
            kwargs = {} if attention_mask is None else {"attention_mask": attention_mask}
            with model.hooks(fwd_hooks=hooks):
                model(tokens, **kwargs)
        finally:
            restore()
        x = final["x"]
        logits = arch.logits(model, x[torch.arange(b), target_pos])
        return _Pass(outs, logits)


def edge_attribution(
    model, data: Dataset, *, metric: Metric = "loss", corrupted: Dataset | None = None, seed: int = 0,
    edges: Iterable[Edge] | None = None, batch_size: int = 512, by_position: bool = False,
) -> dict[Edge, Any]:
    """Edge attribution patching: a first-order estimate of each edge's effect on the loss.

    Args:
        model: a TransformerLens model (see :class:`EdgePatcher` for what is supported).
        data: the examples; ``corrupted`` the corrupted inputs (default: :func:`corrupt`\\ ``(data, seed)``).
        metric: as for :func:`scrub.run` (``"loss"``, ``"kl"``, ``"accuracy"`` is not differentiable
            and is scored as ``"loss"``, or a function ``(logits, data) -> [N]``).
        edges: the edges to score (default: every edge of the model's graph).
        by_position: score each edge at each sequence position (where ``up``'s output enters
            ``node.port``) instead of summed over positions.

    Returns:
        ``{(up, node, port): score}``: the estimated increase of the mean loss when the edge is
        patched to the corrupted run (large ``|score|``: an important edge); with
        ``by_position``, a ``[T]`` array per edge. Costs one clean pass, one corrupted pass and
        one backward pass over the data.
    """
    patcher = EdgePatcher(model)
    check_metric(metric, data)
    metric = "loss" if metric == "accuracy" else metric
    all_edges = edges_of(patcher.graph) if edges is None else list(edges)
    corrupted = corrupt(data, seed) if corrupted is None else corrupted
    total: dict[Edge, Any] = {e: np.zeros(data.seq_len) if by_position else 0.0 for e in all_edges}
    ports = sorted({(n, p) for _, n, p in all_edges})
    n = len(data)
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        part, cpart = data.subset(idx), corrupted.subset(idx)
        tokens, tp = part.tokens, part.target_pos
        with torch.no_grad():
            corr = patcher.forward(cpart.tokens, tp, attention_mask=cpart.attention_mask).outputs
            clean_logits = patcher.forward(tokens, tp, attention_mask=part.attention_mask).logits
        zeros = {key: torch.zeros(len(idx), part.seq_len, int(model.cfg.d_model), requires_grad=True) for key in ports}
        res = patcher.forward(tokens, tp, delta=lambda node, port, _o, z=zeros: z.get((node, port)),
                              attention_mask=part.attention_mask)
        loss = losses(metric, res.logits, part, clean_logits).sum() / n
        grads = torch.autograd.grad(loss, [zeros[k] for k in ports], allow_unused=True)
        grad = {k: (torch.zeros_like(zeros[k]) if gr is None else gr) for k, gr in zip(ports, grads, strict=True)}
        with torch.no_grad():
            for up, node, port in all_edges:
                diff = corr[up] - res.outputs[up].detach()
                prod = diff * grad[(node, port)]
                if by_position:
                    total[(up, node, port)] += prod.sum((0, 2)).double().numpy()
                else:
                    total[(up, node, port)] += float(prod.sum())
    return total
