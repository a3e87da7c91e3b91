"""The plan: a hypothesis expanded into its tree of instances, with every instance's examples sampled up front.

An *instance* is an interpretation node at one place in the treeified hypothesis. For each
reference example it has the example it is run on (agreeing with its parent instance's
example on its feature) and, unless it is a leaf, one shared random example whose clean run
feeds every parent the hypothesis does not claim (DESIGN section 1).

A leaf mapped to a model node that is not an input is evaluated on its own example all the
way down (Redwood's implementation extends a leaf's correspondence to the inputs): its
feature then constrains the whole subtree below it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from scrub.dataset import Dataset
from scrub.graph import ModelGraph
from scrub.hypothesis import Claim, Hypothesis, HypothesisError, Node
from scrub.sampling import Sampler, evaluate_feature

__all__ = ["Instance", "Plan", "make_plan"]

MAX_INSTANCES = 50_000


@dataclass
class Instance:
    """One interpretation node at one place in the tree."""

    index: int
    node: Node
    parent: int | None
    claims: list[Claim]  # the treeified edges this instance feeds into its parent
    position: int | None  # set when a per-position feature split the node
    examples: np.ndarray  # [N]: the example this instance is run on, per reference
    random: np.ndarray | None  # [N]: the shared random example for unimportant parents (None for leaves)
    children: list[int] = field(default_factory=list)

    @property
    def is_leaf(self) -> bool:
        """A leaf is evaluated clean on its own example; the root never is (it is scored, not sampled)."""
        return self.random is None

    @property
    def label(self) -> str:
        return self.node.name if self.position is None else f"{self.node.name}@{self.position}"


@dataclass
class Plan:
    """A hypothesis treeified against a model graph and sampled on a dataset with one seed."""

    hypothesis: Hypothesis
    graph: ModelGraph
    instances: list[Instance]
    n: int
    seq_len: int
    seed: int | tuple[int, ...]
    position_masks: dict[int, np.ndarray]  # id(node) -> [T] or [N, T] bool, for nodes with positions=

    @property
    def root(self) -> Instance:
        return self.instances[0]

    @property
    def n_random(self) -> int:
        """The number of random contexts (one per non-leaf instance)."""
        return sum(1 for i in self.instances if not i.is_leaf)

    def claim_mask(self, inst: Instance, refs: np.ndarray) -> torch.Tensor | None:
        """Where ``inst`` feeds its parent, per reference in ``refs``: ``[B, T]`` bool, or None for everywhere."""
        mask = None
        pm = self.position_masks.get(id(inst.node))
        if pm is not None:
            if pm.ndim == 1:
                mask = torch.from_numpy(pm)[None, :].expand(len(refs), -1)
            else:
                parent_examples = self.instances[inst.parent].examples[refs]
                mask = torch.from_numpy(pm[parent_examples])
        if inst.position is not None:
            onehot = torch.zeros(len(refs), self.seq_len, dtype=torch.bool)
            onehot[:, inst.position] = True
            mask = onehot if mask is None else (mask & onehot)
        return mask

    def summary(self) -> str:
        return (
            f"{len(self.instances)} instances ({sum(i.is_leaf for i in self.instances)} leaves), "
            f"{self.n_random} random contexts, {self.n} references"
        )


def _position_mask(node: Node, data: Dataset) -> np.ndarray | None:
    n, t = len(data), data.seq_len
    if node.positions is None:
        return None
    if not callable(node.positions):
        pos = [int(p) for p in node.positions]
        bad = [p for p in pos if not -t <= p < t]
        if bad:
            raise HypothesisError(f"node {node.name!r}: positions {bad} are outside the sequence (length {t})")
        mask = np.zeros(t, dtype=bool)
        mask[pos] = True
        return mask
    try:
        value = node.positions(data)
    except Exception as exc:
        raise HypothesisError(f"node {node.name!r}: the positions function raised {type(exc).__name__}: {exc}") from exc
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if arr.shape == (n,):
        if not np.issubdtype(arr.dtype, np.integer):
            raise HypothesisError(f"node {node.name!r}: a positions function giving [N] must give ints, got {arr.dtype}")
        if (arr < -t).any() or (arr >= t).any():
            raise HypothesisError(f"node {node.name!r}: the positions function gave positions outside 0..{t - 1}")
        mask = np.zeros((n, t), dtype=bool)
        mask[np.arange(n), arr % t] = True
        return mask
    if arr.shape == (n, t):
        return arr.astype(bool)
    raise HypothesisError(
        f"node {node.name!r}: the positions function returned shape {arr.shape}; expected [{n}] positions "
        f"or an [{n}, {t}] mask"
    )


def _used_columns(inst: Instance, masks: dict[int, np.ndarray], t: int) -> set[int] | None:
    """The columns of ``inst``'s output its parent reads, when known before sampling (else None)."""
    if inst.parent is None:
        return None
    cols = set(range(t))
    pm = masks.get(id(inst.node))
    if pm is not None:
        if pm.ndim == 2:
            return None
        cols &= {int(p) for p in np.flatnonzero(pm)}
    if inst.position is not None:
        cols &= {inst.position}
    return cols


def _column_local(graph: ModelGraph, claim: Claim) -> bool:
    """Does the port act position by position (an MLP's input, a head's queries)?"""
    return claim.port == "q" or graph.kind(claim.node) == "mlp"


def make_plan(
    hypothesis: Hypothesis, graph: ModelGraph, data: Dataset, seed: int | tuple[int, ...] = 0, *, warn: bool = True
) -> Plan:
    """Validate ``hypothesis``, treeify it and sample every instance's examples with ``seed``.

    ``seed`` seeds a :func:`numpy.random.default_rng` (an int or a tuple of ints); draws are made
    in depth-first order, so the same seed and hypothesis give the same plan.
    """
    hypothesis.validate(graph)
    n, t = len(data), data.seq_len
    if n < 2:
        raise ValueError(f"causal scrubbing needs at least 2 examples, the dataset has {n}")
    nodes = hypothesis.nodes()
    samplers: dict[int, Sampler] = {}
    masks: dict[int, np.ndarray] = {}
    for node in nodes:
        if node is hypothesis.root:
            continue
        s = Sampler(evaluate_feature(node.agree, data, node.name), n, node.name)
        if warn:
            s.warn_if_unique()
        samplers[id(node)] = s
        m = _position_mask(node, data)
        if m is not None:
            masks[id(node)] = m
    # claims that only data can tell apart: positions given by functions
    for node in nodes:
        for i, a in enumerate(node.children):
            for b in node.children[i + 1 :]:
                if id(a) not in masks or id(b) not in masks or a is b:
                    continue
                shared = set(hypothesis.claims(node, a, graph)) & set(hypothesis.claims(node, b, graph))
                if shared and (masks[id(a)] & masks[id(b)]).any():
                    c = next(iter(shared))
                    raise HypothesisError(
                        f"nodes {a.name!r} and {b.name!r} both claim the treeified path {c.up} -> {c.node}.{c.port} "
                        f"under {node.name!r} at the same positions for some examples"
                    )

    rng = np.random.default_rng(seed)
    instances: list[Instance] = []

    def new(node: Node, parent: Instance | None, claims: list[Claim], position: int | None, examples) -> Instance:
        if len(instances) >= MAX_INSTANCES:
            raise HypothesisError(
                f"hypothesis {hypothesis.name!r} treeifies into more than {MAX_INSTANCES} instances "
                f"(at node {node.name!r}); per-position features multiply the tree by the sequence length"
            )
        inst = Instance(len(instances), node, None if parent is None else parent.index, claims, position, examples, None)
        instances.append(inst)
        if parent is not None:
            parent.children.append(inst.index)
        if node.children or parent is None or node.open:
            inst.random = rng.integers(0, n, size=n)
            used = _used_columns(inst, masks, t)
            for child in node.children:
                claims_c = hypothesis.claims(node, child, graph)
                sampler = samplers[id(child)]
                if sampler.kind == "position":
                    pm = masks.get(id(child))
                    positions = range(t) if pm is None or pm.ndim == 2 else np.flatnonzero(pm)
                    if used is not None and all(_column_local(graph, c) for c in claims_c):
                        # the parent is read only at `used`, and these ports act column by column:
                        # copies of the child at other positions could change nothing that is read
                        positions = [p for p in positions if p in used]
                    for p in positions:
                        new(child, inst, claims_c, int(p), sampler.draw(inst.examples, rng, int(p)))
                else:
                    new(child, inst, claims_c, None, sampler.draw(inst.examples, rng))
        return inst

    new(hypothesis.root, None, [], None, np.arange(n))
    return Plan(hypothesis, graph, instances, n, t, seed, masks)
