"""The batched executor: every instance of a plan computed in one forward pass per chunk of references.

Rows of the batch are grouped in *blocks* of ``B`` rows, one row per reference of the chunk:

- each instance has a **host** block, where its model nodes are computed and read from;
- each non-leaf instance has a **context** block: the clean run on its shared random example.

A leaf's host block is the clean run on its own example. A non-leaf instance whose model nodes
sit at one stage of the forward pass (one layer's heads, one MLP, or the output) and include no
embedding shares one block between host and context: the row runs clean on the random example
up to that stage (that is exactly the context it needs), and its ports are patched there. An MLP
or the output reads nothing but its overwritten input, so it always merges. Heads also read their
example's padding mask: on padded data, native models give a merged instance's rows its own
examples' mask at its layer only (:meth:`Architecture.override_attention_mask`); on other models
only the references whose instance and context examples share a mask merge, and the rest run a
second, unmerged layout.

Each port input of an instance's node is rebuilt as the context's residual plus, for every
claimed upstream node, the difference between the child's output and the context's output of
that node (masked to the claimed positions). Because a node at layer ``L`` reads only nodes
below it, all of those are computed earlier in the same pass. Heads' q/k/v are overwritten
with the layer's own norm and weights applied to the patched residual (for grouped-query attention,
keys and values are written into the kv group of the head being computed); MLP inputs through
the architecture's MLP input hook; the output reads the patched final residual and the pass stops
there (the unembedding is applied to the output rows only). Every hook name, weight and norm
comes from :class:`scrub._architecture.Architecture`.

Variables (docs/design.md): a neuron-set child's claimed difference is read from the MLP's
activations (``mlp.hook_post``, stored under ``m{L}:post``) as ``(act_child - act_ctx)[S] @ W_out[S]``;
a residual site ``r{L}`` is stored at the residual hook before layer ``L`` (``ln_final``'s input for
``r{n_layers}``), as the row's residual, or, for a non-leaf site instance (whose host block is its
context block: nothing is computed on its own example), as that residual with its children's
claims swapped in. A site shares its stage with layer ``L``'s heads: its hook fires before theirs.

A block runs only as deep as anything reads it: blocks are grouped into *passes* by the last
stage they are read or patched at, and each pass stops there (a leaf previous-token head at
layer 0 costs one layer, not the whole model). Passes run in order of depth, so every child's
output is stored before its parent's pass patches it in. Blocks read only at the embeddings are
not run at all: their outputs are looked up from the embedding tables.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch
from tqdm.auto import tqdm

from scrub import _architecture as A
from scrub._ablation import Ablation, Mean, Zero, ablated_input, ablated_values, check_ablation
from scrub._architecture import Architecture
from scrub._dataset import Dataset
from scrub._graph import ModelGraph
from scrub._plan import Plan
from scrub.errors import ExecutionError, HypothesisError

__all__ = [
    "ExecutionError", "run_plan", "run_clean", "plan_chunks", "default_batch_size", "model_device", "n_blocks", "has_padding",
]


class _Stop(Exception):
    """Raised at the final residual: nothing after it is needed."""


def model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


#: Fraction of the accelerator's free memory one pass may use (the rest: the stored outputs of earlier passes, fragmentation).
DEVICE_MEMORY_SHARE = 0.5


def bytes_per_row(model, seq_len: int) -> int:
    """A generous estimate of the memory one row of a forward pass holds at its peak, in bytes.

    Per position: the residual and its normalised copy, queries, keys and values, the attention
    output, the MLP's hidden activations (two for gated MLPs) and input/output; plus each layer's
    attention scores and pattern (``[heads, seq, seq]`` each), with room for the masked copies.
    """
    cfg = model.cfg
    d, heads = int(cfg.d_model), int(cfg.n_heads)
    d_head = int(getattr(cfg, "d_head", 0) or d // heads)
    d_mlp = int(getattr(cfg, "d_mlp", 0) or 4 * d)
    itemsize = torch.empty((), dtype=_dtype(model)).element_size()
    per_position = 6 * d + 4 * heads * d_head + 3 * d_mlp + 4 * heads * seq_len
    return 2 * itemsize * seq_len * per_position  # x2: the stored outputs and the autograd-free temporaries


def default_batch_size(model, seq_len: int) -> int:
    """Rows per forward pass.

    On an accelerator, as many rows as fit in :data:`DEVICE_MEMORY_SHARE` of its free memory
    (``torch.cuda.mem_get_info``), by :func:`bytes_per_row`: chosen from the memory, not by trial.
    On the CPU, about 4M residual floats, so memory stays modest on any model.
    """
    device = model_device(model)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return rows_for_memory(free, bytes_per_row(model, seq_len))
    return max(1, (1 << 22) // (seq_len * int(model.cfg.d_model)))


def rows_for_memory(free_bytes: int, row_bytes: int) -> int:
    """Rows of ``row_bytes`` that fit in :data:`DEVICE_MEMORY_SHARE` of ``free_bytes`` (at least one)."""
    return max(1, int(free_bytes * DEVICE_MEMORY_SHARE) // max(1, row_bytes))


def _target_logits(model, arch: Architecture, final_resid: torch.Tensor, target_pos: torch.Tensor) -> torch.Tensor:
    """The model's logits at each row's target position, from its final residual ``[B, T, d]``."""
    x = final_resid[torch.arange(final_resid.shape[0], device=final_resid.device), target_pos]
    return arch.logits(model, x)


def _then_stop(fn, stop: bool):
    """``fn``, ending the forward pass right after it when ``stop``."""
    if not stop:
        return fn

    def last(x):
        fn(x)
        raise _Stop

    return last


class _HookSet:
    """Forward hooks that count their calls and check their batch size."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.hooks: list[tuple[str, object]] = []
        self.calls: dict[str, int] = {}
        # (layer, fn): give layer's attention fn(mask) instead of the pass's padding mask
        self.masks: list[tuple[int, Callable[[torch.Tensor], torch.Tensor]]] = []

    def mask(self, layer: int, fn) -> None:
        name = f"blocks.{layer}.attn (attention mask)"
        self.calls[name] = 0

        def counted(mask, _name=name, _fn=fn):
            self.calls[_name] += 1
            return _fn(mask)

        self.masks.append((layer, counted))

    def add(self, name: str, fn) -> None:
        self.calls[name] = 0

        def hook(x, hook=None, _name=name, _fn=fn):
            self.calls[_name] += 1
            if x.shape[0] != self.rows and not (_name == A.HOOK_POS and x.shape[0] == 1):
                raise ExecutionError(f"hook {_name!r} fired with batch {x.shape[0]}, expected {self.rows} rows")
            out = _fn(x)
            return x if out is None else out

        self.hooks.append((name, hook))

    def check(self) -> None:
        missing = [n for n, c in self.calls.items() if c != 1]
        if missing:
            raise ExecutionError(
                "hooks did not fire exactly once as planned: "
                + ", ".join(f"{n} ({self.calls[n]} times)" for n in missing)
                + "; this model does not expose the TransformerLens hooks the executor needs"
            )


def _forward(model, tokens, attention_mask, hooks: _HookSet, arch: Architecture | None = None) -> None:
    kwargs = {} if attention_mask is None else {"attention_mask": attention_mask}
    if hooks.masks and (arch is None or attention_mask is None):
        raise ExecutionError("per-layer attention masks need the architecture and a padding mask")
    handles = [arch.override_attention_mask(model, layer, fn) for layer, fn in hooks.masks] if arch else []
    try:
        with model.hooks(fwd_hooks=hooks.hooks):
            model(tokens, **kwargs)
    except _Stop:
        pass
    else:
        hooks.check()
        raise ExecutionError("the forward pass never reached its last hook")
    finally:
        for h in handles:
            h.remove()
    hooks.check()


@contextlib.contextmanager
def _mlp_in_hooks(model, arch: Architecture, needed: bool):
    restore = arch.enable_hooks(model) if needed else (lambda: None)
    try:
        yield
    finally:
        restore()


@dataclass
class _Layout:
    """Blocks and patches of a plan; the same for every chunk."""

    block_examples: list[np.ndarray] = field(default_factory=list)  # per block: [N] example per reference
    host: dict[int, int] = field(default_factory=dict)
    ctx: dict[int, int] = field(default_factory=dict)
    # patches[stage key] = [(instance, [model nodes at that stage], {port: [(child instance, up node)]})]
    patches: dict[tuple, list] = field(default_factory=lambda: defaultdict(list))
    needs: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))  # node -> blocks to store
    # (node, block) read at one position only (a per-position instance's output): store just that column
    only_at: dict[tuple[str, int], int] = field(default_factory=dict)
    # passes[k] = (last stage run, [blocks]), deepest last; blocks read only at the inputs are `gathered`
    passes: list[tuple[int, list[int]]] = field(default_factory=list)
    gathered: list[int] = field(default_factory=list)
    slot: dict[int, int] = field(default_factory=dict)  # block -> its place in its pass
    # non-leaf residual-site instances by (site layer, host block): (instance, claims into its port "in");
    # the value is the context's residual at the boundary with the claims swapped in
    site_of: dict[tuple[int, int], tuple[int, list]] = field(default_factory=dict)  # (layer, block) -> entry
    # layer -> attention instances computed in their context's block (their heads need their own
    # example's padding mask there, not the context's)
    attn_merged: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    # last stage -> clean leaf blocks read up to it: not run as blocks; per chunk, the distinct examples
    # they hold are run once and their outputs gathered (:meth:`_Chunk.fill_leaves`)
    leaves: dict[int, list[int]] = field(default_factory=dict)

    @property
    def n_blocks(self) -> int:
        return len(self.block_examples)

    def width(self, n_examples: int) -> int:
        """Rows one reference costs in a chunk: its widest pass (a leaf group runs at most one row per
        distinct example), plus what the chunk stores between passes (a node's output is counted as a
        twentieth of a row: a row holds far more at its peak, see :func:`bytes_per_row`)."""
        passes = max((len(b) for _, b in self.passes), default=0)
        leaves = max((len(b) for b in self.leaves.values()), default=0)
        stored = sum(len(b) for b in self.needs.values()) + len(self.gathered)
        return max(1, passes + -(-stored // STORED_PER_ROW), min(leaves, n_examples))

    @functools.cached_property
    def examples(self) -> np.ndarray:
        """``[blocks, N]``: the example each block runs, per reference."""
        return np.stack(self.block_examples)

def _key(node, up: str) -> str:
    """Where a claim on ``up`` by ``node`` is read from: the output, or an MLP's neuron activations."""
    return f"{up}{POST}" if node.neurons is not None else up


#: suffix of the store key of an MLP's neuron activations (``m1:post``)
POST = ":post"
#: stored node outputs (``[T, d]`` each) counted as one row of a pass when sizing chunks
STORED_PER_ROW = 20


def _key_stage(g: ModelGraph, key: str) -> int:
    return g.stage(key.removesuffix(POST))


def _mergeable(inst, g: ModelGraph) -> str | None:
    """The kind of stage (``attn``, ``mlp``, ``output``, ``site``) a non-leaf instance could share its context's
    block at, or None when it cannot (a leaf, nodes at several stages, an embedding)."""
    if inst.is_leaf:
        return None
    if any(g.is_site(m) for m in inst.node.model):  # a site's value is its context's residual: never computed anew
        return "site"
    if any(g.kind(m) == "input" for m in inst.node.model):
        return None
    kinds = {g.kind(m) for m in inst.node.model}
    if len({g.stage(m) for m in inst.node.model}) != 1 or len(kinds) != 1:
        return None
    return kinds.pop()


def _layout(plan: Plan, merge_attention: bool, ablated: bool = False) -> _Layout:
    """Blocks, patches and passes of ``plan``.

    MLP and output instances always share their context's block: their inputs are overwritten as a
    whole and an MLP reads no attention mask, so which example the row runs does not matter there.
    Attention instances share it only when ``merge_attention``: their heads read the row's
    attention mask, which must then be the instance's own (no padding, or the same mask). A
    residual site's value is its context's residual with claims swapped in: it always merges.
    """
    g: ModelGraph = plan.graph
    lay = _Layout()
    for inst in plan.instances:
        kind = _mergeable(inst, g)
        merge = kind is not None and (kind != "attn" or merge_attention)
        lay.host[inst.index] = lay.n_blocks
        random = inst.random
        lay.block_examples.append(random if merge and random is not None else inst.examples)
        if random is not None:
            if merge:
                lay.ctx[inst.index] = lay.host[inst.index]
                if kind == "attn":
                    lay.attn_merged[g.layer(inst.node.model[0])].append(inst.index)
            else:
                lay.ctx[inst.index] = lay.n_blocks
                lay.block_examples.append(random)
    for inst in plan.instances:
        static = plan.position_masks.get(id(inst.node))
        if inst.position is not None and (static is None or static.ndim == 1):
            for m in inst.node.model:
                lay.only_at[(_key(inst.node, m), lay.host[inst.index])] = inst.position
    for inst in plan.instances:
        if inst.is_leaf:
            continue
        i = inst.index
        merged = lay.ctx[i] == lay.host[i]
        port_claims: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
        for c in inst.children:
            for claim in plan.instances[c].claims:
                key = _key(plan.instances[c].node, claim.up)
                port_claims[(claim.node, claim.port)].append((c, key))
                lay.needs[key].update((lay.host[c], lay.ctx[i]))
        by_stage: dict[tuple, list[str]] = defaultdict(list)
        for m in inst.node.model:
            kind = g.kind(m)
            if kind == "site":
                entry = (i, port_claims.get((m, "in"), []))
                lay.site_of[(g.site_layer(m), lay.host[i])] = entry
                continue
            key = ("attn", g.layer(m)) if kind == "attn" else ("mlp", g.layer(m)) if kind == "mlp" else ("out",)
            by_stage[key].append(m)
        for key, nodes in by_stage.items():
            ports = {p: port_claims.get((nodes[0], p), []) for p in g.ports(nodes[0])}
            for m in nodes[1:]:  # heads of one layer in one instance share their claims
                assert all(port_claims.get((m, p), []) == ports[p] for p in ports)
            if merged and not ablated:  # unclaimed ports already hold the context's input
                ports = {p: cl for p, cl in ports.items() if cl}
            if ports or key == ("out",):
                lay.patches[key].append((i, nodes, ports))
    _share_clean_blocks(plan, lay)
    _split_passes(lay, g, _clean_leaves(plan, lay))
    return lay


def _clean_leaves(plan: Plan, lay: _Layout) -> list[int]:
    """Blocks that are a leaf's clean run, read only through the store: never patched, never a context."""
    protected = set(lay.ctx.values()) | {lay.host[inst.index] for inst in plan.instances if not inst.is_leaf}
    return sorted({lay.host[inst.index] for inst in plan.instances if inst.is_leaf} - protected)


def _share_clean_blocks(plan: Plan, lay: _Layout) -> None:
    """Run leaves whose blocks are the same clean computation once.

    A leaf's block is a clean forward pass on its examples, read only through the store: two leaf
    blocks with the same example for every reference (and the same per-position reads) compute the
    same values, so they become one block. This is exact, and it matters where many leaves agree
    with their parents exactly (``agree=Exact()``: every such leaf runs the reference itself, as in
    the near-full hypotheses :func:`scrub.discover` scores). Blocks that are patched, or read as a
    context (their rows are used inside another instance's pass), are never shared.
    """
    leaves = _clean_leaves(plan, lay)
    if len(leaves) < 2:
        return
    reads: dict[int, list] = defaultdict(list)
    for (node, blk), at in lay.only_at.items():
        reads[blk].append((node, at))
    first: dict[tuple, int] = {}
    canon: dict[int, int] = {}
    for blk in leaves:
        canon[blk] = first.setdefault((lay.block_examples[blk].tobytes(), tuple(sorted(reads[blk]))), blk)
    if all(canon[b] == b for b in leaves):
        return
    kept = sorted({canon.get(b, b) for b in range(lay.n_blocks)})
    new = {old: k for k, old in enumerate(kept)}

    def move(b: int) -> int:
        return new[canon.get(b, b)]

    lay.host = {i: move(b) for i, b in lay.host.items()}
    lay.ctx = {i: move(b) for i, b in lay.ctx.items()}
    needs = defaultdict(set)
    for node, blocks in lay.needs.items():
        needs[node] = {move(b) for b in blocks}
    lay.needs = needs
    lay.only_at = {(node, move(b)): at for (node, b), at in lay.only_at.items()}
    lay.site_of = {(layer, move(b)): entry for (layer, b), entry in lay.site_of.items()}
    lay.block_examples = [lay.block_examples[b] for b in kept]


def _stage_of(key: tuple, g: ModelGraph) -> int:
    return 2 * g.n_layers + 1 if key == ("out",) else 2 * key[1] + (1 if key[0] == "attn" else 2)


def _split_passes(lay: _Layout, g: ModelGraph, leaves: list[int] | None = None) -> None:
    """Group blocks by the last stage anything reads or patches in them; a block nothing reads is dropped.

    Clean ``leaves`` read up to the same stage (two or more, below the output's) are set apart in
    ``lay.leaves``: each chunk runs the distinct examples they hold once, to that stage, and gathers
    (never more rows than running them as blocks, and far fewer when they share examples).
    """
    last: dict[int, int] = defaultdict(int)
    for node, blocks in lay.needs.items():
        for blk in blocks:
            last[blk] = max(last[blk], _key_stage(g, node))
    for key, patches in lay.patches.items():
        for i, _, _ in patches:
            for blk in (lay.host[i], lay.ctx[i]):
                last[blk] = max(last[blk], _stage_of(key, g))
    by_stage: dict[int, list[int]] = defaultdict(list)
    for blk in sorted(last):
        by_stage[last[blk]].append(blk)
    lay.gathered = by_stage.pop(0, [])
    lay.leaves = {}
    leaf_set = set(leaves or ())
    for stage, blocks in list(by_stage.items()):
        clean = [b for b in blocks if b in leaf_set]
        if len(clean) >= 2 and stage < 2 * g.n_layers + 1:
            lay.leaves[stage] = clean
            rest = [b for b in blocks if b not in leaf_set]
            if rest:
                by_stage[stage] = rest
            else:
                del by_stage[stage]
    lay.passes = sorted(by_stage.items())
    for _, blocks in lay.passes:
        lay.slot.update({blk: k for k, blk in enumerate(blocks)})


class _Chunk:
    """Hooks for one chunk of ``b`` references."""

    def __init__(
        self, model, arch: Architecture, plan: Plan, lay: _Layout, refs: np.ndarray, device,
        ablated: dict[str, torch.Tensor] | None = None,
        fixed: dict[int, dict[str, torch.Tensor]] | None = None,
        padding: torch.Tensor | None = None, target: torch.Tensor | None = None, length: int | None = None,
    ) -> None:
        self.model, self.arch, self.plan, self.lay, self.b = model, arch, plan, lay, len(refs)
        #: under a mean or zero ablation (not causal scrubbing): every component's fixed context value
        self.ablated = ablated
        self.ablated_inputs: dict[tuple[str, str], torch.Tensor] = {}
        #: instances claimed as a fixed value (agree=Mean() / Zero()): every output's fixed value
        self.fixed = fixed or {}
        self.refs = refs
        self.target = target  # [b] each reference's scored position
        self.length = length  # positions run: every later one is padding in every example the chunk uses
        # the data's padding masks, when heads computed in their context's block need their own
        self.padding = padding
        self.store: dict[tuple[str, int], torch.Tensor] = {}
        self.base: dict[int, torch.Tensor] = {}  # instance -> its context's residual before the layer being patched
        self.final: torch.Tensor | None = None
        # where each instance feeds its parent: None (everywhere), an int (one position, for
        # per-position instances: only that column is touched), or a [B, T, 1] mask
        self.masks: dict[int, torch.Tensor | int | None] = {}
        # where an instance claims only a subspace of its outputs: the projection [d, d]
        self.proj: dict[int, torch.Tensor] = {}
        # where an instance claims a neuron set of an MLP: (neuron indices, W_out[those rows])
        self.neurons: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for inst in plan.instances[1:]:
            sub = inst.node.subspace
            if sub is not None:
                self.proj[inst.index] = sub.projection.to(device=device, dtype=_dtype(model))
            if inst.node.neurons is not None:
                idx = torch.tensor(inst.node.neurons, device=device)
                w_out = arch.W_out(model, plan.graph.layer(inst.node.model[0]))
                if inst.node.neurons[-1] >= w_out.shape[0]:
                    raise HypothesisError(
                        f"node {inst.node.name!r}: neurons {[i for i in inst.node.neurons if i >= w_out.shape[0]]} are "
                        f"out of range: {inst.node.model[0]} has neurons 0..{w_out.shape[0] - 1}"
                    )
                self.neurons[inst.index] = (idx, w_out[idx])
            static = plan.position_masks.get(id(inst.node))
            if inst.position is not None and (static is None or static.ndim == 1):
                if static is not None and not static[inst.position]:  # the plan drops these: never silently skip one
                    raise ExecutionError(f"instance {inst.label} sits at a position its node's positions= exclude")
                self.masks[inst.index] = inst.position
            else:
                m = plan.claim_mask(inst, refs)
                self.masks[inst.index] = None if m is None else m[:, : self.length].to(device)[..., None]

    def release(self) -> None:
        """Drop the chunk's activations now. Its hooks close over it (a reference cycle), so
        without this every chunk's activations would wait for the cyclic garbage collector and
        memory would grow with the number of chunks."""
        self.store.clear()
        self.base.clear()
        self.final = None

    def rows(self, block: int) -> slice:
        """The rows of ``block`` in the batch of its pass."""
        k = self.lay.slot[block]
        return slice(k * self.b, (k + 1) * self.b)

    def put(self, node: str, blk: int, v: torch.Tensor) -> None:
        at = self.lay.only_at.get((node, blk))
        self.store[(node, blk)] = v if at is None else v[:, at]

    def gather(self, tokens: torch.Tensor) -> None:
        """The outputs of blocks read only at the embeddings, looked up without a forward pass.

        ``tokens`` is ``[len(lay.gathered) * b, T]``, one block after another.
        """
        for k, blk in enumerate(self.lay.gathered):
            for node in self.plan.graph.inputs:
                if blk in self.lay.needs.get(node, ()):
                    t = tokens[k * self.b : (k + 1) * self.b]
                    if node == "embed":
                        v = self.arch.embed(self.model, t)
                    else:
                        v = self.arch.pos(self.model, t.shape[1]).expand(self.b, -1, -1)
                    self.put(node, blk, v)

    def fill_leaves(self, data: Dataset, examples: np.ndarray, length: int, device) -> None:
        """Store the outputs of ``lay.leaves``: per stage, one clean pass over the distinct examples
        those blocks hold for this chunk's references, gathered back per block."""
        for stop, blocks in self.lay.leaves.items():
            ex = examples[blocks][:, self.refs]  # [blocks, b]
            uniq, inv = np.unique(ex, return_inverse=True)
            inv = inv.reshape(ex.shape)
            here = set(blocks)
            nodes = sorted(n for n, where in self.lay.needs.items() if where & here)
            pseudo = _Layout(block_examples=[uniq], host={0: -1}, slot={0: 0})
            pseudo.needs.update({n: {0} for n in nodes})
            plan = SimpleNamespace(instances=self.plan.instances[:1], graph=self.plan.graph)
            run = _Chunk(self.model, self.arch, plan, pseudo, uniq, device, length=length)  # type: ignore[arg-type]
            idx = torch.from_numpy(uniq)
            tokens = data.tokens[idx, :length].to(device)
            mask = None if data.attention_mask is None else data.attention_mask[idx, :length].to(device)
            _forward(self.model, tokens, mask, run.hooks(len(uniq), stop, [0]), self.arch)
            for k, blk in enumerate(blocks):
                rows = torch.from_numpy(inv[k]).to(device)
                for n in nodes:
                    if blk in self.lay.needs[n]:
                        self.put(n, blk, run.store[(n, 0)][rows])

    def resid(self, i: int, claims, base: torch.Tensor) -> torch.Tensor:
        """The residual into a port of instance ``i``: the context's, with claimed nodes swapped in."""
        r = base.clone()
        for c, up in claims:
            child = self.store[(up, self.lay.host[c])] if c not in self.fixed else self.fixed[c][up][None]
            ctx = self.store[(up, self.lay.ctx[i])] if self.ablated is None else self.ablated[up][None]
            m, p, nw = self.masks[c], self.proj.get(c), self.neurons.get(c)

            def project(d, p=p, nw=nw):
                """The claimed part of an output difference: its neurons' share, then its subspace's."""
                d = d if nw is None else d[..., nw[0]] @ nw[1].to(d.dtype)
                return d if p is None else d @ p

            if m is None:
                r += project(child - ctx)
            elif isinstance(m, int):
                r[:, m] += project((child if child.ndim == 2 else child[:, m]) - ctx[:, m])
            else:
                r += project(child - ctx) * m
        return r

    def ctx_input(self, i: int, node: str, port: str, x: torch.Tensor | None = None) -> torch.Tensor:
        """The context's input into ``node``'s ``port`` for instance ``i``: its context block's residual
        (``x`` at this hook, or the one captured before the layer), or under an ablation the fixed one."""
        if self.ablated is not None:
            key = (node, port)
            if key not in self.ablated_inputs:
                self.ablated_inputs[key] = ablated_input(self.model, self.plan.graph, self.ablated, node, port)
            return self.ablated_inputs[key][None].expand(self.b, -1, -1)
        return self.base[i] if x is None else x[self.rows(self.lay.ctx[i])]

    def keep(self, node: str, x: torch.Tensor, blocks: list[int]) -> None:
        for blk in blocks:
            self.put(node, blk, x[self.rows(blk)] if x.shape[0] != 1 else x.expand(self.b, -1, -1))

    def hooks(self, rows: int, stop: int, blocks: list[int]) -> _HookSet:
        """Hooks for one pass over ``blocks``, ending after stage ``stop``."""
        hs = _HookSet(rows)
        lay, g, here = self.lay, self.plan.graph, set(blocks)
        needed = lambda node: [b for b in lay.needs.get(node, ()) if b in here]
        patched = lambda key: [p for p in lay.patches.get(key, []) if lay.host[p[0]] in here]
        arch = self.arch
        for name in g.inputs:
            if needed(name):
                hs.add(A.HOOK_EMBED if name == "embed" else A.HOOK_POS, lambda x, n=name, b=needed(name): self.keep(n, x, b))
        for layer in range(g.n_layers):
            if 2 * layer + 1 > stop:
                break
            attn = patched(("attn", layer))
            own = [i for i in lay.attn_merged.get(layer, []) if lay.host[i] in here]
            if own and self.padding is not None:
                hs.mask(layer, lambda m, own=own: self._own_masks(m, own))
            mlp = patched(("mlp", layer)) if not g.attn_only and 2 * layer + 2 <= stop else []
            mlp_pre = mlp if arch.mlp_in_normalized else []
            sites = needed(f"r{layer}")
            if attn or mlp_pre or sites:
                hs.add(A.hook_resid_pre(layer),
                       lambda x, a=attn, m=mlp_pre, L=layer, s=sites: self._sites(x, L, s) or self._capture(x, a, m))
            if attn:
                for port in ("q", "k", "v"):
                    if any(port in ports for _, _, ports in attn):
                        hs.add(A.hook_qkv(layer, port), lambda x, L=layer, p=port, a=attn: self._qkv(x, L, p, a))
            if g.whole_layers:  # post-norm models: the layer's normalised output is the node's
                n = f"a{layer}"
                if needed(n) or stop == 2 * layer + 1:
                    out = lambda x, n=n, b=needed(n): self.keep(n, x, b)
                    hs.add(arch.hook_attn_out(layer), _then_stop(out, stop == 2 * layer + 1))
            else:
                heads = [(h, f"a{layer}.{h}", needed(f"a{layer}.{h}")) for h in range(g.n_heads)]
                heads = [hd for hd in heads if hd[2]]
                if heads or stop == 2 * layer + 1:
                    z = lambda x, L=layer, hd=heads: self._z(x, L, hd)
                    hs.add(A.hook_z(layer), _then_stop(z, stop == 2 * layer + 1))
            if g.attn_only or 2 * layer + 2 > stop:
                continue
            if mlp:
                hs.add(arch.hook_mlp_in(layer), lambda x, L=layer, a=mlp: self._mlp_in(x, L, a))
            if needed(f"m{layer}{POST}"):
                n = f"m{layer}{POST}"
                hs.add(arch.hook_mlp_post(layer), lambda x, n=n, b=needed(n): self.keep(n, x, b))
            if not mlp and layer == g.n_layers - 1 and self._scored_only(stop, blocks):
                hs.add(arch.hook_mlp_in(layer), self._at_target)
            if needed(f"m{layer}") or stop == 2 * layer + 2:
                n = f"m{layer}"
                out = lambda x, n=n, b=needed(n): self.keep(n, x, b)
                hs.add(arch.hook_mlp_out(layer), _then_stop(out, stop == 2 * layer + 2))
        if stop == 2 * g.n_layers + 1:
            last = g.n_layers
            hs.add(A.HOOK_FINAL, lambda x, s=needed(f"r{last}"): self._sites(x, last, s) or self._out(x))
        return hs

    def _sites(self, x, layer: int, blocks: list[int]) -> None:
        """Store residual site ``r{layer}`` for ``blocks``: the row's residual, or for a non-leaf site
        instance hosted there, its context's residual with its children's claims swapped in."""
        for blk in blocks:
            entry = self.lay.site_of.get((layer, blk))
            if entry is None:
                self.put(f"r{layer}", blk, x[self.rows(blk)].clone())
            else:
                i, claims = entry
                self.put(f"r{layer}", blk, self.resid(i, claims, self.ctx_input(i, f"r{layer}", "in", x)))

    def _scored_only(self, stop: int, blocks: list[int]) -> bool:
        """Whether the last MLP of this pass may run at the scored position only: the pass is the
        output's own block alone, nothing is stored from it at or after the last MLP (its output,
        its neurons, the final residual as a site), and no value is fixed by an ablation."""
        g, root = self.plan.graph, self.plan.instances[0]
        late = [key for key, where in self.lay.needs.items()
                if _key_stage(g, key) >= 2 * g.n_layers and self.lay.host[0] in where]
        return (
            self.arch.narrow_last_mlp
            and stop == 2 * g.n_layers + 1
            and blocks == [self.lay.host[0]]
            and self.lay.ctx.get(0) == self.lay.host[0]
            and not late
            and root.node.model == ("out",)
            and self.target is not None
            and self.ablated is None
            and not self.fixed
        )

    def _at_target(self, x: torch.Tensor) -> torch.Tensor:
        """The last MLP's input at each row's scored position only, ``[rows, 1, d]``.

        Everything after it is column-local: the MLP's output broadcasts onto the residual, whose
        scored column is then exact (the other columns are never read).
        """
        return x[torch.arange(x.shape[0], device=x.device), self.target][:, None]

    def _own_masks(self, mask: torch.Tensor, instances: list[int]) -> torch.Tensor:
        """The pass's padding mask with each merged attention instance's rows set to its own examples'."""
        assert self.padding is not None
        mask = mask.clone()
        for i in instances:
            own = self.padding[torch.from_numpy(self.plan.instances[i].examples[self.refs]), : mask.shape[1]]
            mask[self.rows(self.lay.host[i])] = own.to(device=mask.device, dtype=mask.dtype)
        return mask

    def _capture(self, x, *patches) -> None:
        """The context's residual before this layer, for every instance patched here from it."""
        for i in {i for group in patches for i, _, _ in group}:
            self.base[i] = x[self.rows(self.lay.ctx[i])].clone()

    def _qkv(self, x, layer: int, port: str, attn):
        ln = self.arch.ln1(self.model, layer)
        w, bias = self.arch.qkv(self.model, layer, port)
        for i, nodes, ports in attn:
            if port not in ports:
                continue
            # query heads read their own row; keys and values live in the heads' kv groups
            heads = [h for n in nodes for h in self.plan.graph.heads_of(n)]
            rows = sorted(set(self.arch.rows(port, heads)))
            normed = ln(self.resid(i, ports[port], self.ctx_input(i, nodes[0], port)))
            val = torch.einsum("btm,hmd->bthd", normed, w[rows]) + bias[rows]
            x[self.rows(self.lay.host[i]), :, rows] = val.to(x.dtype)
        return x

    def _z(self, z, layer: int, heads) -> None:
        w_o = self.arch.W_O(self.model, layer)
        for h, name, blocks in heads:
            for blk in blocks:
                at = self.lay.only_at.get((name, blk))
                zh = z[self.rows(blk), :, h] if at is None else z[self.rows(blk), at, h]
                self.store[(name, blk)] = zh @ w_o[h]

    def _mlp_in(self, x, layer: int, mlp):
        if self.arch.mlp_in_normalized:  # the hook holds ln1(resid_pre): patch the residual, then normalise
            new = {i: self.arch.mlp_in_value(self.model, layer, self.resid(i, ports["in"], self.ctx_input(i, m[0], "in")))
                   for i, m, ports in mlp}
        else:
            new = {i: self.resid(i, ports["in"], self.ctx_input(i, m[0], "in", x)) for i, m, ports in mlp}
        for i, val in new.items():
            x[self.rows(self.lay.host[i])] = val.to(x.dtype)
        return x

    def _out(self, x):
        (i, _, ports), = self.lay.patches[("out",)]
        self.final = self.resid(i, ports.get("in", []), self.ctx_input(i, "out", "in", x))
        raise _Stop


def _dtype(model) -> torch.dtype:
    try:
        return next(model.parameters()).dtype
    except StopIteration:
        return torch.float32


def has_padding(data: Dataset) -> bool:
    """Whether some example masks a position. Without padding, a mask changes nothing and blocks may merge."""
    return data.attention_mask is not None and not bool(data.attention_mask.bool().all())


def _merge_groups(plan: Plan, data: Dataset, per_layer_masks: bool = False) -> list[tuple[bool, np.ndarray]]:
    """The references split by whether their attention instances may share their context's block.

    Without padding every reference may, and so may every reference of a model whose heads can be
    given their own example's mask in the middle of a pass (``per_layer_masks``, see
    :meth:`Architecture.override_attention_mask`). Otherwise a reference may when, for every attention
    instance that could merge, its example and its random example have the same attention mask
    (a row then runs with exactly the mask the instance's heads need). Each group runs its own
    layout; a reference's logits do not depend on which other references share its pass.
    """
    everyone = np.arange(plan.n)
    if not has_padding(data) or per_layer_masks:
        return [(True, everyone)]
    attn = [inst for inst in plan.instances if _mergeable(inst, plan.graph) == "attn"]
    if not attn:
        return [(True, everyone)]
    assert data.attention_mask is not None
    mask = data.attention_mask.bool()
    same = torch.ones(plan.n, dtype=torch.bool)
    for inst in attn:
        assert inst.random is not None
        a, b = torch.from_numpy(inst.examples), torch.from_numpy(inst.random)
        same &= (mask[a] == mask[b]).all(dim=1)
    ok = same.numpy()
    groups = [(True, everyone[ok]), (False, everyone[~ok])]
    return [(m, refs) for m, refs in groups if len(refs)]


def _needed_lengths(plan: Plan, data: Dataset, lay: _Layout) -> np.ndarray | None:
    """``[N]``: for each reference, how many leading positions its pass rows must run (None: all).

    A position after the last unmasked one of every example a reference's rows run, or whose mask
    a merged head borrows, is a padding key for all of them: no query attends to it, so nothing
    computed before it depends on it, and what is computed there is read only there and never
    scored. The scored position, the positions per-reference copies are read at and every fixed
    position a per-position instance sits at are kept. Without an attention mask nothing is cut.
    """
    if data.attention_mask is None:
        return None
    mask = data.attention_mask.bool()
    t = mask.shape[1]
    last = torch.where(mask.any(1), t - mask.flip(1).int().argmax(1), 0).numpy()  # 1 + last unmasked index
    need = np.maximum(last[lay.examples].max(0), data.target_pos.numpy() + 1)
    floor = 1
    for inst in plan.instances:
        need = np.maximum(need, last[inst.examples])
        if inst.random is not None:
            need = np.maximum(need, last[inst.random])
        if inst.at is not None:
            need = np.maximum(need, inst.at + 1)
        if inst.position is not None:
            floor = max(floor, inst.position + 1)
    return np.clip(np.maximum(need, floor), 1, t)


def n_blocks(plan: Plan, data: Dataset, model=None) -> int:
    """Rows one reference takes in a pass: the smallest batch the plan can run with (on ``model``,
    if given: some models let more blocks merge on padded data)."""
    masks = model is not None and Architecture.of(model).per_layer_masks
    return max(_layout(plan, merge).width(len(data)) for merge, _ in _merge_groups(plan, data, masks))


def _chunks(refs, size: int):
    """``refs`` (a count, or an array of reference indices) in consecutive pieces of ``size``."""
    refs = np.arange(refs) if isinstance(refs, int) else refs
    for start in range(0, len(refs), size):
        yield refs[start : start + size]


def _work(model, plan: Plan, data: Dataset, rows_per_pass: int, ablated: bool, fixed: bool) -> tuple[int, list]:
    """The chunks :func:`run_plan` runs, in order: ``(layout, references, length)``; and the most blocks of a layout."""
    groups = [(_layout(plan, merge, ablated), refs)
              for merge, refs in _merge_groups(plan, data, Architecture.of(model).per_layer_masks)]
    # fixed values (mean, zero) are [T, d]: chunks are not cut short under them
    cut = not ablated and not fixed
    work = []
    for lay, group in groups:
        need = _needed_lengths(plan, data, lay) if cut else None
        if need is not None:  # references needing similar lengths share chunks, so chunks can be cut short
            group = group[np.argsort(need[group], kind="stable")]
        if need is not None:  # padded: small chunks (a row per block), each cut to the length its references use
            size = max(1, rows_per_pass // lay.n_blocks)
        else:  # as many references as the widest pass and the stored outputs allow
            size = max(1, rows_per_pass // lay.width(len(data)))
            leaves = max((len(b) for b in lay.leaves.values()), default=0)
            if leaves * size > rows_per_pass and len(data) > rows_per_pass:  # distinct examples could exceed a pass
                size = max(1, rows_per_pass // leaves)
        for refs in _chunks(group, size):
            work.append((lay, refs, data.seq_len if need is None else int(need[refs].max())))
    return max(lay.width(len(data)) for lay, _ in groups), work


def plan_chunks(
    model, plan: Plan, data: Dataset, *, batch_size: int | None = None, ablation: Ablation | None = None
) -> list[np.ndarray]:
    """The references of each chunk :func:`run_plan` runs with this ``batch_size``, in order.

    A distributed run (``scrub._distributed``) hands out chunks with ``run_plan(chunks=)``, so that
    every chunk is the same batch as in a local run.
    """
    fixed = any(isinstance(inst.node.agree, (Mean, Zero)) for inst in plan.instances)
    rows_per_pass = batch_size or default_batch_size(model, data.seq_len)
    return [refs for _, refs, _ in _work(model, plan, data, rows_per_pass, check_ablation(ablation) is not None, fixed)[1]]


def run_plan(
    model,
    plan: Plan,
    data: Dataset,
    *,
    batch_size: int | None = None,
    progress: bool | None = False,
    desc: str = "scrubbing",
    ablation: Ablation | None = None,
    chunks: slice | None = None,
) -> torch.Tensor:
    """The scrubbed model's logits at each reference's target position, ``[N, vocab]``.

    ``batch_size`` is the number of rows per forward pass; a chunk holds
    ``batch_size // blocks`` references (at least one). With ``ablation``
    (:class:`~scrub.Mean` or :class:`~scrub.Zero`; not causal scrubbing) every context value is
    that fixed value instead of the random example's. ``chunks`` runs only those chunks of
    :func:`plan_chunks` and returns their references' logits, one chunk after another.
    """
    device = model_device(model)
    arch = Architecture.of(model)
    ablation = check_ablation(ablation)
    fixed_kinds = {type(inst.node.agree) for inst in plan.instances if isinstance(inst.node.agree, (Mean, Zero))}
    values: dict[type, dict[str, torch.Tensor]] = {}
    for kind in {type(ablation) for _ in [0] if ablation is not None} | fixed_kinds:
        values[kind] = ablated_values(model, plan.graph, data, kind(), device)
    ablated = None if ablation is None else values[type(ablation)]
    # instances claimed as a fixed value (agree=Mean() / Zero()): their outputs, instead of a run's
    fixed = {inst.index: values[type(inst.node.agree)] for inst in plan.instances
             if isinstance(inst.node.agree, (Mean, Zero))}
    swap = has_padding(data) and arch.per_layer_masks  # merged heads get their own example's mask
    rows_per_pass = batch_size or default_batch_size(model, data.seq_len)
    most, work = _work(model, plan, data, rows_per_pass, ablated is not None, bool(fixed))
    if rows_per_pass < most:
        warnings.warn(
            f"batch_size={rows_per_pass} is smaller than the plan's {most} rows per reference; "
            f"running one reference per chunk (up to {most} rows)",
            stacklevel=2,
        )
    if chunks is not None:
        work = work[chunks]
    out: torch.Tensor | None = None
    parts: list[torch.Tensor] = []
    needs_mlp_in = not plan.graph.attn_only  # MLP inputs are patched, or the last one narrowed to the scored position
    with torch.inference_mode(), _mlp_in_hooks(model, arch, needs_mlp_in):
        quiet = True if progress is False or len(work) < 2 else (None if progress is None else False)  # None: on a terminal
        for lay, refs, length in tqdm(work, desc=desc, disable=quiet, leave=False):
            examples = lay.examples
            target = data.target_pos[refs].to(device)
            chunk = _Chunk(model, arch, plan, lay, refs, device, ablated, fixed,
                           data.attention_mask if swap else None, target, length)
            if lay.gathered:
                idx = torch.from_numpy(examples[lay.gathered][:, refs].reshape(-1))
                chunk.gather(data.tokens[idx, :length].to(device))
            if lay.leaves:
                chunk.fill_leaves(data, examples, length, device)
            for stop, blocks in lay.passes:
                idx = torch.from_numpy(examples[blocks][:, refs].reshape(-1))
                tokens = data.tokens[idx, :length].to(device)
                mask = None if data.attention_mask is None else data.attention_mask[idx, :length].to(device)
                _forward(model, tokens, mask, chunk.hooks(tokens.shape[0], stop, blocks), arch)
            if chunk.final is None:
                raise ExecutionError("the output's final residual was never computed (the last pass did not reach it)")
            logits = _target_logits(model, arch, chunk.final, target).float().cpu()
            if chunks is not None:
                parts.append(logits)
                chunk.release()
                continue
            if out is None:
                out = logits.new_empty((plan.n, logits.shape[1]))
            out[torch.from_numpy(refs)] = logits
            chunk.release()
    if chunks is not None:
        return torch.cat(parts)
    assert out is not None
    return out


def run_clean(model, data: Dataset, *, batch_size: int | None = None) -> torch.Tensor:
    """The unmodified model's logits at each example's target position, ``[N, vocab]``."""
    device = model_device(model)
    arch = Architecture.of(model)
    size = batch_size or default_batch_size(model, data.seq_len)
    out = []
    with torch.inference_mode():
        for refs in _chunks(len(data), size):
            tokens = data.tokens[refs].to(device)
            mask = None if data.attention_mask is None else data.attention_mask[refs].to(device)
            captured: dict[str, torch.Tensor] = {}

            def grab(x, captured=captured):
                captured["x"] = x
                raise _Stop

            hs = _HookSet(tokens.shape[0])
            hs.add(A.HOOK_FINAL, grab)
            _forward(model, tokens, mask, hs)
            out.append(_target_logits(model, arch, captured["x"], data.target_pos[refs].to(device)).float().cpu())
    return torch.cat(out)
