"""True (and deliberately false) hypotheses generated from a compiled RASP program.

The program itself is the hypothesis (Chan et al.'s "true hypothesis" for a compiled model):

* **interpretation DAG**: the RASP graph. Each model component that tracr allocated to a
  sequence operation (SOp) is one interpretation node; its children are the components that
  compute the SOps it reads, through the port it reads them (a head's ``q``/``k``/``v``, an
  MLP's ``in``). Primitive SOps are the inputs: ``tokens`` is ``embed``, ``indices`` is ``pos``.
* **features**: the SOp's value at each position, from evaluating the RASP program on the
  example (the dataset's per-SOp columns). A feature is ``[N, T]``, so every node splits into
  one instance per position. Model position 0 (BOS) has the constant value ``"BOS"``.
* **correspondence**: tracr's layer and head allocation (``<name>.spec.json``).

Two details of tracr's allocation shape the DAG:

* A ``SelectorWidth`` SOp is computed by a head (which writes ``1/(w+1)`` to a hidden
  dimension) and the MLP after it (which decodes ``w``). The MLP node carries the SOp and
  has the head as child through ``in``; the head's feature is the same SOp.
* tracr runs several MLPs of one layer in parallel on separate neurons (``m0`` of
  ``shuffle_dyck`` computes ``bools_open``, ``bools_close`` and ``length``). Two
  interpretation nodes cannot claim one treeified path, so such a component is **one**
  node whose feature is the tuple of all its SOps, with the union of their inputs as children.

Paths left unclaimed: the constant ``one`` direction and the BOS token, which every head and
MLP also reads from the embedding. ``one`` is in every token's embedding and BOS is the token
at position 0 of every example, so any example gives them the same value: claiming them
changes nothing (checked by the tests: the true hypotheses recover >= 99% without them).

>>> import scrub
>>> from hypotheses import tracr as zoo
>>> from hypotheses.tracr.hypotheses import true_hypothesis, metric
>>> h = true_hypothesis("reverse")
>>> r = scrub.run(zoo.load_model("reverse"), h, zoo.make_data("reverse", 200), metric=metric("reverse"))
>>> round(r.loss_recovered, 4)
1.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

import scrub

__all__ = [
    "true_hypothesis",
    "neuron_hypothesis",
    "false_hypotheses",
    "metric",
    "squared_error",
    "feature",
    "from_program",
]

Spec = dict[str, Any]
BOS_VALUE = "BOS"


# ----------------------------------------------------------------------------------------
# Features


def feature(labels: Sequence[str]) -> Callable[[scrub.Dataset], np.ndarray]:
    """The per-position feature of one or more SOps: ``[N, T]`` values from the dataset's SOp columns.

    Column ``label`` holds, per example, the SOp's values at RASP positions ``0..L-1``
    (model positions ``1..L``). Position 0 (BOS) gets ``"BOS"``; with several labels the
    value is the tuple of theirs; ``None`` (RASP's "no value") becomes the string ``"None"``.
    """
    labels = tuple(labels)

    def values(data: scrub.Dataset) -> np.ndarray:
        n, t = len(data), data.seq_len
        cols = [_column(data, lab, n, t) for lab in labels]
        out = np.empty((n, t), dtype=object)
        out[:, 0] = BOS_VALUE
        for i in range(n):
            for p in range(1, t):
                vals = tuple(_hashable(c[i][p - 1]) for c in cols)
                out[i, p] = vals[0] if len(vals) == 1 else vals
        return out

    values.__name__ = "+".join(labels)
    return values


def _column(data: scrub.Dataset, label: str, n: int, t: int) -> list[Any]:
    if label == "indices" and label not in data.columns.columns:  # a primitive: no need to store it
        return [tuple(range(t - 1))] * n
    return data.columns[label].tolist()


def _hashable(v: Any) -> Any:
    return "None" if v is None else v


def squared_error(logits: torch.Tensor, data: scrub.Dataset) -> torch.Tensor:
    """The metric of numerical programs: ``(logit - target)^2`` per example.

    tracr unembeds a numerical output SOp as one logit holding its value (the converter
    keeps that), so the loss is the squared distance of that logit from the program's
    output at the target position (column ``target``); the model itself scores ~0.
    """
    target = torch.tensor([float(v) for v in data.columns["target"]], dtype=logits.dtype)
    return (logits[:, 0] - target) ** 2


def metric(name_or_spec: str | Spec) -> str | Callable[[torch.Tensor, scrub.Dataset], torch.Tensor]:
    """The metric to score a program's hypotheses with: ``"loss"`` (categorical) or :func:`squared_error`."""
    spec = _spec(name_or_spec)
    return "loss" if spec["categorical_output"] else squared_error


# ----------------------------------------------------------------------------------------
# The circuit: components, what they compute, and which components they read


@dataclass
class _Circuit:
    """The correspondence, resolved to components.

    ``features[c]``: SOp labels component ``c`` computes (its feature);
    ``reads[c][port]``: the components whose SOps ``c`` reads through ``port``;
    ``output``: the component that writes the output SOp.
    """

    features: dict[str, tuple[str, ...]]
    reads: dict[str, dict[str, tuple[str, ...]]]
    output: str
    output_sop: str
    notes: list[str] = field(default_factory=list)

    def copy(self) -> "_Circuit":
        return replace(
            self,
            features=dict(self.features),
            reads={c: dict(r) for c, r in self.reads.items()},
            notes=list(self.notes),
        )


_PRIMITIVE = {"tokens": "embed", "indices": "pos"}
_UNCLAIMED = {"one", "bos"}


def _source(spec: Spec, sop: str, reader: str) -> str:
    """The component whose output carries ``sop`` into ``reader``'s input."""
    if sop in _PRIMITIVE:
        return _PRIMITIVE[sop]
    by = spec["sops"][sop]["computed_by"]
    if not by:
        raise ValueError(f"SOp {sop!r} is computed by no component")
    if reader in by:  # a SelectorWidth MLP reads the hidden dimension its own head wrote
        return by[by.index(reader) - 1]
    return by[-1]


def _circuit(spec: Spec) -> _Circuit:
    features = {c: tuple(labels) for c, labels in spec["components"].items()}
    features["embed"] = ("tokens",)
    features["pos"] = ("indices",)
    reads: dict[str, dict[str, list[str]]] = {}

    def add(comp: str, port: str, sops: list[str]) -> None:
        here = reads.setdefault(comp, {}).setdefault(port, [])
        for s in sops:
            if s in _UNCLAIMED:
                continue
            src = _source(spec, s, comp)
            if src != comp and src not in here:
                here.append(src)

    for layer in spec["layers"]:
        l = layer["layer"]
        for head in layer["attn"]:
            comp = f"a{l}.{head['head']}"
            for port in ("q", "k", "v"):
                add(comp, port, head[f"reads_{port}"]["sops"])
        for part in layer["mlp"]:
            add(f"m{l}", "in", part["reads"]["sops"])
    out_sop = spec["output_sop"]
    return _Circuit(
        features=features,
        reads={c: {p: tuple(s) for p, s in r.items() if s} for c, r in reads.items()},
        output=_source(spec, out_sop, "out"),
        output_sop=out_sop,
    )


def _build(circuit: _Circuit, name: str, position: int | str | Callable | None, length: int) -> scrub.Hypothesis:
    h = scrub.Hypothesis(name)
    nodes: dict[tuple[str, str], scrub.Node] = {}
    body = list(range(1, length + 1))  # every position but BOS

    def node_name(comp: str, port: str) -> str:
        return f"{comp} {'+'.join(circuit.features[comp])} ({port})"

    def attach(parent: scrub.Node, comp: str, port: str, positions=None) -> None:
        key = (comp, port)
        if key in nodes and positions is None:
            parent.add(nodes[key])
            return
        node = parent.add(node_name(comp, port), model=comp, port=port,
                          positions=body if positions is None else positions, agree=feature(circuit.features[comp]))
        if positions is None:
            nodes[key] = node
        for p, sources in circuit.reads.get(comp, {}).items():
            for src in sources:
                attach(node, src, p)

    if position is None:
        positions: Any = [length]
    elif position == "target":
        positions = lambda d: d.target_pos  # noqa: E731
    elif isinstance(position, int):
        positions = [int(position)]
    else:
        positions = position
    attach(h.output(), circuit.output, "in", positions)
    return h


def _spec(name_or_spec: str | Spec) -> Spec:
    if isinstance(name_or_spec, str):
        from hypotheses.tracr import load_spec

        return load_spec(name_or_spec)
    return name_or_spec


def true_hypothesis(
    name_or_spec: str | Spec,
    *,
    length: int | None = None,
    position: int | str | Callable | None = None,
    name: str | None = None,
) -> scrub.Hypothesis:
    """The program's true hypothesis: its RASP graph mapped onto tracr's allocation.

    Args:
        name_or_spec: a zoo program name, or a spec dict (``load_spec`` / :func:`from_program`).
        length: the input length of the data it will be run on (BOS excluded; default
            ``max_seq_len``). Every node claims positions ``1..length`` (not BOS: position 0
            holds the same token in every example, and what heads read there carries nothing
            example-specific).
        position: the model position scored (BOS is 0), as the root's child claims it:
            ``None`` (the default) for the last position, ``length`` (what
            ``make_data(name, n, length=length)`` scores), an int, ``"target"`` for each example's
            ``data.target_pos`` (the tree is then ``T`` times larger: a per-example
            position cannot prune the copies at other positions), or a ``positions=`` function.
        name: the hypothesis's name (default ``"<program>/true"``).

    The data must carry one column per SOp label (``make_data`` does). Score with
    ``scrub.run(model, h, data, metric=metric(name))``.
    """
    spec = _spec(name_or_spec)
    return _build(_circuit(spec), name or f"{spec['name']}/true", position, _length(spec, length))


def neuron_hypothesis(
    name_or_spec: str | Spec,
    *,
    length: int | None = None,
    name: str | None = None,
    via: str = "neurons",
) -> scrub.Hypothesis:
    """The true hypothesis with **one node per SOp**, finer than components: no tuple features.

    Where tracr computes several SOps in one MLP on separate neurons (``m0`` of ``shuffle_dyck``
    computes ``bools_open``, ``bools_close`` and ``length``), each reader claims only the part
    that computes the SOp it reads, with that SOp alone as its feature and that part's inputs as
    its children: with ``via="neurons"`` the part's neurons (``neurons=``), with
    ``via="subspace"`` the residual dimensions the part writes (``subspace=``, the SOp's one-hot
    or numerical directions). Every other component is claimed as in :func:`true_hypothesis`;
    the last position is scored. Each part's neurons read only its own inputs and write only its
    own SOp's dimensions, so both are as exact as the tuple hypothesis.
    """
    if via not in ("neurons", "subspace"):
        raise ValueError(f"via must be 'neurons' or 'subspace', got {via!r}")
    spec = _spec(name_or_spec)
    length = _length(spec, length)
    circuit = _circuit(spec)
    parts: dict[str, list[dict[str, Any]]] = {}  # MLP -> its parts (one per SOp it computes)
    for layer in spec["layers"]:
        if len(layer["mlp"]) > 1:
            parts[f"m{layer['layer']}"] = layer["mlp"]
    h = scrub.Hypothesis(name or f"{spec['name']}/{via}")
    d_model = int(spec["config"]["d_model"])

    def written(part: dict[str, Any]) -> scrub.Subspace:
        basis = torch.zeros(d_model, len(part["writes"]["dims"]), dtype=torch.float64)
        basis[part["writes"]["dims"], range(len(part["writes"]["dims"]))] = 1.0
        return scrub.Subspace(basis, name=f"{part['sop']} dims")

    body = list(range(1, length + 1))
    made: dict[tuple[str, str | None, str], scrub.Node] = {}

    def sources(reader: str, sops: list[str]) -> list[tuple[str, str | None]]:
        """The components carrying ``sops`` into ``reader``, each with the SOp where it is a multi-part MLP."""
        out: list[tuple[str, str | None]] = []
        for sop in sops:
            if sop in _UNCLAIMED:
                continue
            src = _source(spec, sop, reader)
            item = (src, sop if src in parts else None)
            if src != reader and item not in out:
                out.append(item)
        return out

    def reads(comp: str, part: dict[str, Any] | None) -> dict[str, list[tuple[str, str | None]]]:
        """What ``comp`` (or one part of it) reads, per port."""
        if part is not None:
            return {"in": sources(comp, part["reads"]["sops"])}
        ports = ("q", "k", "v") if comp.startswith("a") else ("in",)
        return {p: sources(comp, _port_sops(spec, comp, p)) for p in ports}

    def attach(parent: scrub.Node, src: str, sop: str | None, port: str, positions=None) -> None:
        part = None if sop is None else next(pt for pt in parts[src] if pt["sop"] == sop)
        key = (src, sop, port)
        if key in made and positions is None:
            parent.add(made[key])
            return
        labels = circuit.features[src] if part is None else (sop,)
        node = parent.add(
            f"{src}{'' if part is None else '[' + str(sop) + ']'} {'+'.join(labels)} ({port})", model=src, port=port,
            positions=body if positions is None else positions, agree=feature(labels),
            neurons=None if part is None or via != "neurons" else list(part["neurons"]),
            subspace=None if part is None or via != "subspace" else written(part),
        )
        if positions is None:
            made[key] = node
        for p, srcs in reads(src, part).items():
            for child, child_sop in srcs:
                attach(node, child, child_sop, p)

    out_src = circuit.output
    attach(h.output(), out_src, spec["output_sop"] if out_src in parts else None, "in", [length])
    return h


def _port_sops(spec: Spec, comp: str, port: str) -> list[str]:
    """The SOps component ``comp`` reads through ``port`` (tracr's allocation), minus the unclaimed ones."""
    for layer in spec["layers"]:
        for head in layer["attn"]:
            if comp == f"a{layer['layer']}.{head['head']}":
                return [s for s in head[f"reads_{port}"]["sops"] if s not in _UNCLAIMED]
        if comp == f"m{layer['layer']}" and port == "in":
            return [s for part in layer["mlp"] for s in part["reads"]["sops"] if s not in _UNCLAIMED]
    return []


def _length(spec: Spec, length: int | None) -> int:
    if length is None:
        return int(spec["max_seq_len"])
    if not 1 <= int(length) <= spec["max_seq_len"]:
        raise ValueError(f"{spec['name']}: length {length} outside 1..{spec['max_seq_len']}")
    return int(length)


# ----------------------------------------------------------------------------------------
# False hypotheses: the true circuit with one wrong claim


def _swap_qk(c: _Circuit, head: str) -> _Circuit:
    """Claim that ``head``'s queries read what its keys read, and the reverse."""
    c = c.copy()
    r = dict(c.reads[head])
    r["q"], r["k"] = r.get("k", ()), r.get("q", ())
    c.reads[head] = {p: s for p, s in r.items() if s}
    return c


def _swap_features(c: _Circuit, a: str, b: str) -> _Circuit:
    """Claim that component ``a`` computes what ``b`` computes and the reverse (reads unchanged)."""
    c = c.copy()
    c.features[a], c.features[b] = c.features[b], c.features[a]
    return c


def _relocate(c: _Circuit, comp: str, to: str) -> _Circuit:
    """Claim that ``to`` (an earlier component) computes ``comp``'s SOps: its readers read ``to``."""
    c = c.copy()
    c.features[to] = c.features[comp]
    for reader, ports in c.reads.items():
        for p, srcs in ports.items():
            if comp in srcs:
                ports[p] = tuple(dict.fromkeys(to if s == comp else s for s in srcs))
    if c.output == comp:
        c.output = to
    return c


def _refeature(c: _Circuit, comp: str, labels: Sequence[str]) -> _Circuit:
    """Claim that ``comp`` computes ``labels`` instead (its reads unchanged)."""
    c = c.copy()
    c.features[comp] = tuple(labels)
    return c


def _reread(c: _Circuit, comp: str, port: str, sources: Sequence[str]) -> _Circuit:
    """Claim that ``comp`` reads ``sources`` through ``port`` instead."""
    c = c.copy()
    c.reads[comp] = dict(c.reads[comp])
    c.reads[comp][port] = tuple(sources)
    return c


def _reread_all(c: _Circuit, comps: Sequence[str], port: str, sources: Sequence[str]) -> _Circuit:
    for comp in comps:
        c = _reread(c, comp, port, sources)
    return c


# Per program: name -> (one-line claim, transform of the true circuit).
_FALSE: dict[str, dict[str, tuple[str, Callable[[_Circuit], _Circuit]]]] = {
    "reverse": {
        "reverse_at_m2": ("the reversed token is computed by m2 (the last head a3.0 ignored)",
                          lambda c: _relocate(c, "a3.0", "m2")),
        "values_are_indices": ("the reversing head's values read positions, not tokens",
                               lambda c: _reread(c, "a3.0", "v", ["pos"])),
    },
    "sort": {
        "qk_swapped": ("the sorting head's queries read target_pos and its keys indices",
                       lambda c: _swap_qk(c, "a1.0")),
        "target_pos_at_a0": ("the rank is computed by the head a0.0 alone (its MLP m0 ignored)",
                             lambda c: _relocate(c, "m0", "a0.0")),
    },
    "hist": {
        "keys_are_indices": ("the counting head's keys read positions, not tokens",
                             lambda c: _reread(c, "a0.0", "k", ["pos"])),
        "hist_is_tokens": ("the MLP computes the token, not its count",
                           lambda c: _refeature(c, "m0", ["tokens"])),
    },
    "frac_prevs": {
        "values_are_tokens": ("the averaging head's values read the tokens directly (m0 ignored)",
                              lambda c: _reread(c, "a1.0", "v", ["embed"])),
        "map_is_indices": ("m0 computes the position, not whether the token is 'x'",
                           lambda c: _refeature(c, "m0", ["indices"])),
    },
    "pair_balance": {
        "balance_at_m0": ("the balance is computed by m0 (layer 1 ignored)",
                          lambda c: _relocate(c, "m1", "m0")),
        "values_are_tokens": ("both averaging heads read the tokens directly (m0 ignored)",
                              lambda c: _reread_all(c, ["a1.0", "a1.1"], "v", ["embed"])),
    },
    "shuffle_dyck": {
        "heads_swapped": ("a4.0 computes has_neg and a4.1 last_zero (the reverse of tracr's allocation)",
                          lambda c: _swap_features(c, "a4.0", "a4.1")),
        "balance_at_m1": ("the balance is computed by m1 (m2 ignored)",
                          lambda c: _relocate(c, "m2", "m1")),
    },
    "shuffle_dyck2": {
        "heads_swapped": ("a1.0 computes closes of () and a1.1 opens (the reverse of tracr's allocation)",
                          lambda c: _swap_features(c, "a1.0", "a1.1")),
        "balance_at_m1": ("both balances are computed by m1 (m2 ignored)",
                          lambda c: _relocate(c, "m2", "m1")),
        "values_are_tokens": ("the four averaging heads read the tokens directly (m0 ignored)",
                              lambda c: _reread_all(c, ["a1.0", "a1.1", "a1.2", "a1.3"], "v", ["embed"])),
    },
}


def false_hypotheses(
    name: str, *, length: int | None = None, position: int | str | Callable | None = None
) -> dict[str, scrub.Hypothesis]:
    """Deliberately false hypotheses of zoo program ``name``: the true one with one wrong claim.

    Keys name the wrong claim (e.g. ``"qk_swapped"``); each hypothesis's name is
    ``"<name>/false/<key>: <claim>"``. ``length`` and ``position`` as in :func:`true_hypothesis`.
    """
    if name not in _FALSE:
        raise KeyError(f"no false hypotheses for {name!r}; known: {sorted(_FALSE)}")
    spec = _spec(name)
    base = _circuit(spec)
    return {
        key: _build(fn(base), f"{name}/false/{key}: {claim}", position, _length(spec, length))
        for key, (claim, fn) in _FALSE[name].items()
    }


# ----------------------------------------------------------------------------------------
# One call for a user's own RASP program


def from_program(
    program: Any,
    vocab: Sequence[Any],
    max_seq_len: int,
    *,
    causal: bool = False,
    name: str = "program",
) -> tuple[Any, scrub.Hypothesis, Callable[..., scrub.Dataset]]:
    """Compile a RASP program with tracr and return ``(model, true hypothesis, data_fn)``.

    Needs the ``tracr`` extra (jax, dm-haiku, tracr). The model is a ``TransformerBridge``
    converted from tracr's (as the zoo's are); the hypothesis is :func:`true_hypothesis` of
    its allocation (the spec is ``hypothesis.spec``); ``data_fn(n, seed=0, *, length=None)``
    draws ``n`` inputs of i.i.d. tokens from ``vocab`` (``length`` defaults to ``max_seq_len``,
    the length the hypothesis is built for) and returns a ``scrub.Dataset`` scored at the last
    position, with one column per SOp (tracr's RASP evaluator on each input), ``target``
    and, for categorical outputs, ``labels``. Score with
    ``scrub.run(model, hypothesis, data_fn(n), metric=metric(hypothesis.spec))``.

    >>> from tracr.rasp import rasp                                        # doctest: +SKIP
    >>> prog = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ),
    ...                                      rasp.numerical(rasp.Map(lambda t: 1 if t == "a" else 0, rasp.tokens)),
    ...                                      default=0))                  # doctest: +SKIP
    >>> model, h, data_fn = from_program(prog, {"a", "b"}, 5)            # doctest: +SKIP
    """
    from scrub._checkpoint import model_config

    from hypotheses.tracr.compile import compile_rasp, program_spec
    from hypotheses.tracr.convert import tracr_to_bridge

    vocab = sorted(set(vocab), key=lambda v: (type(v).__name__, v))
    compiled = compile_rasp(program, vocab, max_seq_len, causal=causal, name=name)
    model = tracr_to_bridge(compiled.assembled, compiled.program.label)
    spec = program_spec(
        compiled, model_config(model), description=f"user program {name}", source=repr(program),
        vocab=vocab, max_seq_len=max_seq_len, causal=causal,
    )
    hypothesis = true_hypothesis(spec)
    hypothesis.spec = spec  # type: ignore[attr-defined]
    sops = _sops_of(compiled.graph)

    def data_fn(n: int, seed: int = 0, *, length: int | None = None) -> scrub.Dataset:
        return _program_data(spec, sops, n, seed, _length(spec, length))

    return model, hypothesis, data_fn


def _sops_of(graph: Any) -> dict[str, Any]:
    """The SOps of tracr's compiler graph, by label."""
    from tracr.compiler import nodes
    from tracr.rasp import rasp

    return {
        label: data[nodes.EXPR]
        for label, data in graph.nodes(data=True)
        if isinstance(data.get(nodes.EXPR), rasp.SOp)
    }


def _program_data(spec: Spec, sops: dict[str, Any], n: int, seed: int, length: int) -> scrub.Dataset:
    import pandas as pd
    from tracr.rasp import rasp

    if n < 1:
        raise ValueError(f"data_fn: n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    vocab = spec["vocab"]
    inputs = [tuple(vocab[i] for i in rng.integers(len(vocab), size=length)) for _ in range(n)]
    ids = {v: i for i, v in enumerate(spec["tokens"])}
    tokens = torch.tensor([[spec["bos_id"]] + [ids[t] for t in x] for x in inputs], dtype=torch.long)
    cols: dict[str, list[Any]] = {"input": inputs, "length": [length] * n}
    for label, expr in sops.items():
        cols[label] = [tuple(rasp.evaluate(expr, list(x))) for x in inputs]
    out = spec["output_sop"]
    cols["target"] = [v[-1] for v in cols[out]]
    cols["target_index"] = [length - 1] * n
    labels = None
    if spec["categorical_output"]:
        index = {v: i for i, v in enumerate(spec["output_values"])}
        labels = torch.tensor([index[t] for t in cols["target"]], dtype=torch.long)
    return scrub.Dataset(
        tokens, labels, columns=pd.DataFrame(cols), target_pos=torch.full((n,), length, dtype=torch.long)
    )
