"""Convert a tracr-compiled model into a TransformerLens 4 ``TransformerBridge``.

Two pieces, both written here rather than taken from ``transformer_lens.utilities.tracr``
(whose state dict left the MLP weights unloaded on a reverse program):

* :func:`tracr_to_bridge` copies the weights of a tracr ``AssembledTransformerModel``
  into a native bridge built with :func:`scrub.build_model` and loads them with
  ``strict=True``. Nothing here imports jax: the tracr model is read duck-typed
  (``params``, ``model_config``, ``residual_labels``, the encoders), so a model already
  in memory converts without touching tracr's code.
* :func:`describe_allocation` records where tracr put each RASP operation: for every
  layer, which SOp each attention head and each block of MLP neurons computes, and
  the residual dimensions of every SOp. This needs tracr's compiler graph and craft
  model (see ``hypotheses.tracr.compile``).

Mapping of tracr's architecture onto TransformerLens:

* tracr layer ``l`` has ``transformer/layer_l/attn`` then ``transformer/layer_l/mlp``;
  this is TransformerLens block ``l`` (attention then MLP, both reading the residual).
* No layer norm (tracr's compiled models have ``layer_norm=False``).
* tracr divides attention scores by ``sqrt(key_size)``; the bridge is built with
  ``d_head = key_size`` and an explicit ``attn_scale = sqrt(key_size)``.
* Heads, ``d_head`` and ``d_mlp`` are already padded with zeros to the maximum over
  layers by tracr's assembler (TransformerLens needs equal sizes in every layer);
  this is checked, not assumed.
* Token embedding: tracr's ``token_embed`` (tokens one-hot plus the constant ``one``
  direction); positional embedding: ``pos_embed`` (row 0, the BOS position, is zero).
* Unembedding: a 0/1 projection from the residual onto the output SOp's directions,
  in the order of tracr's output encoder (categorical), or onto its single direction
  (numerical, ``d_vocab_out = 1``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "bridge_config",
    "bridge_state_dict",
    "tracr_to_bridge",
    "unembed_matrix",
    "describe_allocation",
    "json_value",
]


def _param(assembled: Any, module: str, name: str) -> np.ndarray:
    try:
        return np.asarray(assembled.params[module][name], dtype=np.float32)
    except KeyError as err:
        raise ValueError(f"tracr model has no parameter {module}/{name}") from err


def _output_values(assembled: Any) -> list[Any] | None:
    """Output values in logit order for a categorical model, ``None`` for a numerical one."""
    encoding = getattr(getattr(assembled, "output_encoder", None), "encoding_map", None)
    if encoding is None:
        return None
    by_index = sorted(encoding.items(), key=lambda kv: kv[1])
    if [i for _, i in by_index] != list(range(len(by_index))):
        raise ValueError(f"tracr output encoding is not 0..n-1: {encoding}")
    return [v for v, _ in by_index]


def bridge_config(assembled: Any, output_label: str) -> dict[str, Any]:
    """The :func:`scrub.build_model` keyword arguments for a tracr model.

    ``output_label`` is the label of the program's output SOp (e.g. ``"reverse_7"``);
    it is only used to size the unembedding.
    """
    mc = assembled.model_config
    if mc.layer_norm:
        raise NotImplementedError("tracr models with layer_norm=True are not supported")
    tok = _param(assembled, "token_embed", "embeddings")
    pos = _param(assembled, "pos_embed", "embeddings")
    values = _output_values(assembled)
    key_size = int(mc.key_size)
    return dict(
        n_layers=int(mc.num_layers),
        d_model=int(tok.shape[1]),
        d_head=key_size,
        n_heads=int(mc.num_heads),
        d_mlp=int(mc.mlp_hidden_size),
        d_vocab=int(tok.shape[0]),
        d_vocab_out=1 if values is None else len(values),
        n_ctx=int(pos.shape[0]),
        act_fn="relu",
        normalization_type=None,
        attention_dir="causal" if mc.causal else "bidirectional",
        positional_embedding_type="standard",
        attn_only=False,
        # tracr divides scores by sqrt(key_size): say so explicitly.
        use_attn_scale=True,
        attn_scale=math.sqrt(key_size),
    )


def unembed_matrix(assembled: Any, output_label: str) -> np.ndarray:
    """``[d_vocab_out, d_model]``: 1 where an output logit reads a residual dimension.

    Categorical: logit ``j`` reads the direction ``f"{output_label}:{value_j}"`` where
    ``value_j`` is the output encoder's ``j``-th value. Numerical: the single logit
    reads the direction ``output_label``.
    """
    labels = list(assembled.residual_labels)
    if len(set(labels)) != len(labels):
        dup = sorted({lab for lab in labels if labels.count(lab) > 1})
        raise ValueError(f"tracr residual labels are ambiguous as strings: {dup}")
    index = {lab: i for i, lab in enumerate(labels)}
    values = _output_values(assembled)
    wanted = [output_label] if values is None else [f"{output_label}:{v}" for v in values]
    missing = [w for w in wanted if w not in index]
    if missing:
        raise ValueError(
            f"output directions {missing} not in the residual stream; "
            f"directions of {output_label!r}: {[lab for lab in labels if lab.split(':')[0] == output_label]}"
        )
    out = np.zeros((len(wanted), len(labels)), dtype=np.float32)
    for j, w in enumerate(wanted):
        out[j, index[w]] = 1.0
    return out


def bridge_state_dict(assembled: Any, output_label: str) -> dict[str, torch.Tensor]:
    """The native bridge's state dict (``embed.weight``, ``blocks.L.attn.q.weight``, ...) for a tracr model."""
    cfg = bridge_config(assembled, output_label)
    n_layers, n_heads, d_head = cfg["n_layers"], cfg["n_heads"], cfg["d_head"]
    d_model, d_mlp = cfg["d_model"], cfg["d_mlp"]
    t = lambda a: torch.tensor(np.asarray(a, dtype=np.float32))  # noqa: E731 (copies)

    state: dict[str, torch.Tensor] = {
        "embed.weight": t(_param(assembled, "token_embed", "embeddings")),
        "pos_embed.weight": t(_param(assembled, "pos_embed", "embeddings")),
    }
    expected_shapes = {
        "query": (d_model, n_heads * d_head),
        "key": (d_model, n_heads * d_head),
        "value": (d_model, n_heads * d_head),
        "linear": (n_heads * d_head, d_model),
        "linear_1": (d_model, d_mlp),
        "linear_2": (d_mlp, d_model),
    }
    for layer in range(n_layers):
        pre = f"transformer/layer_{layer}"
        for tracr_name, tl_name in (("query", "q"), ("key", "k"), ("value", "v"), ("linear", "o")):
            w = _param(assembled, f"{pre}/attn/{tracr_name}", "w")
            b = _param(assembled, f"{pre}/attn/{tracr_name}", "b")
            if w.shape != expected_shapes[tracr_name]:
                raise ValueError(
                    f"{pre}/attn/{tracr_name}: shape {w.shape}, expected {expected_shapes[tracr_name]} "
                    "(tracr pads every layer to the same heads and key size)"
                )
            # haiku Linear: y = x @ w + b with w [in, out]; torch Linear stores w.T.
            # The head axis is the outer one in tracr ("input (heads output)"), as in
            # the bridge's q/k/v views [.., head, d_head].
            state[f"blocks.{layer}.attn.{tl_name}.weight"] = t(w.T)
            state[f"blocks.{layer}.attn.{tl_name}.bias"] = t(b)
        for tracr_name, tl_name in (("linear_1", "in"), ("linear_2", "out")):
            w = _param(assembled, f"{pre}/mlp/{tracr_name}", "w")
            b = _param(assembled, f"{pre}/mlp/{tracr_name}", "b")
            if w.shape != expected_shapes[tracr_name]:
                raise ValueError(f"{pre}/mlp/{tracr_name}: shape {w.shape}, expected {expected_shapes[tracr_name]}")
            state[f"blocks.{layer}.mlp.{tl_name}.weight"] = t(w.T)
            state[f"blocks.{layer}.mlp.{tl_name}.bias"] = t(b)
    state["unembed.weight"] = t(unembed_matrix(assembled, output_label))
    state["unembed.bias"] = torch.zeros(cfg["d_vocab_out"])
    return state


def tracr_to_bridge(assembled: Any, output_label: str):
    """A ``TransformerBridge`` computing exactly what the tracr model computes.

    Built with :func:`scrub.build_model` from :func:`bridge_config`; the weights of
    :func:`bridge_state_dict` are loaded with ``strict=True``, so a key the bridge
    expects and we did not fill (or the reverse) is an error.
    """
    from scrub import build_model

    model = build_model(**bridge_config(assembled, output_label))
    state = bridge_state_dict(assembled, output_label)
    expected = model.state_dict()
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if wrong:
        raise ValueError(
            "shape mismatch: " + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong)
        )
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


# --------------------------------------------------------------------------------------
# Allocation record


def json_value(v: Any) -> Any:
    """A RASP value as JSON: bool, int, float, str or None; tuples as lists (recursively)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, (tuple, list)):
        return [json_value(x) for x in v]
    return str(v)


def _sorted_values(values: Any) -> list[Any]:
    vals = list(values)
    try:
        return sorted(vals)
    except TypeError:
        return sorted(vals, key=lambda x: (type(x).__name__, str(x)))


def describe_allocation(
    *,
    program: Any,
    graph: Any,
    sink: Mapping[str, Any],
    craft_model: Any,
    assembled: Any,
) -> dict[str, Any]:
    """Where tracr put each RASP operation, as JSON-ready data.

    Args:
        program: the output SOp of the RASP program that was compiled.
        graph: tracr's compiler graph (``networkx.DiGraph`` after
            ``add_craft_components_to_rasp_graph``): node attributes ``EXPR``,
            ``VALUE_SET``, ``OUTPUT_BASIS``, ``MODEL_BLOCK``.
        sink: the graph's output node.
        craft_model: the ``SeriesWithResiduals`` from ``craft_graph_to_model``.
        assembled: the ``AssembledTransformerModel``.

    Returns:
        ``{"residual": [...], "sops": {...}, "selectors": {...}, "layers": [...],
        "components": {...}}``:

        * ``residual[i]``: residual dimension ``i``: its tracr label, the SOp
          (``sop``) and value (``value``) it one-hot encodes (``value`` is ``null``
          for a numerical SOp), or a special role (``tokens``, ``indices``, ``one``,
          or the hidden output of a selector-width head).
        * ``sops[label]``: name, RASP type, encoding, children, the possible values,
          ``dims`` (residual indices) with ``dim_values`` (the value each encodes),
          ``aux_dims`` (helper dimensions such as a selector-width head's output),
          ``computed_by`` (scrub node names), and for aggregates / selector widths
          the ``selector``.
        * ``layers[l]``: ``{"attn": [{"head": h, "sop": label, "selector": label, "role": ...,
          "reads_q": ..., "reads_k": ..., "reads_v": ..., "writes": ...}],
          "mlp": [{"sop": label, "neurons": [...], "role": ..., "reads": ..., "writes": ...}]}``;
          reads/writes are read off the weights (see :func:`_add_reads_writes`).
        * ``components``: scrub graph node names (``"a1.0"``, ``"m2"``) to the SOp
          labels they compute.
    """
    from tracr.compiler import nodes
    from tracr.craft import transformers
    from tracr.rasp import rasp

    residual_labels = list(assembled.residual_labels)
    # The residual basis as directions (the assembler joins craft_model.residual_space
    # with the token, index and output spaces; labels are str(direction)).
    res_dirs = _residual_directions(assembled, craft_model, graph)

    # ---- SOps and selectors in the graph.
    sops: dict[str, dict[str, Any]] = {}
    selectors: dict[str, dict[str, Any]] = {}
    order = _topological_labels(graph)
    for label in order:
        node = graph.nodes[label]
        expr = node[nodes.EXPR]
        children = [c.label for c in expr.children]
        if isinstance(expr, rasp.Selector):
            entry: dict[str, Any] = {"name": expr.name, "type": type(expr).__name__, "children": children}
            if isinstance(expr, rasp.Select):
                entry.update(
                    keys=expr.keys.label,
                    queries=expr.queries.label,
                    # a Comparison (EQ, LT, LEQ, TRUE, ...); a free function has no stable name
                    predicate=getattr(expr.predicate, "name", "custom"),
                )
            selectors[label] = entry
            continue
        entry = {
            "name": expr.name,
            "type": type(expr).__name__,
            "encoding": "numerical" if rasp.is_numerical(expr) else "categorical",
            "children": children,
            "values": [json_value(v) for v in _sorted_values(node.get(nodes.VALUE_SET, []))],
            "dims": [],
            "aux_dims": [],
            "computed_by": [],
        }
        if isinstance(expr, (rasp.Aggregate, rasp.SelectorWidth)):
            entry["selector"] = expr.selector.label
        if isinstance(expr, rasp.Aggregate):
            entry["default"] = json_value(expr.default)
        sops[label] = entry

    # tokens and indices are embedded even when the program does not use them
    for prim in ("tokens", "indices"):
        if prim not in sops:
            sops[prim] = {
                "name": prim, "type": "TokensType" if prim == "tokens" else "IndicesType",
                "encoding": "categorical", "children": [], "values": [], "dims": [], "aux_dims": [],
                "computed_by": [], "unused": True,
            }

    residual: list[dict[str, Any]] = []
    for i, (lab, d) in enumerate(zip(residual_labels, res_dirs)):
        item: dict[str, Any] = {"index": i, "label": lab}
        name = d.name
        if name in sops:
            item["sop"] = name
            item["value"] = json_value(d.value)
            sops[name]["dims"].append(i)
        elif name == "one":
            item["role"] = "one"
        else:
            # helper directions, e.g. "<label>_selector_width_attn_output"
            owner = next((s for s in sops if isinstance(name, str) and name.startswith(f"{s}_")), None)
            item["role"] = "aux"
            if owner is not None:
                item["sop"] = owner
                sops[owner]["aux_dims"].append(i)
            if d.value is not None:
                item["value"] = json_value(d.value)
        residual.append(item)

    # ---- Which craft block computes which SOp.
    head_owner: list[tuple[Any, str, str]] = []  # (AttentionHead, sop label, role)
    mlp_owner: list[tuple[Any, str, str]] = []  # (MLP, sop label, role)
    for label in order:
        node = graph.nodes[label]
        block = node.get(nodes.MODEL_BLOCK)
        if block is None:
            continue
        if isinstance(block, transformers.SeriesWithResiduals):  # selector width: attn then MLP
            attn, mlp = block.blocks
            for h in attn.as_multi().heads():
                head_owner.append((h, label, "selector_width_attn"))
            mlp_owner.append((mlp, label, "selector_width_mlp"))
        elif isinstance(block, (transformers.AttentionHead, transformers.MultiAttentionHead)):
            for h in block.as_multi().heads():
                head_owner.append((h, label, "aggregate"))
        elif isinstance(block, transformers.MLP):
            mlp_owner.append((block, label, _mlp_role(node[nodes.EXPR], rasp)))
        else:
            raise TypeError(f"unexpected craft block for {label}: {type(block).__name__}")

    n_layers = int(assembled.model_config.num_layers)
    layers: list[dict[str, Any]] = [{"layer": l, "attn": [], "mlp": []} for l in range(n_layers)]
    components: dict[str, list[str]] = {}
    for block, layer, kind in _craft_blocks_by_layer(craft_model):
        if kind == "attn":
            for h_idx, head in enumerate(block.as_multi().heads()):
                owners = [(lab, role) for (h, lab, role) in head_owner if h is head]
                if len(owners) != 1:
                    raise RuntimeError(f"layer {layer} head {h_idx}: {len(owners)} owners")
                lab, role = owners[0]
                item = {"head": h_idx, "sop": lab, "role": role, "selector": sops[lab].get("selector")}
                layers[layer]["attn"].append(item)
                sops[lab]["computed_by"].append(f"a{layer}.{h_idx}")
                components.setdefault(f"a{layer}.{h_idx}", []).append(lab)
        else:
            hidden = list(block.fst.output_space.basis)
            # combine_in_parallel built a new MLP whose hidden basis is the union of
            # the per-SOp MLPs' hidden bases (tracr names hidden units after the SOp).
            parts = [(m, lab, role) for (m, lab, role) in mlp_owner if _is_part(m, block)]
            for m, lab, role in parts:
                own = set(m.fst.output_space.basis)
                neurons = [i for i, d in enumerate(hidden) if d in own]
                layers[layer]["mlp"].append({"sop": lab, "role": role, "neurons": neurons})
                sops[lab]["computed_by"].append(f"m{layer}")
                components.setdefault(f"m{layer}", []).append(lab)
            claimed = sorted(i for p in layers[layer]["mlp"] for i in p["neurons"])
            if len(claimed) != len(set(claimed)) or len(claimed) != len(hidden):
                raise RuntimeError(f"layer {layer} MLP: neurons {claimed} do not partition 0..{len(hidden) - 1}")

    _add_reads_writes(layers, residual, assembled)
    for entry in sops.values():
        entry["dim_values"] = [residual[i].get("value") for i in entry["dims"]]

    return {
        "residual": residual,
        "sops": sops,
        "selectors": selectors,
        "layers": layers,
        "components": components,
        "output": sink[nodes.EXPR].label,
        "program_output": program.label,
    }


def _dim_names(residual: list[dict[str, Any]], dims: np.ndarray, bos: Any) -> list[str]:
    """Names of residual dimensions: the SOp label, ``"one"``, or ``"bos"`` for the BOS token."""
    names = []
    for i in dims:
        r = residual[int(i)]
        if r.get("role") == "one":
            name = "one"
        elif r.get("sop") == "tokens" and r.get("value") == bos:
            name = "bos"
        else:
            name = r.get("sop", r["label"])
        if name not in names:
            names.append(name)
    return names


def _add_reads_writes(layers: list[dict[str, Any]], residual: list[dict[str, Any]], assembled: Any) -> None:
    """Add, from the weights themselves, which residual dimensions each head / MLP part reads and writes.

    ``reads_q``/``reads_k``/``reads_v`` (heads), ``reads`` (MLP parts) and ``writes``
    each hold ``{"sops": [...], "dims": [...]}``: the dimensions with a nonzero weight,
    named by SOp label (``"one"`` for the constant direction, ``"bos"`` for the BOS token).
    """
    bos = assembled.input_encoder.bos_token
    dh = int(assembled.model_config.key_size)

    def entry(mask: np.ndarray) -> dict[str, Any]:
        dims = np.nonzero(mask)[0]
        return {"sops": _dim_names(residual, dims, bos), "dims": [int(i) for i in dims]}

    for item in layers:
        pre = f"transformer/layer_{item['layer']}"
        for head in item["attn"]:
            cols = slice(head["head"] * dh, (head["head"] + 1) * dh)
            for port, mod in (("q", "query"), ("k", "key"), ("v", "value")):
                w = _param(assembled, f"{pre}/attn/{mod}", "w")[:, cols]
                head[f"reads_{port}"] = entry(np.abs(w).sum(1) > 0)
            wo = _param(assembled, f"{pre}/attn/linear", "w")[cols, :]
            head["writes"] = entry(np.abs(wo).sum(0) > 0)
        for part in item["mlp"]:
            n = part["neurons"]
            w_in = _param(assembled, f"{pre}/mlp/linear_1", "w")[:, n]
            w_out = _param(assembled, f"{pre}/mlp/linear_2", "w")[n, :]
            part["reads"] = entry(np.abs(w_in).sum(1) > 0)
            part["writes"] = entry(np.abs(w_out).sum(0) > 0)


def _mlp_role(expr: Any, rasp: Any) -> str:
    enc = lambda e: "num" if rasp.is_numerical(e) else "cat"  # noqa: E731
    if isinstance(expr, rasp.Map):
        return f"map_{enc(expr.inner)}_to_{enc(expr)}"
    if isinstance(expr, rasp.LinearSequenceMap):
        return "linear_sequence_map"
    if isinstance(expr, rasp.SequenceMap):
        return "sequence_map"
    return type(expr).__name__


def _is_part(mlp: Any, combined: Any) -> bool:
    """Whether ``mlp`` is one of the MLPs ``MLP.combine_in_parallel`` merged into ``combined``."""
    hidden = set(mlp.fst.output_space.basis)
    return bool(hidden) and hidden <= set(combined.fst.output_space.basis)


def _craft_blocks_by_layer(craft_model: Any) -> list[tuple[Any, int, str]]:
    """(block, layer, "attn"|"mlp") in the order tracr's assembler places them."""
    from tracr.craft import transformers

    out = []
    slots = iter([(l, k) for l in range(10_000) for k in ("attn", "mlp")])
    for block in craft_model.blocks:
        kind = "mlp" if isinstance(block, transformers.MLP) else "attn"
        layer, slot = next(slots)
        while slot != kind:
            layer, slot = next(slots)
        out.append((block, layer, kind))
    return out


def _residual_directions(assembled: Any, craft_model: Any, graph: Any) -> list[Any]:
    """The residual basis directions, matched one-to-one with ``assembled.residual_labels``."""
    from tracr.compiler import nodes
    from tracr.craft import bases
    from tracr.rasp import rasp

    dirs = set(craft_model.residual_space.basis)
    for label in graph.nodes:
        basis = graph.nodes[label].get(nodes.OUTPUT_BASIS)
        if basis:
            dirs |= set(basis)
    # the assembler adds the whole token space (with the compiler's BOS and PAD) and
    # the whole index space (0..max_seq_len-1), used or not
    for value in assembled.input_encoder.encoding_map:
        dirs.add(bases.BasisDirection(rasp.tokens.label, value))
    n_pos = np.asarray(assembled.params["pos_embed"]["embeddings"]).shape[0] - 1
    for i in range(n_pos):
        dirs.add(bases.BasisDirection(rasp.indices.label, i))
    by_str: dict[str, Any] = {}
    for d in dirs:
        by_str.setdefault(str(d), d)
    out = []
    for lab in assembled.residual_labels:
        if lab not in by_str:
            raise RuntimeError(f"residual label {lab!r} not found among the program's basis directions")
        out.append(by_str[lab])
    return out


def _topological_labels(graph: Any) -> list[str]:
    import networkx as nx

    return list(nx.lexicographical_topological_sort(graph))
