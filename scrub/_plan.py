"""The plan: a hypothesis expanded into its tree of instances, with every instance's examples sampled up front.

An *instance* is an interpretation node at one place in the treeified hypothesis. For each
reference example it has the example it is run on (agreeing with its parent instance's
example on its feature) and, unless it is a leaf, one shared random example whose clean run
feeds every parent the hypothesis does not claim (docs/design.md).

A leaf mapped to a model node that is not an input is evaluated on its own example all the
way down (Redwood's implementation extends a leaf's correspondence to the inputs): its
feature then constrains the whole subtree below it.

**No work for what nothing reads.** The output is read at each reference's target position
only, and some ports read their input position by position (an MLP's input, a head's queries,
a residual site, the output). So for each reference, each instance's output is read at a known set of positions:
``R(root)[x] = {tp(x)}``; for a child ``c`` of ``i``, ``R(c)[x] = claim(c)[x] & R(i)[x]`` if all its
claimed ports are column-local, else ``claim(c)[x]`` where ``R(i)[x]`` is not empty, with
``claim(c)[x]`` the positions it is patched at (its ``positions=`` and its per-position copy). An
instance with ``R`` empty for every reference is dropped with its subtree, and per-position copies
of a node that are each read for disjoint sets of references (at most one per reference: a
``positions=`` giving one position per example, :func:`scrub.at_target`) are merged into one
instance that, for each reference, is the copy that reference reads. Every reference then sees
exactly the values of the unpruned plan at the positions it reads: the draws are made for the
full tree in the same order (pruned instances still draw), so the scores are bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from scrub import _alignment as alignment
from scrub._alignment import AtTarget
from scrub._dataset import Dataset
from scrub._graph import ModelGraph
from scrub._hypothesis import Claim, Hypothesis, HypothesisError, Node, _overlap_message, conflicting_claims
from scrub._sampling import Sampler, evaluate_feature
from scrub.errors import DatasetError

__all__ = ["Instance", "Plan", "make_plan"]

MAX_INSTANCES = 50_000
#: The full (unpruned) tree is walked to keep the random draws of the unpruned plan.
MAX_WALKED = 200_000


@dataclass
class Instance:
    """One interpretation node at one place in the tree."""

    index: int
    node: Node
    parent: int | None
    claims: list[Claim]  # the treeified edges this instance feeds into its parent
    position: int | None  # set when a per-position feature split the node (and every reference reads it there)
    examples: np.ndarray  # [N]: the example this instance is run on, per reference
    random: np.ndarray | None  # [N]: the shared random example for unimportant parents (None for leaves)
    children: list[int] = field(default_factory=list)
    #: [N] the position each reference reads this instance at (-1: nowhere), for per-position copies
    #: merged across references (``position`` is then None); None otherwise.
    at: np.ndarray | None = None

    @property
    def is_leaf(self) -> bool:
        """A leaf is evaluated clean on its own example; the root never is (it is scored, not sampled)."""
        return self.random is None

    @property
    def label(self) -> str:
        if self.at is not None:
            return f"{self.node.name}@target"
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
    #: ids of nodes whose ``[N, T]`` position mask is indexed by reference (``at_target``), not by
    #: the parent's example
    by_reference: frozenset[int] = frozenset()
    #: the number of instances of the unpruned tree (``len(instances)`` when nothing was pruned)
    unpruned_size: int = 0

    # A plan is pickled to run on other processes (scrub._distributed). Two fields are keyed by
    # id(node), which a copy does not keep: they travel keyed by node name (unique in a hypothesis)
    # and are keyed again by the copy's nodes when it is unpickled.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        name = {id(n): n.name for n in self.hypothesis.nodes()}
        state["position_masks"] = {name[k]: v for k, v in self.position_masks.items()}
        state["by_reference"] = frozenset(name[k] for k in self.by_reference)
        return state

    def __setstate__(self, state: dict) -> None:
        node = {n.name: n for n in state["hypothesis"].nodes()}
        state["position_masks"] = {id(node[k]): v for k, v in state["position_masks"].items()}
        state["by_reference"] = frozenset(id(node[k]) for k in state["by_reference"])
        self.__dict__.update(state)

    @property
    def root(self) -> Instance:
        return self.instances[0]

    @property
    def n_random(self) -> int:
        """The number of random contexts (one per non-leaf instance)."""
        return sum(1 for i in self.instances if not i.is_leaf)

    def claim_mask(self, inst: Instance, refs: np.ndarray) -> torch.Tensor | None:
        """Where ``inst`` feeds its parent, per reference in ``refs``: ``[B, T]`` bool, or None for everywhere."""
        refs = np.asarray(refs)
        mask = None
        pm = self.position_masks.get(id(inst.node))
        if pm is not None:
            if pm.ndim == 1:
                mask = torch.from_numpy(pm)[None, :].expand(len(refs), -1)
            elif id(inst.node) in self.by_reference:
                mask = torch.from_numpy(pm[refs])
            else:
                assert inst.parent is not None  # the root has no position mask
                parent_examples = self.instances[inst.parent].examples[refs]
                mask = torch.from_numpy(pm[parent_examples])
        if inst.at is not None:
            at = inst.at[refs]
            onehot = torch.zeros(len(refs), self.seq_len, dtype=torch.bool)
            rows = np.flatnonzero(at >= 0)
            onehot[torch.from_numpy(rows), torch.from_numpy(at[rows])] = True
            mask = onehot if mask is None else (mask & onehot)
        elif inst.position is not None:
            onehot = torch.zeros(len(refs), self.seq_len, dtype=torch.bool)
            onehot[:, inst.position] = True
            mask = onehot if mask is None else (mask & onehot)
        return mask

    def summary(self) -> str:
        pruned = "" if self.unpruned_size in (0, len(self.instances)) else f" (unpruned: {self.unpruned_size})"
        return (
            f"{len(self.instances)} instances{pruned} ({sum(i.is_leaf for i in self.instances)} leaves), "
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
    try:
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise HypothesisError(
            f"node {node.name!r}: the positions function returned {type(value).__name__}, not an array ({exc})"
        ) from None
    if arr.shape == (n,):
        if arr.dtype.kind not in "iu":
            raise HypothesisError(
                f"node {node.name!r}: a positions function giving [N] values must give integer positions, "
                f"got dtype {arr.dtype} (bools, floats and strings are not positions; return an [N, T] bool "
                "mask to claim several positions)"
            )
        if (arr < -t).any() or (arr >= t).any():
            raise HypothesisError(f"node {node.name!r}: the positions function gave positions outside 0..{t - 1}")
        mask = np.zeros((n, t), dtype=bool)
        mask[np.arange(n), arr % t] = True
        return mask
    if arr.shape == (n, t):
        if arr.dtype.kind == "b":
            return arr.astype(bool)
        if arr.dtype.kind in "iu" and bool(((arr == 0) | (arr == 1)).all()):
            return arr.astype(bool)
        if arr.dtype.kind in "iu":
            i, j = (int(v) for v in np.argwhere((arr != 0) & (arr != 1))[0])
            detail = f"holds {arr[i, j]} at [{i}, {j}]"
        else:
            detail = f"has dtype {arr.dtype}"
        raise HypothesisError(
            f"node {node.name!r}: a positions function giving an [N, T] mask must give bools or the ints 0 and 1; "
            f"its result {detail}"
        )
    raise HypothesisError(
        f"node {node.name!r}: the positions function returned shape {arr.shape}; expected [{n}] positions "
        f"or an [{n}, {t}] mask"
    )


def _used_columns(inst, masks: dict[int, np.ndarray], t: int) -> set[int] | None:
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
    """Does the port act position by position (an MLP's input, a head's queries, a residual site)?"""
    return claim.port == "q" or graph.kind(claim.node) in ("mlp", "site")


def _reads_by_column(graph: ModelGraph, claim: Claim) -> bool:
    """Is the port's position ``p`` read only where the node's output is read at ``p``? (adds the output)"""
    return _column_local(graph, claim) or graph.kind(claim.node) == "output"


@dataclass(eq=False)
class _Walked:
    """An instance of the full (unpruned) tree; kept only where some reference reads it."""

    node: Node
    parent: _Walked | None
    k: int  # index among its parent node's children
    claims: list[Claim]
    position: int | None
    examples: np.ndarray
    random: np.ndarray | None = None
    active: np.ndarray | None = None  # [N] bool: the references that read it (None: not tracked)
    at_score: bool = False  # read only at the scored position (a column-local chain from the output)
    children: list[_Walked] = field(default_factory=list)
    index: int = -1

    @property
    def is_leaf(self) -> bool:
        return self.random is None


def make_plan(
    hypothesis: Hypothesis,
    graph: ModelGraph,
    data: Dataset,
    seed: int | tuple[int, ...] = 0,
    *,
    warn: bool = True,
    _prune: bool = True,
) -> Plan:
    """Validate ``hypothesis``, treeify it and sample every instance's examples with ``seed``.

    ``seed`` seeds a :func:`numpy.random.default_rng` (an int or a tuple of ints); draws are made
    in depth-first order over the full tree, so the same seed and hypothesis give the same plan.
    Instances nothing reads are left out, and per-position copies read by disjoint references are
    merged (see the module docstring); the results are those of the full tree, bit for bit.

    With ``warn``, warns when most examples of a feature agree only with themselves, and
    (:class:`scrub.AlignmentWarning`) when the targets vary and a feature is read at a position
    it does not describe.
    """
    hypothesis.validate(graph)
    n, t = len(data), data.seq_len
    if n < 2:
        raise DatasetError(f"causal scrubbing needs at least 2 examples, the dataset has {n}")
    tp = data.target_pos.numpy() % t
    nodes = hypothesis.nodes()
    samplers: dict[int, Sampler] = {}
    masks: dict[int, np.ndarray] = {}
    by_reference: set[int] = set()
    for node in nodes:
        if node is hypothesis.root:
            continue
        s = Sampler(evaluate_feature(node.agree, data, node.name), n, node.name)
        if warn:
            s.warn_if_unique()
        samplers[id(node)] = s
        m = _position_mask(node, data)
        if isinstance(node.agree, AtTarget):
            if m is not None and m.ndim == 2:
                raise HypothesisError(
                    f"node {node.name!r}: agree=at_target(...) already claims the scored position only; it takes "
                    "no positions= function (a static list of positions still narrows it)"
                )
            target = np.zeros((n, t), dtype=bool)
            target[np.arange(n), tp] = True
            m = target if m is None else target & m[None, :]
            by_reference.add(id(node))
        if m is not None:
            masks[id(node)] = m
    # claims that only data can tell apart: positions given by functions
    for node in nodes:
        for i, a in enumerate(node.children):
            for b in node.children[i + 1 :]:
                if id(a) not in masks or id(b) not in masks or a is b:
                    continue
                clash = conflicting_claims(graph, a, hypothesis.claims(node, a, graph), b,
                                           hypothesis.claims(node, b, graph))
                if clash is not None and (masks[id(a)] & masks[id(b)]).any():
                    raise HypothesisError(_overlap_message(a, b, clash, node, " at the same positions for some examples"))

    rng = np.random.default_rng(seed)
    walked: list[_Walked] = []  # every instance of the full tree, in depth-first order (kept when unpruned)
    count = 0
    track = _prune or warn
    rows = np.arange(n)

    def claimed(node: Node, parent: _Walked, position: int | None) -> np.ndarray:
        """[N, T] bool: where an instance of ``node`` under ``parent`` is patched in, per reference."""
        pm = masks.get(id(node))
        if pm is None:
            m = np.ones((n, t), dtype=bool)
        elif pm.ndim == 1:
            m = np.broadcast_to(pm, (n, t)).copy()
        elif id(node) in by_reference:
            m = pm.copy()
        else:
            m = pm[parent.examples]
        if position is not None:
            only = np.zeros(t, dtype=bool)
            only[position] = True
            m &= only
        return m

    def new(node: Node, parent: _Walked | None, k: int, claims: list[Claim], position: int | None, examples,
            reads: np.ndarray | None) -> _Walked:
        nonlocal count
        count += 1
        if count > (MAX_WALKED if _prune else MAX_INSTANCES):
            raise HypothesisError(
                f"hypothesis {hypothesis.name!r} treeifies into more than {MAX_WALKED if _prune else MAX_INSTANCES} "
                f"instances (at node {node.name!r}); per-position features multiply the tree by the sequence length"
            )
        w = _Walked(node, parent, k, claims, position, examples)
        if reads is not None:
            active = np.asarray(reads.any(axis=1), dtype=bool)
            w.active = active
            if not active.any():
                reads = None
        if not _prune or reads is not None:
            walked.append(w)
            if parent is not None:
                parent.children.append(w)
        if node.children or parent is None or node.open:
            w.random = rng.integers(0, n, size=n)
            used = _used_columns(w, masks, t)
            for k_c, child in enumerate(node.children):
                claims_c = hypothesis.claims(node, child, graph)
                sampler = samplers[id(child)]
                local = all(_reads_by_column(graph, c) for c in claims_c)
                if reads is None:
                    base = None
                elif local:
                    base = reads
                else:
                    base = np.broadcast_to(np.any(reads, axis=1)[:, None], (n, t))
                if sampler.kind == "position":
                    pm = masks.get(id(child))
                    positions = range(t) if pm is None or pm.ndim == 2 else np.flatnonzero(pm)
                    if used is not None and all(_column_local(graph, c) for c in claims_c):
                        # the parent is read only at `used`, and these ports act column by column:
                        # copies of the child at other positions could change nothing that is read
                        positions = [p for p in positions if p in used]
                    for p in positions:
                        ex = sampler.draw(w.examples, rng, int(p))
                        r = None if base is None else base & claimed(child, w, int(p))
                        new(child, w, k_c, claims_c, int(p), ex, r)
                else:
                    ex = sampler.draw(w.examples, rng)
                    r = None if base is None else base & claimed(child, w, None)
                    new(child, w, k_c, claims_c, None, ex, r)
        return w

    root_reads = None
    if track:
        root_reads = np.zeros((n, t), dtype=bool)
        root_reads[rows, tp] = True
    root = new(hypothesis.root, None, -1, [], None, rows, root_reads)
    root.at_score = True
    for w in walked:  # parents before children
        if w.parent is not None:
            w.at_score = w.parent.at_score and all(_reads_by_column(graph, c) for c in w.claims)

    if warn:
        _check_alignment(walked, samplers, masks, by_reference, tp, n, root)

    if not _prune:
        instances = []
        for w in walked:
            w.index = len(instances)
            inst = Instance(w.index, w.node, None if w.parent is None else w.parent.index, w.claims, w.position,
                            w.examples, w.random)
            instances.append(inst)
            if w.parent is not None:
                instances[w.parent.index].children.append(inst.index)
        return Plan(hypothesis, graph, instances, n, t, seed, masks, frozenset(by_reference), len(instances))

    instances: list[Instance] = []

    def emit(group: list[_Walked], parent: Instance | None) -> None:
        first = group[0]
        if len(instances) >= MAX_INSTANCES:
            raise HypothesisError(
                f"hypothesis {hypothesis.name!r} treeifies into more than {MAX_INSTANCES} instances that are read "
                f"(at node {first.node.name!r}); per-position features multiply the tree by the sequence length"
            )
        position, at = first.position, None
        examples, random = first.examples, first.random
        if len(group) > 1:
            owner = np.full(n, -1)
            for g, w in enumerate(group):
                owner[w.active] = g
            examples, random = examples.copy(), None if random is None else random.copy()
            for g, w in enumerate(group[1:], start=1):
                sel = owner == g
                examples[sel] = w.examples[sel]
                if random is not None and w.random is not None:
                    random[sel] = w.random[sel]
            if len({w.position for w in group}) > 1:
                pos = np.array([w.position for w in group])
                at = np.where(owner >= 0, pos[np.maximum(owner, 0)], -1)
                position = None
        inst = Instance(len(instances), first.node, None if parent is None else parent.index, first.claims,
                        position, examples, random, at=at)
        instances.append(inst)
        if parent is not None:
            parent.children.append(inst.index)
        for k in range(len(first.node.children)):
            members = [c for w in group for c in w.children if c.k == k]
            if not members:
                continue
            for sub in _exclusive_groups(members, n):
                emit(sub, inst)

    emit([root], None)
    return Plan(hypothesis, graph, instances, n, t, seed, masks, frozenset(by_reference), count)


def _exclusive_groups(members: list[_Walked], n: int) -> list[list[_Walked]]:
    """Members split into groups read by disjoint references (one group if they all are), in walk order."""
    reads = np.zeros(n, dtype=np.int64)
    for w in members:
        assert w.active is not None
        reads += w.active
    if reads.max() <= 1:
        return [members]
    by_pos: dict[int | None, list[_Walked]] = {}
    for w in members:
        by_pos.setdefault(w.position, []).append(w)
    groups = []
    for p in sorted(by_pos, key=lambda p: -1 if p is None else p):
        g = by_pos[p]
        counts = np.zeros(n, dtype=np.int64)
        for w in g:
            assert w.active is not None
            counts += w.active
        groups.extend([g] if counts.max() <= 1 else [[w] for w in g])
    return groups


def _check_alignment(walked, samplers, masks, by_reference, tp: np.ndarray, n: int, root) -> None:
    """Warn (:class:`scrub.AlignmentWarning`) where varying targets make a feature read at the wrong position."""
    if len(np.unique(tp)) < 2:
        return
    example_bad: dict[int, tuple[Node, np.ndarray]] = {}
    positions_bad: dict[int, tuple[Node, np.ndarray]] = {}
    target_bad: dict[int, tuple[Node, np.ndarray]] = {}
    for w in walked:
        if w.parent is None or w.active is None or not w.active.any():
            continue
        node = w.node
        if samplers[id(node)].kind == "example" and not isinstance(node.agree, AtTarget) and w.at_score:
            bad = w.active & (tp[w.examples] != tp)
            prev = example_bad.setdefault(id(node), (node, np.zeros(n, dtype=bool)))[1]
            prev |= bad
        agree = node.agree
        if isinstance(agree, AtTarget) and agree.inner_kind == "example" and w.parent is not root:
            bad = w.active & (tp[w.parent.examples] != tp)
            prev = target_bad.setdefault(id(node), (node, np.zeros(n, dtype=bool)))[1]
            prev |= bad
        pm = masks.get(id(node))
        if pm is not None and pm.ndim == 2 and id(node) not in by_reference and w.parent is not root:
            bad = w.active & (pm[w.parent.examples] != pm).any(axis=1)
            prev = positions_bad.setdefault(id(node), (node, np.zeros(n, dtype=bool)))[1]
            prev |= bad
    for node, bad in example_bad.values():
        if bad.any():
            alignment.misaligned_example_feature(node.name, node.agree, int(bad.sum()), n)
    for node, bad in target_bad.values():
        if bad.any():
            alignment.misaligned_at_target(node.name, node.agree, int(bad.sum()), n)
    for node, bad in positions_bad.values():
        if bad.any():
            alignment.misaligned_positions(node.name, int(bad.sum()), n)
