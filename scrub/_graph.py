"""The residual-stream graph of a TransformerLens model, as a networkx DiGraph.

Nodes are components: ``embed``, ``pos`` (absolute positions only), one ``a{L}.{H}`` per
attention head (or one ``a{L}`` per attention layer on post-norm models), ``m{L}`` per MLP, and
``out``. Each component that reads the residual stream has input ports,
themselves graph nodes: ``a{L}.{H}.q|k|v``, ``m{L}.in`` and ``out.in``. Every component
feeds every port of every later component (the residual stream is the sum of all
earlier outputs); edges go ``component -> port -> component``.

**Residual sites.** Besides components, a hypothesis can name the residual stream at a layer
boundary: ``r{L}`` is the residual before layer ``L`` (``r0`` right after the embeddings,
``r{n_layers}`` the final residual before ``ln_final``). A site is not a term of the residual sum
(it *is* the sum of every component below the boundary, plus those layers' attention output
biases), so it is not a node of the networkx graph: :meth:`ModelGraph.is_site`,
:meth:`ModelGraph.feeds`, :meth:`ModelGraph.ports` and :meth:`ModelGraph.covers` answer for it.
A site feeds every port of every component at or above its boundary (and of later sites), and has
one input port ``in``, fed by every component below the boundary (and earlier sites).
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field

import networkx as nx

from scrub.errors import GraphError

__all__ = ["ModelGraph", "GraphError"]

INPUTS = ("embed", "pos")
ATTN_PORTS = ("q", "k", "v")

_HEAD = re.compile(r"^a(\d+)\.(\d+)$")
_MLP = re.compile(r"^m(\d+)$")
_SITE = re.compile(r"^r(\d+)$")


@dataclass(frozen=True)
class ModelGraph:
    """The components of a transformer and which ports they feed.

    Build it with :meth:`from_model`; ``graph`` is the networkx DiGraph (component and
    port nodes carry a ``kind`` attribute: ``input``, ``attn``, ``mlp``, ``output`` or
    ``port``).
    """

    n_layers: int
    n_heads: int
    attn_only: bool
    graph: nx.DiGraph = field(repr=False, compare=False)
    inputs: tuple[str, ...] = INPUTS
    parallel: bool = False
    #: Attention nodes are whole layers ``a{L}`` (post-norm models, where a head's contribution is undefined).
    whole_layers: bool = False
    #: The MLPs' hidden width (number of neurons), where known (None for a graph built without a model).
    d_mlp: int | None = None

    @classmethod
    def from_model(cls, model) -> ModelGraph:
        """The graph of a TransformerLens model (a ``TransformerBridge``, native or from :func:`scrub.from_hf`).

        Raises :class:`~scrub.UnsupportedModelError` for architectures scrub does not model exactly.
        """
        from scrub._architecture import Architecture

        arch = Architecture.of(model)
        return cls.build(
            arch.n_layers, arch.n_heads, arch.attn_only, inputs=arch.inputs, parallel=arch.parallel,
            whole_layers=arch.post_norms, d_mlp=arch.d_mlp(model),
        )

    @classmethod
    def build(
        cls, n_layers: int, n_heads: int, attn_only: bool = False, *, inputs: tuple[str, ...] = INPUTS,
        parallel: bool = False, whole_layers: bool = False, d_mlp: int | None = None,
    ) -> ModelGraph:
        """The graph of a model with this shape (no model needed).

        ``inputs`` is ``("embed", "pos")`` for absolute positions, ``("embed",)`` for rotary ones;
        ``parallel`` blocks feed each MLP the residual before its own layer's heads;
        ``whole_layers`` makes one attention node ``a{L}`` per layer instead of one per head.
        """
        g = nx.DiGraph()
        order: list[str] = []

        def link(name: str, ports: tuple[str, ...]) -> None:
            """Add ``name``'s ports, each fed by every component computed so far."""
            for port in ports:
                g.add_node(f"{name}.{port}", kind="port", component=name, port=port)
                g.add_edge(f"{name}.{port}", name)
                for up in order:
                    g.add_edge(up, f"{name}.{port}")

        def add_component(name: str, kind: str, layer: int, stage: int, ports: tuple[str, ...]) -> None:
            g.add_node(name, kind=kind, layer=layer, stage=stage, head=None, ports=ports)
            link(name, ports)
            order.append(name)

        for name in inputs:
            add_component(name, "input", -1, 0, ())
        for layer in range(n_layers):
            heads = [f"a{layer}"] if whole_layers else [f"a{layer}.{h}" for h in range(n_heads)]
            # heads of one layer read the same residual: link them all before adding any to `order`
            for h, name in enumerate(heads):
                g.add_node(name, kind="attn", layer=layer, stage=2 * layer + 1, head=None if whole_layers else h,
                           ports=ATTN_PORTS)
                link(name, ATTN_PORTS)
            if parallel and not attn_only:  # the MLP reads the residual before this layer's heads
                add_component(f"m{layer}", "mlp", layer, 2 * layer + 2, ("in",))
                order.remove(f"m{layer}")
                order.extend(heads)
                order.append(f"m{layer}")
                continue
            order.extend(heads)
            if not attn_only:
                add_component(f"m{layer}", "mlp", layer, 2 * layer + 2, ("in",))
        add_component("out", "output", n_layers, 2 * n_layers + 1, ("in",))
        return cls(
            n_layers=n_layers, n_heads=n_heads, attn_only=attn_only, graph=g, inputs=tuple(inputs), parallel=parallel,
            whole_layers=whole_layers, d_mlp=d_mlp,
        )

    # -- queries -----------------------------------------------------------------------
    @property
    def components(self) -> list[str]:
        """Every component, in the order the forward pass computes them."""
        comps = [n for n, d in self.graph.nodes(data=True) if d["kind"] != "port"]
        return sorted(comps, key=lambda n: (self.graph.nodes[n]["stage"], self.graph.nodes[n]["head"] or 0))

    def kind(self, node: str) -> str:
        """``input``, ``attn``, ``mlp``, ``output``, ``port`` or ``site``."""
        return "site" if self.is_site(node) else self.graph.nodes[node]["kind"]

    def stage(self, node: str) -> int:
        """Position in the forward pass: 0 inputs, 2L+1 layer L's heads, 2L+2 its MLP, 2n+1 the output.

        A site ``r{L}`` is read where layer ``L`` starts (its residual input), so it shares layer
        ``L``'s heads' stage ``2L+1`` (``r{n}``: the output's, ``2n+1``).
        """
        if self.is_site(node):
            return 2 * self.site_layer(node) + 1
        return self.graph.nodes[node]["stage"]

    def layer(self, node: str) -> int:
        """The layer of a component (-1 for inputs, ``n_layers`` for the output); a site's boundary."""
        if self.is_site(node):
            return self.site_layer(node)
        return self.graph.nodes[node]["layer"]

    # -- residual sites ----------------------------------------------------------------
    def is_site(self, node: str) -> bool:
        """Whether ``node`` names a residual site ``r{L}`` of this model (``0 <= L <= n_layers``)."""
        m = _SITE.match(node) if isinstance(node, str) else None
        return bool(m) and m.group(1) == str(int(m.group(1))) and int(m.group(1)) <= self.n_layers

    def site_layer(self, site: str) -> int:
        """The boundary ``L`` of site ``r{L}``."""
        return int(site[1:])

    @property
    def sites(self) -> list[str]:
        """Every residual site, ``r0`` to ``r{n_layers}``."""
        return [f"r{layer}" for layer in range(self.n_layers + 1)]

    def below(self, site: str) -> list[str]:
        """The components whose outputs make up site ``r{L}``: the inputs and everything in layers ``< L``."""
        return list(self._below[self.site_layer(site)])

    @functools.cached_property
    def _below(self) -> dict[int, tuple[str, ...]]:
        comps = [c for c in self.components if self.kind(c) != "output"]
        return {layer: tuple(c for c in comps if self.layer(c) < layer) for layer in range(self.n_layers + 1)}

    def covers(self, up: str) -> frozenset[str]:
        """The components a claim on ``up`` stands for: ``up`` itself, or all of a site's :meth:`below`."""
        return frozenset(self._below[self.site_layer(up)]) if self.is_site(up) else frozenset([up])

    def head(self, node: str) -> int | None:
        return self.graph.nodes[node]["head"]

    def heads_of(self, node: str) -> list[int]:
        """The query heads an attention node computes: one, or all of its layer's for a whole-layer node."""
        h = self.head(node)
        return list(range(self.n_heads)) if h is None else [h]

    def attention_nodes(self, layer: int) -> list[str]:
        """Layer ``layer``'s attention nodes, in head order."""
        return [f"a{layer}"] if self.whole_layers else [f"a{layer}.{h}" for h in range(self.n_heads)]

    def ports(self, node: str) -> tuple[str, ...]:
        """A component's input ports (a site has one, ``in``)."""
        return ("in",) if self.is_site(node) else self.graph.nodes[node]["ports"]

    def upstream(self, node: str, port: str) -> list[str]:
        """The components that feed ``node``'s input ``port`` (sites excluded: they are no terms of the sum)."""
        if self.is_site(node):
            return self.below(node) if port == "in" else []
        if port not in self.ports(node):
            return []
        return list(self.graph.predecessors(f"{node}.{port}"))

    def feeds(self, up: str, node: str, port: str) -> bool:
        """Whether ``up`` (a component or a site) feeds ``node``'s input ``port``.

        A site ``r{L}`` feeds a port when every component below ``L`` does (and it is not the
        port's own site): the heads of layers ``>= L``, the MLPs reading them, the output, later sites.
        """
        if port not in self.ports(node):
            return False
        if self.is_site(up):
            if self.is_site(node):
                return self.site_layer(up) < self.site_layer(node)
            below = self._below[self.site_layer(up)]
            return self.kind(node) != "input" and all(self.feeds(c, node, port) for c in below)
        if self.is_site(node):
            return up in self.below(node)
        return self.graph.has_edge(up, f"{node}.{port}")

    def check_component(self, name: str, where: str = "") -> None:
        """Raise :class:`GraphError` naming ``name`` and the valid choices if it is not a component or a site."""
        if self.is_site(name) or (name in self.graph and self.kind(name) != "port"):
            return
        prefix = f"{where}: " if where else ""
        m = _SITE.match(name)
        if m:
            raise GraphError(
                f"{prefix}unknown residual site {name!r}: the model has sites r0 (after the embeddings) to "
                f"r{self.n_layers} (the final residual), without leading zeros"
            )
        if name == "pos" and "pos" not in self.inputs:
            raise GraphError(
                f"{prefix}the model has no 'pos' node: its positions are rotary, applied inside each head's query "
                "and key rotation, not added to the residual. Claim 'embed' (and the heads' q/k ports) instead"
            )
        m = _HEAD.match(name)
        if m and self.whole_layers:
            raise GraphError(
                f"{prefix}{name!r} names one head, but this model normalises each attention layer's output as a whole "
                "(a post-attention norm), so a single head's contribution to the residual is not defined; claim the "
                f"whole layer instead: 'a{int(m.group(1))}'"
            )
        if m and (m.group(1) != str(int(m.group(1))) or m.group(2) != str(int(m.group(2)))):
            canonical = f"a{int(m.group(1))}.{int(m.group(2))}"
            raise GraphError(f"{prefix}unknown model node {name!r} (did you mean {canonical!r}? no leading zeros)")
        if m:
            layer = int(m.group(1))
            if layer >= self.n_layers:
                raise GraphError(f"{prefix}unknown model node {name!r}: the model has layers 0..{self.n_layers - 1}")
            raise GraphError(f"{prefix}unknown model node {name!r}: layer {layer} has heads 0..{self.n_heads - 1}")
        m = _MLP.match(name)
        if m and self.attn_only:
            raise GraphError(f"{prefix}unknown model node {name!r}: the model is attention-only (no MLPs)")
        if m:
            raise GraphError(f"{prefix}unknown model node {name!r}: the model has layers 0..{self.n_layers - 1}")
        if name in self.graph:  # a port
            raise GraphError(f"{prefix}{name!r} is a port, not a model node; name the node and pass port=")
        close = difflib.get_close_matches(name, self.components, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise GraphError(
            f"{prefix}unknown model node {name!r}{hint}; valid nodes are {', '.join(self.inputs)}, "
            f"{'a<layer>' if self.whole_layers else 'a<layer>.<head>'}, "
            f"{'' if self.attn_only else 'm<layer>, '}out for {self.n_layers} layers x {self.n_heads} heads"
        )
