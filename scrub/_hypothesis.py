"""Circuit hypotheses: an interpretation DAG whose nodes are features, mapped onto model nodes.

>>> h = Hypothesis("induction")
>>> out = h.output()
>>> ind = out.add("induction", model=["a1.1", "a1.3"], agree="label")
>>> ind.add("current token", model="embed", port="q", agree=lambda d: d.tokens[:, -1])  # doctest: +ELLIPSIS
Node('current token' -> embed.q, agree=...)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import torch

from scrub._ablation import Mean, Zero
from scrub._dataset import _scalar_int
from scrub._graph import INPUTS, ModelGraph
from scrub._sampling import Exact, Feature, Random
from scrub._subspace import Subspace
from scrub.errors import HypothesisError

__all__ = ["Hypothesis", "Node", "HypothesisError", "Claim", "conflicting_claims"]

Positions = Sequence[int] | Callable[[Any], Any] | None
_MLP_NAME = re.compile(r"^m\d+$")
_SITE_NAME = re.compile(r"^r\d+$")



@dataclass(frozen=True)
class Claim:
    """One treeified edge a child claims: model node ``up`` feeding ``port`` of the parent's ``node``."""

    node: str
    port: str
    up: str


class Node:
    """An interpretation node: a feature, and the model nodes (ports, positions) said to compute it.

    Create nodes with :meth:`Hypothesis.output` and :meth:`add`, not directly.
    """

    def __init__(self, hypothesis: Hypothesis, name: str, model: Sequence[str], port, positions, agree) -> None:
        self.hypothesis = hypothesis
        self.name = name
        self.model: tuple[str, ...] = tuple(model)
        self.port: tuple[str, ...] | None = None if port is None else ((port,) if isinstance(port, str) else tuple(port))
        self.positions = positions
        self.agree: Feature | Mean | Zero = agree
        #: Only the projection of the model nodes' outputs onto this subspace is claimed (None: all of it).
        self.subspace: Subspace | None = None
        #: Only these neurons of the (single) MLP in ``model`` are claimed (None: the whole MLP).
        self.neurons: tuple[int, ...] | None = None
        self.children: list[Node] = []
        #: A childless node that is *not* a leaf: its model nodes take every input from the random
        #: context (what is left of a node when :meth:`Hypothesis.without` removes all its children).
        self.open: bool = False

    def add(
        self,
        name: str | Node,
        model: str | Sequence[str] | None = None,
        *,
        port: str | Sequence[str] | None = None,
        positions: Positions = None,
        agree: Feature | Mean | Zero = Exact(),
        subspace: Subspace | None = None,
        neurons: Sequence[int] | None = None,
    ) -> Node:
        """Claim that ``model`` (one or more graph nodes) computes feature ``agree`` and feeds this node.

        Args:
            name: the interpretation node's name (unique in the hypothesis), or an existing
                :class:`Node` to attach again (the DAG is treeified: each place gets its own samples).
            model: graph node(s), e.g. ``"a0.0"``, ``["a1.1", "a1.3"]``, ``"embed"``, ``"m0"``, or one
                residual site ``"r{L}"``: the residual stream before layer ``L`` (``"r0"`` after the
                embeddings, ``"r{n_layers}"`` the final residual). A site stands for everything below
                its boundary: claiming it replaces all of those components' direct edges into the
                parent's port, and its own children are components (or sites) below the boundary.
            port: restrict the claimed path to this input port of the parent (``"q"``, ``"k"``,
                ``"v"`` for heads, ``"in"`` for MLPs and the output). Default: all ports.
            positions: restrict the claim to these sequence positions: a non-empty list of ints
                (negative ones count from the end; floats, strings, bools and boolean arrays are
                refused), or a function of the data returning one position (``[N]``) or a mask
                (``[N, T]``) per example, read on the parent's example.
            agree: the feature: a function of the data returning ``[N]`` hashable values (or
                ``[N, T]``, one per position: the node then splits into one instance per
                position), a column name, :class:`~scrub.Exact` (default) or :class:`~scrub.Random`;
                or :class:`~scrub.Mean` / :class:`~scrub.Zero`: the node's output is claimed to matter
                only as its mean over the dataset (per position) or as zero, a fixed value instead of a
                sampled one (**not causal scrubbing**; such a node has no children).
            subspace: claim only the projection of the model nodes' outputs onto this
                :class:`~scrub.Subspace` of the residual stream; the orthogonal complement comes
                from the parent's random context, as if unclaimed.
            neurons: claim only these neurons (indices into ``d_mlp``) of the one MLP ``model``
                names: the parent receives ``x_ctx + sum_{i in neurons} (act_i - act_i^ctx) W_out[i]``,
                the other neurons and the output bias coming from its random context. The node's
                children still patch the MLP's input as usual.

        Returns:
            The new child node (add its own children to it).

        Raises:
            HypothesisError: a malformed argument (naming the node), a duplicate name, or
                ``port=``/``positions=``/``agree=``/``model=`` given when attaching an existing node.
        """
        if isinstance(name, Node):
            given = [k for k, v in (("model", model), ("port", port), ("positions", positions), ("subspace", subspace),
                                    ("neurons", neurons)) if v is not None]
            if not (isinstance(agree, Exact) and type(agree) is Exact):
                given.append("agree")
            if given:
                raise HypothesisError(
                    f"node {name.name!r}: attaching an existing node takes no {'=, '.join(given)}= (it keeps the "
                    "model, port, positions and feature it was created with); add a new node to claim something else"
                )
            if name.hypothesis is not self.hypothesis:
                raise HypothesisError(f"node {name.name!r} belongs to another hypothesis")
            self.children.append(name)
            return name
        if not isinstance(name, str) or not name:
            raise HypothesisError(f"a node name must be a non-empty string, got {name!r}")
        if model is None:
            raise HypothesisError(f"node {name!r}: model= is required (the graph node(s) it maps to)")
        models = _strings(model, name, "model", "graph node(s) such as 'a0.1', ['a1.0', 'a1.1'], 'embed' or 'm0'")
        if not models:
            raise HypothesisError(f"node {name!r}: model= names no graph node")
        if port is not None:
            ports = _strings(port, name, "port", "a port name ('q', 'k', 'v', 'in') or a list of them")
            if not ports:
                raise HypothesisError(f"node {name!r}: port= names no port; leave it out to claim every port")
        positions = _static_positions(positions, name)
        if agree is Mean:
            agree = Mean()
        elif agree is Zero:
            agree = Zero()
        _check_feature(agree, name)
        if name in self.hypothesis._names:
            raise HypothesisError(f"node {name!r}: the hypothesis already has a node of that name")
        if subspace is not None and not isinstance(subspace, Subspace):
            raise HypothesisError(
                f"node {name!r}: subspace= must be a scrub.Subspace (e.g. scrub.Subspace.span(vectors)), "
                f"got {type(subspace).__name__}"
            )
        neuron_set = None if neurons is None else _neurons(neurons, models, name)
        child = Node(self.hypothesis, name, models, port, positions, agree)
        child.subspace = subspace
        child.neurons = neuron_set
        self.hypothesis._names[name] = child
        self.children.append(child)
        return child

    def describe_model(self) -> str:
        """What the node claims, in words: its model nodes, a neuron set (and its size), a residual
        site (which boundary) and a subspace (its dimension), e.g. ``m1 neurons [3, 7, 9] (3 of the MLP)``."""
        parts = []
        for m in self.model:
            if _SITE_NAME.match(m):
                layer = int(m[1:])
                parts.append(f"{m} (residual before layer {layer})" if layer else f"{m} (residual after the embeddings)")
            else:
                parts.append(m)
        text = ", ".join(parts)
        if self.neurons is not None:
            text += f" neurons {_short(self.neurons)} ({len(self.neurons)} neuron{'s' if len(self.neurons) > 1 else ''})"
        if self.subspace is not None:
            label = f" {self.subspace.name!r}" if self.subspace.name else ""
            text += f", subspace{label} (k={self.subspace.dim} of {self.subspace.d_model})"
        return text

    def __repr__(self) -> str:
        port = "" if self.port is None else "." + "|".join(self.port)
        pos = "" if self.positions is None else f", positions={self.positions if not callable(self.positions) else 'fn'}"
        pos += ", open" if self.open else ""
        pos += "" if self.subspace is None else f", subspace={self.subspace!r}"
        pos += "" if self.neurons is None else f", neurons={_short(self.neurons)}"
        agree = (self.agree if isinstance(self.agree, (Exact, Random, str, Mean, Zero))
                 else getattr(self.agree, "__name__", "fn"))
        return f"Node({self.name!r} -> {','.join(self.model)}{port}{pos}, agree={agree})"


class Hypothesis:
    """A circuit hypothesis: ``h.output()`` is the root; grow the tree with ``node.add(...)``."""

    def __init__(self, name: str = "hypothesis") -> None:
        if not isinstance(name, str) or not name:
            raise HypothesisError(f"a hypothesis name must be a non-empty string, got {name!r}")
        self.name = name
        self._names: dict[str, Node] = {}
        self._root: Node | None = None

    def output(self) -> Node:
        """The root: the model's output, run on the reference example and scored against its label."""
        if self._root is None:
            self._root = Node(self, "output", ["out"], None, None, Exact())
            self._names["output"] = self._root
        return self._root

    @property
    def root(self) -> Node:
        if self._root is None:
            raise HypothesisError(f"hypothesis {self.name!r} has no output node: call h.output() first")
        return self._root

    def nodes(self) -> list[Node]:
        """The interpretation nodes, each once, parents before children."""
        return [self._by_id[i] for i in nx.topological_sort(self.to_networkx())]

    def to_networkx(self) -> nx.DiGraph:
        """The interpretation DAG: an edge parent -> child for each ``add``; node attribute ``node``."""
        g = nx.DiGraph()
        self._by_id: dict[int, Node] = {}
        stack = [self.root]
        while stack:
            n = stack.pop()
            if id(n) in self._by_id:
                continue
            self._by_id[id(n)] = n
            g.add_node(id(n), node=n, name=n.name)
            for c in n.children:
                g.add_edge(id(n), id(c))
                stack.append(c)
        return g

    # -- validation --------------------------------------------------------------------
    def claims(self, parent: Node, child: Node, graph: ModelGraph) -> list[Claim]:
        """The treeified edges ``child`` claims into ``parent`` (validated against ``graph``)."""
        ports_here = {p for n in parent.model for p in graph.ports(n)}
        if child.port is not None:
            for port in child.port:
                if port not in ports_here:
                    raise HypothesisError(
                        f"node {child.name!r}: port {port!r} is not an input port of its parent {parent.name!r} "
                        f"({', '.join(parent.model)}); valid ports there: {sorted(ports_here)}"
                    )
        out: list[Claim] = []
        for up in child.model:
            mine = [
                Claim(n, port, up)
                for n in parent.model
                for port in graph.ports(n)
                if (child.port is None or port in child.port) and graph.feeds(up, n, port)
            ]
            if not mine:
                via = "" if child.port is None else f" through port {'|'.join(child.port)}"
                raise HypothesisError(
                    f"node {child.name!r}: model node {up!r} does not feed parent {parent.name!r} "
                    f"({', '.join(parent.model)}){via}; a child must map to nodes upstream of its parent's"
                )
            out.extend(mine)
        return out

    def validate(self, graph: ModelGraph) -> None:
        """Check the hypothesis against ``graph``; raise :class:`HypothesisError` naming the node."""
        root = self.root
        g = self.to_networkx()
        if not nx.is_directed_acyclic_graph(g):
            cycle = nx.find_cycle(g)
            names = " -> ".join(g.nodes[a]["name"] for a, _ in cycle)
            raise HypothesisError(f"hypothesis {self.name!r} has a cycle: {names} -> {g.nodes[cycle[0][0]]['name']}")
        for node in self.nodes():
            for m in node.model:
                graph.check_component(m, where=f"node {node.name!r}")  # a GraphError is a HypothesisError
                if m == "out" and node is not root:
                    raise HypothesisError(
                        f"node {node.name!r}: only the output node (h.output()) maps to 'out'; "
                        "map this node to heads, MLPs or embeddings"
                    )
            sites = [m for m in node.model if graph.is_site(m)]
            if sites and len(node.model) > 1:
                raise HypothesisError(
                    f"node {node.name!r}: a residual site ({sites[0]}) must be its node's only model node, since it "
                    f"already stands for every component below its boundary; add {[m for m in node.model if m != sites[0]]} "
                    "as a separate node"
                )
            if node.neurons is not None:
                _check_neurons(node, graph)
            if node is not root and len(set(node.model)) != len(node.model):
                raise HypothesisError(f"node {node.name!r}: model= names a graph node twice: {list(node.model)}")
            if node.children and isinstance(node.agree, (Mean, Zero)):
                raise HypothesisError(
                    f"node {node.name!r} is claimed as its {node.agree.name} value (agree=scrub.{type(node.agree).__name__}()), "
                    "a fixed value with no inputs, so it cannot have children"
                )
            if node.children and any(m in INPUTS for m in node.model):
                raise HypothesisError(
                    f"node {node.name!r} maps to an input ({', '.join(m for m in node.model if m in INPUTS)}), "
                    "which has no inputs of its own, so it cannot have children"
                )
            if node.positions is not None and not callable(node.positions):
                _static_positions(node.positions, node.name)  # set after add(): checked again
        for node in self.nodes():  # model nodes are all known: now the edges
            claimed = [(child, self.claims(node, child, graph)) for child in node.children]
            for i, (a, ca) in enumerate(claimed):
                for b, cb in claimed[i + 1 :]:
                    clash = conflicting_claims(graph, a, ca, b, cb)
                    if clash is not None and _positions_may_overlap(a.positions, b.positions):
                        raise HypothesisError(_overlap_message(a, b, clash, node))

    # -- sub-hypotheses (claim breakdowns) -----------------------------------------------
    def leaves(self) -> list[str]:
        """The names of the leaf nodes (not the root), in depth-first order: the hypothesis's claims."""
        return [n.name for n in self.nodes() if not n.children and n is not self.root and not n.open]

    def without(self, *names: str, name: str | None = None) -> Hypothesis:
        """A copy with the named nodes (and whatever hangs only below them) removed.

        What they claimed becomes unimportant: a node left with no children keeps its random
        context (``open``) rather than turning into a leaf, which would claim *more*.
        """
        self._check_names(names)
        drop = set(names)
        return self._copy(lambda n: n.name not in drop, name or f"{self.name} without {', '.join(names)}")

    def only(self, *names: str, name: str | None = None) -> Hypothesis:
        """A copy keeping the named nodes, their subtrees and their ancestors, and nothing else."""
        self._check_names(names)
        g = self.to_networkx()
        keep: set[int] = set()
        for nm in names:
            i = id(self._names[nm])
            keep |= {i} | nx.ancestors(g, i) | nx.descendants(g, i)
        return self._copy(lambda n: id(n) in keep, name or f"{self.name}: only {', '.join(names)}")

    def _check_names(self, names) -> None:
        for nm in names:
            if nm not in self._names or nm == "output":
                valid = sorted(k for k in self._names if k != "output")
                raise HypothesisError(f"hypothesis {self.name!r} has no node {nm!r} to select; its nodes: {valid}")

    def _copy(self, keep: Callable[[Node], bool], name: str) -> Hypothesis:
        new = Hypothesis(name)
        made: dict[int, Node] = {}

        def clone(n: Node) -> Node:
            if id(n) in made:
                return made[id(n)]
            c = new.output() if n is self.root else Node(new, n.name, n.model, n.port, n.positions, n.agree)
            c.port, c.open, c.subspace, c.neurons = n.port, n.open, n.subspace, n.neurons
            made[id(n)] = c
            new._names[n.name] = c
            c.children = [clone(k) for k in n.children if keep(k)]
            if n.children and not c.children:
                c.open = True
            return c

        clone(self.root)
        return new

    def describe(self) -> str:
        """The tree as indented text."""
        lines: list[str] = []

        def walk(n: Node, depth: int) -> None:
            lines.append("  " * depth + repr(n))
            for c in n.children:
                walk(c, depth + 1)

        walk(self.root, 0)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Hypothesis({self.name!r}, {len(self._names)} nodes)"


def conflicting_claims(graph: ModelGraph, a: Node, ca: list[Claim], b: Node, cb: list[Claim]):
    """A pair of claims of siblings ``a`` and ``b`` that patch the same thing into the same port, or None.

    Two claims on one port overlap when what they stand for shares a component (a site stands for
    every component below its boundary), unless both claim disjoint neuron sets of one MLP, or
    mutually orthogonal subspaces of one node's output (their claimed parts then add up).
    """
    for x in ca:
        for y in cb:
            if (x.node, x.port) != (y.node, y.port) or not graph.covers(x.up) & graph.covers(y.up):
                continue
            if x.up == y.up and a.neurons is not None and b.neurons is not None and not set(a.neurons) & set(b.neurons):
                continue
            if x.up == y.up and a.subspace is not None and b.subspace is not None and a.subspace.orthogonal_to(b.subspace):
                continue
            return x, y
    return None


def _overlap_message(a: Node, b: Node, clash: tuple[Claim, Claim], parent: Node, when: str = "") -> str:
    x, y = clash
    how = "" if x.up == y.up else f" ({y.up} is part of it: a residual site stands for every component below it)"
    if x.up != y.up and not graph_site(x.up):
        x, y = y, x
        how = f" ({y.up} is part of it: a residual site stands for every component below it)"
    return (
        f"nodes {a.name!r} and {b.name!r} both claim the treeified path {x.up} -> {x.node}.{x.port} under "
        f"{parent.name!r}{when}{how}; give them disjoint ports, positions or neuron sets (or orthogonal subspaces), or merge them "
        "into one node"
    )


def graph_site(name: str) -> bool:
    """Whether ``name`` is spelled like a residual site ``r{L}``."""
    return bool(_SITE_NAME.match(name))


def _short(items: Sequence[int]) -> str:
    items = list(items)
    return str(items) if len(items) <= 6 else f"[{', '.join(map(str, items[:5]))}, ... ({len(items)} neurons)]"


def _neurons(neurons, models: list[str], node: str) -> tuple[int, ...]:
    """``neurons=`` as a sorted tuple of distinct non-negative ints (the range is checked against the model)."""
    if len(models) != 1 or not _MLP_NAME.match(models[0]):
        raise HypothesisError(
            f"node {node!r}: neurons= selects neurons of one MLP, so model= must be a single MLP such as 'm1'; "
            f"got {models} (attention heads, embeddings and residual sites have no neurons)"
        )
    out = _int_list(neurons, node, "neurons", "a list of ints (neuron indices)", "non-negative ints (neuron indices)")
    if not out:
        raise HypothesisError(f"node {node!r}: neurons= is empty, which claims nothing; leave it out to claim the whole MLP")
    if len(set(out)) != len(out):
        dup = sorted({i for i in out if out.count(i) > 1})
        raise HypothesisError(f"node {node!r}: neurons= names neurons {dup} more than once")
    return tuple(sorted(out))


def _check_neurons(node: Node, graph: ModelGraph) -> None:
    assert node.neurons is not None
    if graph.whole_layers:
        raise HypothesisError(
            f"node {node.name!r}: this model normalises each MLP's output as a whole (a post-MLP norm), so a neuron's "
            f"contribution to the residual is not defined; claim the whole MLP {node.model[0]!r} instead"
        )
    if graph.d_mlp is not None and node.neurons[-1] >= graph.d_mlp:
        bad = [i for i in node.neurons if i >= graph.d_mlp]
        raise HypothesisError(
            f"node {node.name!r}: neurons {bad} are out of range: {node.model[0]} has neurons 0..{graph.d_mlp - 1}"
        )


def _strings(value, node: str, arg: str, valid: str) -> list[str]:
    """``value`` (one string or a sequence of them) as a list of non-empty strings, or a HypothesisError."""
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, (Sequence, set, frozenset)):
        items = list(value)
    else:
        raise HypothesisError(f"node {node!r}: {arg}= must be {valid}; got {type(value).__name__} {value!r}")
    bad = [v for v in items if not isinstance(v, str) or not v]
    if bad:
        raise HypothesisError(f"node {node!r}: {arg}= must be {valid}; {bad[0]!r} is not a name")
    return items


def _int_list(value, node: str, arg: str, what: str, holds: str, negative: bool = False, hint: str = "") -> list[int]:
    """``value`` (a sequence, or a 1-d integer array or tensor) as a list of ints, or a HypothesisError
    naming ``node`` and ``arg=``. Floats, strings and bools are refused rather than cast, and so are
    negative ints unless ``negative``."""
    if isinstance(value, (str, bytes, Mapping)) or _scalar_int(value) is not None:
        raise HypothesisError(f"node {node!r}: {arg}= must be {what}, got {type(value).__name__} {value!r}")
    if isinstance(value, (torch.Tensor, np.ndarray)):
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        if arr.ndim != 1 or arr.dtype.kind == "b":
            raise HypothesisError(
                f"node {node!r}: {arg}= must be {what}, got an array of shape {arr.shape} and dtype {arr.dtype}"
            )
        items = list(arr)
    elif isinstance(value, (Sequence, set, frozenset, range)):
        items = list(value)
    else:
        raise HypothesisError(f"node {node!r}: {arg}= must be {what}, got {type(value).__name__}")
    out = []
    for v in items:
        i = _scalar_int(v)
        if i is None or (i < 0 and not negative):
            raise HypothesisError(
                f"node {node!r}: {arg}= must hold {holds}; got {type(v).__name__} {v!r}{hint}"
            )
        out.append(i)
    return out


def _static_positions(positions, node: str):
    """A static ``positions=`` as a tuple of ints (a function is kept as it is; it is checked on the data).

    Only integers are accepted (Python or numpy ints, or a 1-d integer array/tensor): a float, a
    string or a bool would otherwise be cast silently (``1.7`` to ``1``, ``True`` to ``1``). A
    boolean array is refused rather than read as a mask: pass the positions it selects
    (``np.flatnonzero(mask).tolist()``) or a function returning an ``[N, T]`` mask. An empty list
    claims nothing and is refused too.
    """
    if positions is None or callable(positions):
        return positions
    if isinstance(positions, (torch.Tensor, np.ndarray)) and positions.dtype in (torch.bool, np.bool_):
        raise HypothesisError(
            f"node {node!r}: positions= is a boolean array; pass the positions it selects "
            "(np.flatnonzero(mask).tolist()) or a function of the data returning an [N, T] mask"
        )
    out = _int_list(positions, node, "positions", "a list of ints (sequence positions) or a function of the data",
                    "ints only", negative=True, hint=" (floats, strings and bools are not positions)")
    if not out:
        raise HypothesisError(
            f"node {node!r}: positions= is empty, which claims nothing; leave it out to claim every position"
        )
    return out


def _check_feature(agree, node: str) -> None:
    if isinstance(agree, (Mean, Zero)):
        return
    if isinstance(agree, (Exact, Random, str)) or agree is Exact or agree is Random or callable(agree):
        if isinstance(agree, str) and not agree:
            raise HypothesisError(f"node {node!r}: agree='' names no column")
        return
    raise HypothesisError(
        f"node {node!r}: agree= must be a function of the data, a column name, scrub.Exact() or scrub.Random(); "
        f"got {type(agree).__name__} {agree!r}"
    )


def _positions_may_overlap(a: Positions, b: Positions) -> bool:
    """Statically: do two position restrictions share a position? (functions are checked on data later)"""
    if a is None or b is None or callable(a) or callable(b):
        return a is None or b is None
    return bool(set(map(int, a)) & set(map(int, b)))
