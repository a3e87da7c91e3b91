"""Mean and zero ablation of unclaimed inputs: :class:`Mean` and :class:`Zero` (**not causal scrubbing**).

Causal scrubbing gives every unclaimed input its value on a random example (the instance's
random context). A node added with ``agree=Mean()`` or ``agree=Zero()`` is claimed to matter only
as that fixed value: its outputs are ``V(u)`` below, for every reference, and it has no children. With ``RunOptions(ablation=scrub.Mean())`` every context value is replaced
instead by a fixed one, the same for every reference:

- :class:`Mean`: each component's output (and each MLP's neuron activations) averaged over the
  dataset, position by position (over the examples that attend to that position; 0 where none does);
- :class:`Zero`: every component output and activation is 0.

A port's context input is then ``Σ_{u feeding it} V(u) + Σ biases`` (the attention output biases
of the layers below, as in a clean residual), and a residual site's context value ``r_L`` is the
same sum over the components below ``L``; claimed children add their differences ``child - V(u)``
exactly as they add ``child - x_ctx(u)`` when resampling. Leaves are still evaluated clean on
their own examples, and the sampling of examples is unchanged. Scores under an ablation answer a
different question from causal scrubbing's and are labelled so everywhere (the result's summary,
its record, the report).

>>> Mean().name, Zero().name
('mean', 'zero')
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scrub import _architecture as A
from scrub._dataset import Dataset
from scrub._graph import ModelGraph
from scrub.errors import RunOptionsError

__all__ = ["Mean", "Zero", "Ablation", "check_ablation", "ablated_values", "ablated_input", "NOT_CAUSAL"]

#: The label every output of an ablated run carries.
NOT_CAUSAL = "not causal scrubbing"


@dataclass(frozen=True, repr=False)
class Mean:
    """Each component's mean output over the dataset, per position (**not causal scrubbing**).

    As ``RunOptions(ablation=Mean())``: unclaimed inputs take it instead of a random example's
    value. As ``node.add(..., agree=Mean())``: that node's outputs are claimed to matter only as
    their mean (a fixed value; the node has no children).
    """

    name: str = "mean"

    def __repr__(self) -> str:
        return "Mean()"


@dataclass(frozen=True, repr=False)
class Zero:
    """Zero for each component's output (**not causal scrubbing**).

    As ``RunOptions(ablation=Zero())``: unclaimed inputs take it (what is left of the residual is
    the attention output biases). As ``node.add(..., agree=Zero())``: that node's outputs are
    claimed to be zero.
    """

    name: str = "zero"

    def __repr__(self) -> str:
        return "Zero()"


Ablation = Mean | Zero


def check_ablation(value) -> Ablation | None:
    """``value`` if it is None (resampling), a :class:`Mean` or a :class:`Zero`; else a RunOptionsError."""
    if value is None or isinstance(value, (Mean, Zero)):
        return value
    if value is Mean or value is Zero:
        return value()
    if value in ("mean", "zero"):
        return Mean() if value == "mean" else Zero()
    raise RunOptionsError(
        f"ablation must be None (resampling: causal scrubbing), scrub.Mean() or scrub.Zero(); got "
        f"{type(value).__name__} {value!r}"
    )


def from_name(name: str | None) -> Ablation | None:
    return None if name is None else check_ablation(name)


def ablated_values(model, graph: ModelGraph, data: Dataset, ablation: Ablation, device,
                   batch_size: int = 256) -> dict[str, torch.Tensor]:
    """``V(u)`` ``[T, d]`` for every component ``u`` (and ``m{L}:post``, ``[T, d_mlp]``), computed in batches."""
    from scrub._architecture import Architecture

    arch = Architecture.of(model)
    t = data.seq_len
    sums: dict[str, torch.Tensor] = {}
    count = torch.zeros(t, dtype=torch.float64)
    for seen, weight in captured(model, graph, data, device, batch_size):
        count += weight.sum(0).cpu()
        for key, x in seen.items():
            w = weight.reshape(weight.shape + (1,) * (x.ndim - 2))
            s = (x.double() * w).sum(0).cpu()
            sums[key] = s if key not in sums else sums[key] + s
    dtype = next(model.parameters()).dtype
    out: dict[str, torch.Tensor] = {}
    for key, s in sums.items():
        mean = s / count.clamp(min=1).reshape((t,) + (1,) * (s.ndim - 1))
        value = mean if isinstance(ablation, Mean) else torch.zeros_like(mean)
        if key.startswith("z"):  # per-head outputs: z @ W_O (linear, so the mean commutes)
            layer = int(key[1:])
            w_o = arch.W_O(model, layer).detach().double().cpu()
            for h in range(graph.n_heads):
                out[f"a{layer}.{h}"] = (value[:, h] @ w_o[h]).to(device=device, dtype=dtype)
        else:
            out[key] = value.to(device=device, dtype=dtype)
    for site in graph.sites:  # a site's fixed value is the sum over what lies below it
        out[site] = ablated_input(model, graph, out, site, "in")
    return out


def output_hooks(model, graph: ModelGraph) -> dict[str, str]:
    """Where each component's output is read: ``embed``, ``pos``, ``m{L}``, ``m{L}:post`` (neuron
    activations) and per layer ``z{L}`` (every head's ``z``, ``[B, T, heads, d_head]``; a head's
    output is ``z[:, :, h] @ W_O[h]``) or, for whole-layer graphs, ``a{L}``."""
    from scrub._architecture import Architecture

    arch = Architecture.of(model)
    names: dict[str, str] = {"embed": A.HOOK_EMBED}
    if "pos" in graph.inputs:
        names["pos"] = A.HOOK_POS
    for layer in range(graph.n_layers):
        names[f"a{layer}" if graph.whole_layers else f"z{layer}"] = (
            arch.hook_attn_out(layer) if graph.whole_layers else A.hook_z(layer))
        if not graph.attn_only:
            names[f"m{layer}"] = arch.hook_mlp_out(layer)
            if not graph.whole_layers:
                names[f"m{layer}:post"] = A.hook_mlp_post(layer)
    return names


def captured(model, graph: ModelGraph, data: Dataset, device, batch_size: int = 256, keys=None):
    """Clean forward passes over ``data`` in batches: yields ``(outputs, weight)`` per batch, the
    :func:`output_hooks` values (``keys`` of them, default all; broadcast to the batch) and a
    ``[B, T]`` float64 weight (1 at real tokens, 0 at padding)."""
    names = output_hooks(model, graph)
    if keys is not None:
        names = {k: v for k, v in names.items() if k in keys}
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            idx = slice(start, min(len(data), start + batch_size))
            tokens = data.tokens[idx].to(device)
            mask = None if data.attention_mask is None else data.attention_mask[idx].to(device)
            weight = torch.ones(tokens.shape, dtype=torch.float64, device=device) if mask is None else mask.double()
            seen: dict[str, torch.Tensor] = {}

            def grab(key, seen=seen):
                def fn(act, hook=None):
                    seen[key] = act.detach()

                return fn

            kwargs = {} if mask is None else {"attention_mask": mask}
            with model.hooks(fwd_hooks=[(h, grab(k)) for k, h in names.items()]):
                model(tokens, **kwargs)
            yield {k: x.expand(tokens.shape[0], *x.shape[1:]) if x.shape[0] == 1 else x for k, x in seen.items()}, weight


def ablated_input(model, graph: ModelGraph, values: dict[str, torch.Tensor], node: str, port: str) -> torch.Tensor:
    """The context input ``[T, d_model]`` of ``node``'s ``port`` under an ablation: ``Σ V(u)`` plus the biases."""
    from scrub._architecture import Architecture

    arch = Architecture.of(model)
    total = torch.zeros_like(values["embed"])
    for layer in range(graph.n_layers):
        if graph.feeds(graph.attention_nodes(layer)[0], node, port):
            total = total + arch.residual_bias(model, layer).detach().to(total)
    for up in graph.upstream(node, port):
        total = total + values[up]
    return total
