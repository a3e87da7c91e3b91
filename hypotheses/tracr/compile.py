"""Compile the RASP programs with tracr and write the committed weights and JSON.

Usage (needs the ``tracr`` extra: ``pip install -e .[tracr]``)::

    python -m hypotheses.tracr.compile            # all programs
    python -m hypotheses.tracr.compile reverse    # some

For each program ``<name>`` this writes, in ``hypotheses/tracr/weights/``:

* ``<name>.safetensors``: the converted ``TransformerBridge`` (``scrub.save_model``).
* ``<name>.spec.json``: the program, its vocabulary and encodings, and tracr's
  allocation (which head / MLP computes which SOp, the residual dimensions of each SOp).
* ``<name>.expected.json``: tracr's own outputs on every input of the test set.

The output is deterministic: SOp ids are renumbered in a fixed order before compiling
(tracr otherwise numbers them by a global counter), and the process re-executes itself
with ``PYTHONHASHSEED=0`` because tracr sorts some bases of mixed value types by string.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hypotheses.tracr.convert import describe_allocation, json_value, tracr_to_bridge
from hypotheses.tracr.programs import PROGRAM_INFO, PROGRAMS, ProgramInfo, all_inputs

__all__ = [
    "WEIGHTS_DIR", "BOS", "build_program", "relabel", "compile_program", "compile_rasp", "program_spec",
    "tracr_outputs", "write_program", "deterministic_process", "main",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
BOS = "BOS"
PAD = "compiler_pad"
MLP_EXACTNESS = 100


def build_program(name: str):
    """The RASP program ``name`` built with tracr's ``lib`` (ids renumbered by :func:`relabel`)."""
    from tracr.compiler import lib
    from tracr.rasp import rasp

    builders = {
        "reverse": lambda: lib.make_reverse(rasp.tokens),
        "sort": lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens),
        "hist": lambda: lib.make_hist(),
        "frac_prevs": lambda: lib.make_frac_prevs(rasp.tokens == "x"),
        "pair_balance": lambda: lib.make_pair_balance(rasp.tokens, "(", ")"),
        "shuffle_dyck": lambda: lib.make_shuffle_dyck(["()"]),
        "shuffle_dyck2": lambda: lib.make_shuffle_dyck2(),
    }
    if name not in builders:
        raise KeyError(f"unknown tracr program {name!r}; known: {list(builders)}")
    program = builders[name]()
    relabel(program)
    return program


def relabel(program: Any) -> list[Any]:
    """Give every expression of ``program`` a deterministic id (1, 2, ... in DFS post-order).

    tracr labels an expression ``f"{name}_{unique_id}"`` with ids from a process-wide
    counter, so labels depend on what was built before. Here the ids are renumbered
    from the program alone (children before parents, in argument order). Primitives
    (``tokens``, ``indices``) keep their fixed labels. Returns the expressions in that order.
    """
    from tracr.rasp import rasp

    seen: dict[int, Any] = {}
    order: list[Any] = []

    def visit(expr: Any) -> None:
        if id(expr) in seen:
            return
        seen[id(expr)] = expr
        for child in expr.children:
            visit(child)
        order.append(expr)

    visit(program)
    k = 0
    for expr in order:
        if isinstance(expr, (rasp.TokensType, rasp.IndicesType, rasp.LengthType)):
            continue
        k += 1
        expr.__dict__["unique_id"] = k  # overrides the cached_property
    labels = [e.label for e in order]
    if len(set(labels)) != len(labels):
        raise RuntimeError(f"duplicate labels after relabelling: {labels}")
    return order


@dataclass
class Compiled:
    """A compiled program with the compiler's intermediate objects."""

    name: str
    program: Any
    assembled: Any
    graph: Any
    sink: Any
    craft_model: Any


def compile_program(name: str) -> Compiled:
    """Compile zoo program ``name`` (see :func:`compile_rasp`)."""
    info = PROGRAM_INFO[name]
    return compile_rasp(build_program(name), info.vocab, info.max_seq_len, causal=info.causal, name=name)


def compile_rasp(
    program: Any, vocab: Any, max_seq_len: int, *, causal: bool = False, name: str = "program"
) -> Compiled:
    """Compile a RASP program exactly as ``compiling.compile_rasp_to_model`` does, keeping the graph.

    The steps are tracr's own (static validation, graph extraction, basis inference,
    craft components, layer allocation, assembly); the graph and craft model are kept
    for :func:`~hypotheses.tracr.convert.describe_allocation`. BOS is :data:`BOS`, the
    padding token :data:`PAD`, MLPs are built with :data:`MLP_EXACTNESS`.
    """
    from tracr.compiler import (
        basis_inference,
        craft_graph_to_model,
        craft_model_to_transformer,
        expr_to_craft_graph,
        rasp_to_graph,
        validating,
    )
    from tracr.craft import bases
    from tracr.rasp import rasp

    unsupported = validating.static_validate(program)
    if unsupported:
        raise NotImplementedError("; ".join(f"{e.expr.name}: {e.reason}" for e in unsupported))
    extracted = rasp_to_graph.extract_rasp_graph(program)
    graph, sources, sink = extracted.graph, extracted.sources, extracted.sink
    basis_inference.infer_bases(graph, sink, set(vocab), max_seq_len)
    expr_to_craft_graph.add_craft_components_to_rasp_graph(
        graph, bos_dir=bases.BasisDirection(rasp.tokens.label, BOS), mlp_exactness=MLP_EXACTNESS
    )
    craft_model = craft_graph_to_model.craft_graph_to_model(graph, sources)
    assembled = craft_model_to_transformer.craft_model_to_transformer(
        craft_model=craft_model,
        graph=graph,
        sink=sink,
        max_seq_len=max_seq_len,
        causal=causal,
        compiler_bos=BOS,
        compiler_pad=PAD,
    )
    return Compiled(name, program, assembled, graph, sink, craft_model)


def tracr_outputs(assembled: Any, inputs: list[tuple[Any, ...]], forward: Any = None) -> list[list[Any]]:
    """tracr's decoded outputs (BOS position dropped), batched by length through ``assembled.forward``.

    Decoding is ``AssembledTransformerModel.apply``'s: the argmax through the output
    encoder for categorical outputs, the raw value for numerical ones. ``forward``
    replaces ``assembled.forward`` (e.g. ``jax.jit(assembled.forward)``, much faster
    on first use; the committed files use the plain one, as ``apply`` does).
    """
    import jax.numpy as jnp

    forward = assembled.forward if forward is None else forward

    enc = assembled.input_encoder
    outputs: list[list[Any] | None] = [None] * len(inputs)
    by_len: dict[int, list[int]] = {}
    for i, x in enumerate(inputs):
        by_len.setdefault(len(x), []).append(i)
    for _, rows in sorted(by_len.items()):
        ids = jnp.array([enc.encode([BOS, *inputs[i]]) for i in rows])
        out = forward(assembled.params, ids)
        un = np.asarray(out.unembedded_output)
        for r, i in enumerate(rows):
            vals = un[r].tolist()
            decoded = assembled.output_encoder.decode(vals) if assembled.output_encoder else vals
            outputs[i] = list(decoded[1:])
    return outputs  # type: ignore[return-value]


def _spec(c: Compiled, config: dict[str, Any]) -> dict[str, Any]:
    info: ProgramInfo = PROGRAM_INFO[c.name]
    return program_spec(
        c, config, description=info.description, source=info.source, vocab=info.vocab,
        max_seq_len=info.max_seq_len, causal=info.causal,
    )


def program_spec(
    c: Compiled,
    config: dict[str, Any],
    *,
    description: str,
    source: str,
    vocab: Any,
    max_seq_len: int,
    causal: bool,
) -> dict[str, Any]:
    """The ``<name>.spec.json`` record of a compiled program (``load_spec`` documents the keys)."""
    enc = c.assembled.input_encoder.encoding_map
    tokens = [v for v, _ in sorted(enc.items(), key=lambda kv: kv[1])]
    out_enc = getattr(c.assembled.output_encoder, "encoding_map", None)
    alloc = describe_allocation(
        program=c.program, graph=c.graph, sink=c.sink, craft_model=c.craft_model, assembled=c.assembled
    )
    from importlib.metadata import version

    return {
        "name": c.name,
        "description": description,
        "source": source,
        "vocab": [json_value(v) for v in vocab],
        "max_seq_len": max_seq_len,
        "causal": causal,
        "bos": BOS,
        "pad": PAD,
        "tokens": [json_value(v) for v in tokens],
        "bos_id": enc[BOS],
        "pad_id": enc[PAD],
        "output_sop": c.program.label,
        "categorical_output": out_enc is not None,
        "output_values": None if out_enc is None else [json_value(v) for v, _ in sorted(out_enc.items(), key=lambda kv: kv[1])],
        "mlp_exactness": MLP_EXACTNESS,
        "config": config,
        "compiled_with": {"tracr-pypi": version("tracr-pypi"), "jax": version("jax"), "dm-haiku": version("dm-haiku")},
        **alloc,
    }


def canonicalize_safetensors(path: Path) -> None:
    """Rewrite the safetensors header of ``path`` with its metadata keys sorted.

    safetensors writes the ``__metadata__`` map in hash order, which changes from run
    to run; sorting it makes the file bytes reproducible. The header keeps its length
    (padded with spaces, which the format allows), so the tensor data is untouched.
    """
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    ordered: dict[str, Any] = {}
    if meta is not None:
        ordered["__metadata__"] = dict(sorted(meta.items()))
    ordered.update(sorted(header.items()))
    text = json.dumps(ordered, separators=(",", ":")).encode()
    if len(text) > n:
        raise RuntimeError(f"{path}: canonical header longer than the original ({len(text)} > {n})")
    raw[8 : 8 + n] = text + b" " * (n - len(text))
    path.write_bytes(bytes(raw))


def _dump(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")


def _dump_rows(obj: dict[str, Any], path: Path) -> None:
    """JSON with each element of a list-valued entry on its own line (compact and diffable)."""
    parts = []
    for key, value in obj.items():
        if isinstance(value, list) and value and isinstance(value[0], list):
            rows = ",\n  ".join(json.dumps(r, separators=(",", ":")) for r in value)
            parts.append(f" {json.dumps(key)}: [\n  {rows}\n ]")
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(value)}")
    path.write_text("{\n" + ",\n".join(parts) + "\n}\n")


def write_program(name: str, out_dir: Path = WEIGHTS_DIR) -> dict[str, Any]:
    """Compile ``name``, convert it, and write its weights, spec and expected outputs.

    Returns a short summary (sizes, number of test inputs, agreement with RASP).
    """
    from scrub import save_model
    from scrub._checkpoint import model_config

    from hypotheses.tracr.programs import evaluate

    info = PROGRAM_INFO[name]
    if not info.output:
        raise RuntimeError(f"{name}: ProgramInfo.output not set")
    c = compile_program(name)
    if c.program.label != info.output:
        raise RuntimeError(f"{name}: output label {c.program.label!r} != ProgramInfo.output {info.output!r}")
    model = tracr_to_bridge(c.assembled, c.program.label)
    config = model_config(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, out_dir / f"{name}.safetensors", program=name, output_sop=c.program.label, source=info.source)
    canonicalize_safetensors(out_dir / f"{name}.safetensors")
    _dump(_spec(c, config), out_dir / f"{name}.spec.json")

    inputs = all_inputs(name)
    outs = tracr_outputs(c.assembled, inputs)
    rasp_outs = [c.program(list(x)) for x in inputs]
    disagree = [i for i, (o, r) in enumerate(zip(outs, rasp_outs)) if not _same(o, r, info.categorical_output)]
    mine = [evaluate(name, x)[info.output] for x in inputs]
    if mine != rasp_outs:
        raise RuntimeError(f"{name}: programs.evaluate disagrees with RASP's evaluator")
    expected = {
        "name": name,
        "about": "tracr's own decoded outputs (BOS position dropped) on every input; "
        "categorical: output values, numerical: the unembedded value",
        "inputs": [[json_value(t) for t in x] for x in inputs],
        "outputs": [[json_value(v) for v in o] for o in outs],
        "rasp_disagrees": disagree,
    }
    _dump_rows(expected, out_dir / f"{name}.expected.json")
    return {
        "name": name,
        "n_layers": config["n_layers"],
        "n_heads": config["n_heads"],
        "d_model": config["d_model"],
        "d_head": config["d_head"],
        "d_mlp": config["d_mlp"],
        "n_inputs": len(inputs),
        "tracr_vs_rasp_disagreements": len(disagree),
        "bytes": (out_dir / f"{name}.safetensors").stat().st_size,
    }


def _same(a: list[Any], b: list[Any], categorical: bool) -> bool:
    if len(a) != len(b):
        return False
    if categorical:
        return list(a) == list(b)
    return all((x is None and y is None) or (x is not None and y is not None and abs(x - y) < 1e-4) for x, y in zip(a, b))


def deterministic_process(module: str, argv: list[str]) -> None:
    """Re-execute ``python -m module argv`` with ``PYTHONHASHSEED=0`` unless it is already set (tracr
    sorts some bases of mixed value types by string), then run torch on one thread."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        env = dict(os.environ, PYTHONHASHSEED="0")
        os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)
    import torch

    torch.set_num_threads(1)


def main(argv: list[str] | None = None) -> None:
    """Recompile the programs named in ``argv`` (all by default) and rewrite their files."""
    argv = sys.argv[1:] if argv is None else argv
    deterministic_process("hypotheses.tracr.compile", argv)
    names = argv or list(PROGRAMS)
    for name in names:
        summary = write_program(name)
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
