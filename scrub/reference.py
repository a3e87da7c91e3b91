"""The slow, obviously-correct oracle: the recursive algorithm of DESIGN section 1, one reference at a time.

For each reference and each instance of the plan it runs the model on one example: the
clean run on the instance's random example gives every unimportant parent; the children's
outputs (computed recursively) replace the claimed ones; each port's input is the explicit
sum of all upstream outputs plus the attention output biases; the instance's nodes are then
computed by the model itself from those inputs (q/k/v, MLP input and final residual
overwritten in a run on the instance's own example). It shares only the sampled plan with
the executor, and is the baseline the benchmarks compare against.
"""

from __future__ import annotations

import numpy as np
import torch

from scrub.dataset import Dataset
from scrub.graph import ModelGraph
from scrub.plan import Instance, Plan

__all__ = ["run_reference"]


def _clean_outputs(model, graph: ModelGraph, data: Dataset, example: int) -> dict[str, torch.Tensor]:
    """Every component's output ``[T, d_model]`` in the clean run on one example."""
    tokens = data.tokens[example : example + 1]
    kwargs = {} if data.attention_mask is None else {"attention_mask": data.attention_mask[example : example + 1]}
    wanted = lambda name: name in ("hook_embed", "hook_pos_embed") or name.endswith(("attn.hook_z", "hook_mlp_out"))
    _, cache = model.run_with_cache(tokens, names_filter=wanted, **kwargs)
    out = {"embed": cache["hook_embed"][0], "pos": cache["hook_pos_embed"][0]}
    for layer in range(graph.n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"][0]
        w_o = model.blocks[layer].attn.W_O
        for h in range(graph.n_heads):
            out[f"a{layer}.{h}"] = z[:, h] @ w_o[h]
        if not graph.attn_only:
            out[f"m{layer}"] = cache[f"blocks.{layer}.hook_mlp_out"][0]
    return out


def _bias_below(model, graph: ModelGraph, stage: int) -> torch.Tensor:
    """The attention output biases of every layer whose heads come before ``stage``."""
    total = torch.zeros(model.cfg.d_model, device=model.blocks[0].attn.b_O.device)
    for layer in range(graph.n_layers):
        if 2 * layer + 1 < stage:
            total = total + model.blocks[layer].attn.b_O
    return total


class _Oracle:
    def __init__(self, model, plan: Plan, data: Dataset) -> None:
        self.model, self.plan, self.data, self.g = model, plan, data, plan.graph
        self._clean: dict[int, dict[str, torch.Tensor]] = {}

    def clean(self, example: int) -> dict[str, torch.Tensor]:
        """The clean run on one example (each example's clean run is the same wherever it is used)."""
        if example not in self._clean:
            self._clean[example] = _clean_outputs(self.model, self.g, self.data, example)
        return self._clean[example]

    def outputs(self, inst: Instance, ref: int) -> dict[str, torch.Tensor]:
        """run(n_I, x): the outputs of ``inst``'s model nodes for reference ``ref``."""
        example = int(inst.examples[ref])
        if inst.is_leaf:  # evaluated on its own example all the way down
            clean = self.clean(example)
            return {m: clean[m] for m in inst.node.model}
        random = self.clean(int(inst.random[ref]))  # one shared random example per call
        children = [(self.plan.instances[c], self.outputs(self.plan.instances[c], ref)) for c in inst.children]
        port_inputs: dict[tuple[str, str], torch.Tensor] = {}
        for n in inst.node.model:
            for port in self.g.ports(n):
                total = _bias_below(self.model, self.g, self.g.stage(n))
                for up in self.g.upstream(n, port):
                    value = random[up]
                    for child, child_out in children:
                        if any(c.node == n and c.port == port and c.up == up for c in child.claims):
                            mask = self.plan.claim_mask(child, np.array([ref]))
                            here = child_out[up]
                            value = here if mask is None else torch.where(mask[0][:, None], here, value)
                    total = total + value
                port_inputs[(n, port)] = total
        return self._compute(inst, example, port_inputs, ref)

    def _compute(self, inst: Instance, example: int, port_inputs, ref: int) -> dict[str, torch.Tensor]:
        """Run the model on the instance's example with its nodes' port inputs overwritten."""
        model, g = self.model, self.g
        hooks, result = [], {}
        for n in inst.node.model:
            kind = g.kind(n)
            if kind == "attn":
                layer, h = g.layer(n), g.head(n)
                blk = model.blocks[layer]
                for port in "qkv":
                    resid = port_inputs[(n, port)]

                    def patch(x, hook=None, resid=resid, h=h, blk=blk, port=port):
                        x = x.clone()
                        w = getattr(blk.attn, f"W_{port.upper()}")[h]
                        b = getattr(blk.attn, f"b_{port.upper()}")[h]
                        x[0, :, h] = blk.ln1.original_component(resid) @ w + b
                        return x

                    hooks.append((f"blocks.{layer}.attn.hook_{port}", patch))

                def read_z(z, hook=None, n=n, h=h, blk=blk):
                    result[n] = z[0, :, h] @ blk.attn.W_O[h]

                hooks.append((f"blocks.{layer}.attn.hook_z", read_z))
            elif kind == "mlp":
                layer = g.layer(n)
                hooks.append((f"blocks.{layer}.hook_mlp_in", lambda x, hook=None, r=port_inputs[(n, "in")]: r[None].clone()))

                def read_mlp(x, hook=None, n=n):
                    result[n] = x[0]

                hooks.append((f"blocks.{layer}.hook_mlp_out", read_mlp))
            elif kind == "output":
                hooks.append(("ln_final.hook_in", lambda x, hook=None, r=port_inputs[(n, "in")]: r[None].clone()))
        tokens = self.data.tokens[example : example + 1]
        kwargs = {} if self.data.attention_mask is None else {"attention_mask": self.data.attention_mask[example : example + 1]}
        before = bool(getattr(model.cfg, "use_hook_mlp_in", False))
        model.set_use_hook_mlp_in(True) if not g.attn_only else None
        try:
            logits = model.run_with_hooks(tokens, fwd_hooks=hooks, **kwargs)
        finally:
            if not g.attn_only:
                model.set_use_hook_mlp_in(before)
        if "out" in inst.node.model:
            result["out"] = logits[0, int(self.data.target_pos[ref])]
        return result


def run_reference(model, plan: Plan, data: Dataset, refs=None) -> torch.Tensor:
    """Scrubbed logits at the target position, ``[len(refs), vocab]``, by the recursive algorithm.

    Slow: one model run per tree instance (two for non-leaves) per reference. For tests and benchmarks.
    """
    refs = range(plan.n) if refs is None else refs
    oracle = _Oracle(model, plan, data)
    with torch.inference_mode():
        return torch.stack([oracle.outputs(plan.root, int(r))["out"] for r in refs]).float()
