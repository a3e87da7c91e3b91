"""The slow, obviously-correct oracle: the recursive algorithm of causal scrubbing, one reference at a time.

For each reference and each instance of the plan it runs the model on one example: the
clean run on the instance's random example gives every unimportant parent; the children's
outputs (computed recursively) replace the claimed ones; each port's input is the explicit
sum of all upstream outputs plus the attention output biases of the layers feeding it; the
instance's nodes are then computed by the model itself from those inputs, in one run on the
instance's own example: for heads, the inputs of their layer's q, k and v projections are
overwritten with the normalised port inputs (so the model computes every query head and every
kv group itself: no head-to-group indexing is shared with the executor), and each head's output
is read from ``hook_z``; for an MLP its input hook is overwritten; for the output the final
residual is, and the logits are the model's own. It shares only the sampled plan with the executor, and is the
baseline the benchmarks compare against.

Variables finer than components (docs/design.md, "Variables"):

- a **neuron-set** child claiming neurons ``S`` of ``m{L}`` replaces, in the parent's input,
  ``m{L}``'s context output by ``x_ctx(m) + sum_{i in S} (act_i^child - act_i^ctx) W_out[i]``, the
  activations read at ``mlp.hook_post`` (in the clean run, or the instance's own run);
- a **residual site** ``r{L}`` is never run: its value in an instance is the explicit sum of the
  outputs of every component below the boundary (its children's where claimed, the instance's
  random context's elsewhere) plus those layers' attention output biases, exactly like a port's
  input; a leaf site is that sum over the clean run on its own example. A parent claiming it adds
  ``r_child - r_ctx`` (projected, masked) to its port input, on top of the context's components.
"""

from __future__ import annotations

import numpy as np
import torch

from scrub import _architecture as A
from scrub._ablation import Mean, Zero, check_ablation
from scrub._architecture import Architecture
from scrub._dataset import Dataset
from scrub._graph import ModelGraph
from scrub._plan import Instance, Plan

__all__ = ["run_reference"]


def _clean_outputs(model, arch: Architecture, graph: ModelGraph, data: Dataset, example: int) -> dict[str, torch.Tensor]:
    """Every component's output ``[T, d_model]`` in the clean run on one example."""
    tokens = data.tokens[example : example + 1]
    kwargs = {} if data.attention_mask is None else {"attention_mask": data.attention_mask[example : example + 1]}
    names = [A.HOOK_EMBED] + ([A.HOOK_POS] if "pos" in graph.inputs else [])
    names += [arch.hook_attn_out(layer) if graph.whole_layers else A.hook_z(layer) for layer in range(graph.n_layers)]
    names += [] if graph.attn_only else [arch.hook_mlp_out(layer) for layer in range(graph.n_layers)]
    names += [] if graph.attn_only or graph.whole_layers else [A.hook_mlp_post(layer) for layer in range(graph.n_layers)]
    cache: dict[str, torch.Tensor] = {}

    def grab(name):
        def fn(x, hook=None):
            cache[name] = x.detach()

        return fn

    with model.hooks(fwd_hooks=[(n, grab(n)) for n in names]):
        model(tokens, **kwargs)
    out = {"embed": cache[A.HOOK_EMBED][0]}
    if "pos" in graph.inputs:
        pos = cache[A.HOOK_POS]
        out["pos"] = pos[0]
    for layer in range(graph.n_layers):
        if graph.whole_layers:
            out[f"a{layer}"] = cache[arch.hook_attn_out(layer)][0]
        else:
            z = cache[A.hook_z(layer)][0]
            w_o = arch.W_O(model, layer)
            for h in range(graph.n_heads):
                out[f"a{layer}.{h}"] = z[:, h] @ w_o[h]
        if not graph.attn_only:
            out[f"m{layer}"] = cache[arch.hook_mlp_out(layer)][0]
        if A.hook_mlp_post(layer) in cache:
            out[f"m{layer}:post"] = cache[A.hook_mlp_post(layer)][0]
    for site in graph.sites:  # the residual at each boundary: the explicit sum of what lies below it
        total = _bias_into(model, arch, graph, site, "in").to(out["embed"].dtype)
        for up in graph.upstream(site, "in"):
            total = total + out[up]
        out[site] = total
    return out


def _bias_into(model, arch: Architecture, graph: ModelGraph, node: str, port: str) -> torch.Tensor:
    """The attention output biases of every layer with a head feeding ``node``'s ``port``."""
    total = torch.zeros(arch.d_model)
    for layer in range(graph.n_layers):
        if graph.feeds(graph.attention_nodes(layer)[0], node, port):
            total = total + arch.residual_bias(model, layer).detach().cpu()
    return total.to(arch.W_O(model, 0).device)


class _Oracle:
    def __init__(self, model, plan: Plan, data: Dataset, ablation=None) -> None:
        self.model, self.plan, self.data, self.g = model, plan, data, plan.graph
        self.arch = Architecture.of(model)
        self._clean: dict[int, dict[str, torch.Tensor]] = {}
        self.ablated = None if ablation is None else self._ablated(ablation)
        self._fixed: dict[type, dict[str, torch.Tensor]] = {}

    def _ablated(self, ablation) -> dict[str, torch.Tensor]:
        """Every component's fixed context value: its clean outputs averaged over the dataset one
        example at a time, per position over the examples attending there (or zeros); sites summed anew."""
        runs = [self.clean(e) for e in range(len(self.data))]
        mask = (torch.ones(self.data.tokens.shape) if self.data.attention_mask is None
                else self.data.attention_mask.double())
        out: dict[str, torch.Tensor] = {}
        for key in runs[0]:
            if self.g.is_site(key):
                continue
            total = sum(r[key].double() * mask[e][:, None] for e, r in enumerate(runs))
            mean = total / mask.sum(0).clamp(min=1)[:, None]
            out[key] = (mean if isinstance(ablation, Mean) else torch.zeros_like(mean)).to(runs[0][key].dtype)
        for site in self.g.sites:
            total = _bias_into(self.model, self.arch, self.g, site, "in").to(out["embed"].dtype)
            for up in self.g.upstream(site, "in"):
                total = total + out[up]
            out[site] = total
        return out

    def clean(self, example: int) -> dict[str, torch.Tensor]:
        """The clean run on one example (each example's clean run is the same wherever it is used)."""
        if example not in self._clean:
            self._clean[example] = _clean_outputs(self.model, self.arch, self.g, self.data, example)
        return self._clean[example]

    def outputs(self, inst: Instance, ref: int) -> dict[str, torch.Tensor]:
        """run(n_I, x): the outputs of ``inst``'s model nodes for reference ``ref``."""
        example = int(inst.examples[ref])
        agree = inst.node.agree
        if isinstance(agree, (Mean, Zero)):  # claimed as a fixed value: no run at all
            if type(agree) not in self._fixed:
                self._fixed[type(agree)] = self._ablated(agree)
            fixed = self._fixed[type(agree)]
            return {k: v for k, v in fixed.items() if k.split(":")[0] in inst.node.model}
        if inst.random is None:  # a leaf: evaluated on its own example all the way down
            clean = self.clean(example)
            return {k: v for k, v in clean.items() if k.split(":")[0] in inst.node.model}
        # one shared random example per call (or, under an ablation, the fixed values)
        random = self.clean(int(inst.random[ref])) if self.ablated is None else self.ablated
        children = [(self.plan.instances[c], self.outputs(self.plan.instances[c], ref)) for c in inst.children]
        port_inputs: dict[tuple[str, str], torch.Tensor] = {}
        for n in inst.node.model:
            for port in self.g.ports(n):
                total = _bias_into(self.model, self.arch, self.g, n, port)
                for up in self.g.upstream(n, port):
                    value = random[up]
                    for child, child_out in children:
                        if any(c.node == n and c.port == port and c.up == up for c in child.claims):
                            value = self._swap(child, child_out, random, up, value, ref)
                    total = total + value
                for child, child_out in children:  # claimed sites: r_child - r_ctx on top of the context
                    for c in child.claims:
                        if c.node == n and c.port == port and self.g.is_site(c.up):
                            total = total + self._swap(child, child_out, random, c.up, torch.zeros_like(total), ref)
                port_inputs[(n, port)] = total
        site = [m for m in inst.node.model if self.g.is_site(m)]
        if site:  # a site is its port input: nothing is run
            return {site[0]: port_inputs[(site[0], "in")]}
        return self._compute(inst, example, port_inputs, ref)

    def _swap(self, child: Instance, child_out, random, up: str, value: torch.Tensor, ref: int) -> torch.Tensor:
        """``value`` (what the parent would read from ``up``) with ``child``'s claim on ``up`` swapped in.

        The claimed difference is the child's output minus the random context's (for a neuron set,
        the neurons' share of it; for a subspace, its projection), added where the child is claimed.
        """
        if child.node.neurons is not None:
            idx = list(child.node.neurons)
            post = child_out[f"{up}:post"] - random[f"{up}:post"]
            w = self.arch.W_out(self.model, self.g.layer(up))
            diff = post[:, idx] @ w[idx].to(post.dtype)
        else:
            diff = child_out[up] - random[up]
        if child.node.subspace is not None:  # the claimed subspace only; the rest unclaimed
            diff = diff @ child.node.subspace.projection.to(device=diff.device, dtype=diff.dtype)
        here = value + diff
        mask = self.plan.claim_mask(child, np.array([ref]))
        return here if mask is None else torch.where(mask[0][:, None], here, value)

    def _compute(self, inst: Instance, example: int, port_inputs, ref: int) -> dict[str, torch.Tensor]:
        """The instance's model nodes computed by the model on the instance's example, their inputs overwritten.

        One run computes them all (each overwritten input replaces the whole of what the model would
        have computed there, so nodes at different layers do not interfere), unless two heads of one
        layer need different inputs: those get runs of their own.
        """
        runs: list[list[str]] = []
        for n in inst.node.model:
            for run in runs:
                if all(self._compatible(n, m, port_inputs) for m in run):
                    run.append(n)
                    break
            else:
                runs.append([n])
        result: dict[str, torch.Tensor] = {}
        for run in runs:
            result.update(self._run_nodes(run, example, port_inputs, ref))
        return result

    def _compatible(self, a: str, b: str, port_inputs) -> bool:
        """Can ``a`` and ``b`` be computed in one run? Only heads of one layer share the hooks they overwrite."""
        g = self.g
        if g.kind(a) != "attn" or g.kind(b) != "attn" or g.layer(a) != g.layer(b):
            return True
        return all(torch.equal(port_inputs[(a, p)], port_inputs[(b, p)]) for p in "qkv")

    def _run_nodes(self, nodes: list[str], example: int, port_inputs, ref: int) -> dict[str, torch.Tensor]:
        model, g, arch = self.model, self.g, self.arch
        hooks, got = [], {}

        def overwrite(value):
            return lambda x, hook=None: value[None].to(x.dtype).expand_as(x).clone()

        heads_at: dict[int, list[str]] = {}
        for n in nodes:
            if g.kind(n) == "attn":
                heads_at.setdefault(g.layer(n), []).append(n)
        for layer, names in heads_at.items():
            ln = arch.ln1(model, layer)
            for port in "qkv":  # the projections' inputs: the model computes every head and kv group itself
                hooks.append((A.hook_proj_in(layer, port), overwrite(ln(port_inputs[(names[0], port)]))))

            def read_z(z, hook=None, layer=layer, names=names):
                for n in names:
                    h = g.head(n)
                    got[n] = z[0, :, h] @ arch.W_O(model, layer)[h]

            def read_layer(x, hook=None, names=names):
                got[names[0]] = x[0]

            whole = g.head(names[0]) is None
            hooks.append((arch.hook_attn_out(layer), read_layer) if whole else (A.hook_z(layer), read_z))
        for n in nodes:
            if g.kind(n) == "mlp":
                layer = g.layer(n)
                hooks.append((arch.hook_mlp_in(layer), overwrite(arch.mlp_in_value(model, layer, port_inputs[(n, "in")]))))

                def read_mlp(x, hook=None, n=n):
                    got[n] = x[0]

                def read_post(x, hook=None, n=n):
                    got[f"{n}:post"] = x[0]

                hooks.append((arch.hook_mlp_out(layer), read_mlp))
                if not g.whole_layers:
                    hooks.append((arch.hook_mlp_post(layer), read_post))
            elif g.kind(n) == "output":
                hooks.append((A.HOOK_FINAL, overwrite(port_inputs[(n, "in")])))
        tokens = self.data.tokens[example : example + 1]
        kwargs = {} if self.data.attention_mask is None else {"attention_mask": self.data.attention_mask[example : example + 1]}
        has_mlp = any(g.kind(n) == "mlp" for n in nodes)
        restore = arch.enable_hooks(model) if has_mlp else (lambda: None)
        try:
            with model.hooks(fwd_hooks=hooks):
                logits = model(tokens, **kwargs)
        finally:
            restore()
        if "out" in nodes:
            got["out"] = logits[0, int(self.data.target_pos[ref])]
        return got


def run_reference(model, plan: Plan, data: Dataset, refs=None, *, ablation=None) -> torch.Tensor:
    """Scrubbed logits at the target position, ``[len(refs), vocab]``, by the recursive algorithm.

    Slow: one model run per tree instance (two for non-leaves) per reference. For tests and benchmarks.
    With ``ablation`` (:class:`~scrub.Mean` or :class:`~scrub.Zero`: not causal scrubbing) the
    random contexts are replaced by the fixed values.
    """
    refs = range(plan.n) if refs is None else refs
    oracle = _Oracle(model, plan, data, check_ablation(ablation))
    with torch.inference_mode():
        return torch.stack([oracle.outputs(plan.root, int(r))["out"] for r in refs]).float()
