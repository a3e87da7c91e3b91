"""Three small RASP programs compiled only to test circuit discovery (``tests/test_discover_tracr.py``).

The zoo's programs (``hypotheses.tracr.programs``) read positions or the input length, which
are the same in every example of fixed-length data: no resampling can show that the paths
carrying them matter, so discovery cannot recover them and recall against the true hypothesis
is capped below 1. The programs here read only the tokens and what is computed from them, so
every path their true hypothesis claims varies with the input and recall is measurable:

* ``map_chain``: two chained MLPs and a two-input MLP,
  ``SequenceMap(f, tokens, Map(g, Map(h, tokens)))``.
* ``frac_smaller``: a head comparing tokens (query token > key token) averaging a numerical
  ``Map`` of the tokens (computed by an MLP before it).
* ``hist_parity``: the token histogram (``Select(tokens, tokens, EQ)`` and ``SelectorWidth``:
  a head and an MLP) followed by a ``Map`` (another MLP).

``python -m hypotheses.tracr.extra`` (needs the ``tracr`` extra) compiles them with
:func:`~hypotheses.tracr.hypotheses.from_program` and writes, in ``tests/data/tracr_extra/``,
``<name>.safetensors`` (the converted model), ``<name>.spec.json`` (tracr's allocation, as
``load_spec`` documents) and ``<name>.data.json`` (the dataset of :data:`N` examples drawn
with seed :data:`SEED`, its per-SOp columns evaluated by tracr's RASP evaluator). The files
are deterministic (SOp ids are renumbered from the program, the process runs with
``PYTHONHASHSEED=0``). :func:`load` reads them back without jax or tracr:

>>> from hypotheses.tracr.extra import load
>>> from hypotheses.tracr.hypotheses import metric, true_hypothesis
>>> import scrub
>>> model, spec, data = load("hist_parity")
>>> round(scrub.run(model, true_hypothesis(spec), data, metric=metric(spec), seed=0).loss_recovered, 3)
1.0
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["EXTRA", "DATA_DIR", "N", "SEED", "SOURCES", "build", "load", "write", "main"]

DATA_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "tracr_extra"
N = 400
SEED = 0

#: name -> (vocabulary, max_seq_len)
EXTRA: dict[str, tuple[tuple[Any, ...], int]] = {
    "map_chain": ((0, 1, 2, 3, 4, 5), 4),
    "frac_smaller": ((1, 2, 3, 4, 5), 5),
    "hist_parity": (("a", "b", "c"), 5),
}

#: name -> the RASP source :func:`build` compiles (recorded in the spec)
SOURCES: dict[str, str] = {
    "map_chain": (
        "a = rasp.categorical(rasp.Map(lambda t: t % 3, rasp.tokens))\n"
        "b = rasp.categorical(rasp.Map(lambda x: (x + 1) % 3, a, simplify=False))  # not fused into one MLP\n"
        "out = rasp.categorical(rasp.SequenceMap(lambda t, y: (t + y) % 4, rasp.tokens, b))"
    ),
    "frac_smaller": (
        "big = rasp.numerical(rasp.Map(lambda t: 1 if t >= 3 else 0, rasp.tokens))\n"
        "smaller = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT)  # key < query\n"
        "out = rasp.numerical(rasp.Aggregate(smaller, big, default=0))"
    ),
    "hist_parity": (
        "hist = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ))\n"
        "out = rasp.categorical(rasp.Map(lambda h: h % 2, hist))"
    ),
}


def build(name: str) -> Any:
    """The RASP program ``name`` (needs tracr), with ids renumbered by ``compile.relabel``."""
    from tracr.rasp import rasp

    from hypotheses.tracr.compile import relabel

    if name not in SOURCES:
        raise KeyError(f"unknown extra tracr program {name!r}; known: {list(SOURCES)}")
    scope: dict[str, Any] = {"rasp": rasp}
    exec(SOURCES[name], scope)  # the fixed sources above
    program = scope["out"]
    relabel(program)
    return program


def _paths(name: str, out_dir: Path) -> tuple[Path, Path, Path]:
    return out_dir / f"{name}.safetensors", out_dir / f"{name}.spec.json", out_dir / f"{name}.data.json"


def _json_cell(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_json_cell(x) for x in v]
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return v


def write(name: str, out_dir: Path = DATA_DIR) -> dict[str, Any]:
    """Compile ``name`` with ``from_program`` and write its weights, spec and dataset (needs tracr)."""
    from hypotheses.tracr.compile import canonicalize_safetensors
    from hypotheses.tracr.hypotheses import from_program
    from scrub import save_model

    vocab, max_seq_len = EXTRA[name]
    model, h, data_fn = from_program(build(name), vocab, max_seq_len, name=name)
    spec = h.spec
    spec["description"] = f"extra test program {name}"
    spec["source"] = SOURCES[name]
    data = data_fn(N, seed=SEED)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, spec_path, data_path = _paths(name, out_dir)
    save_model(model, weights, program=name, output_sop=spec["output_sop"], source=SOURCES[name])
    canonicalize_safetensors(weights)
    spec_path.write_text(json.dumps(spec, indent=1) + "\n")
    frame = data.columns
    record = {
        "name": name, "n": N, "seed": SEED,
        "about": "data_fn(n, seed) of hypotheses.tracr.hypotheses.from_program: tokens (BOS first), labels "
                 "(categorical outputs), target_pos, and per example the columns (SOp values by tracr's RASP evaluator)",
        "tokens": data.tokens.tolist(),
        "labels": None if data.labels is None else data.labels.tolist(),
        "target_pos": data.target_pos.tolist(),
        "columns": {c: [_json_cell(v) for v in frame[c]] for c in frame.columns},
    }
    lines = ["{"]
    items = list(record.items())
    for i, (k, v) in enumerate(items):
        end = "," if i < len(items) - 1 else ""
        if isinstance(v, dict):
            inner = [f"  {json.dumps(c)}: {json.dumps(col, separators=(',', ':'))}" for c, col in v.items()]
            lines.append(f" {json.dumps(k)}: {{\n" + ",\n".join(inner) + f"\n }}{end}")
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}{end}")
    data_path.write_text("\n".join([*lines, "}"]) + "\n")
    return {"name": name, "d_model": spec["config"]["d_model"], "n_layers": spec["config"]["n_layers"],
            **{p.name: p.stat().st_size for p in (weights, spec_path, data_path)}}


def _tuple(v: Any) -> Any:
    return tuple(_tuple(x) for x in v) if isinstance(v, list) else v


def load(name: str, data_dir: Path = DATA_DIR):
    """``(model, spec, data)`` of program ``name`` from the committed files; needs no jax or tracr.

    ``model`` is the ``TransformerBridge`` (``scrub.load_model``), ``spec`` the parsed
    ``<name>.spec.json`` (pass it to ``true_hypothesis`` and ``metric``), ``data`` the
    ``scrub.Dataset`` that ``from_program``'s ``data_fn(N, seed=SEED)`` gave, scored at the last position.
    """
    import pandas as pd
    import torch

    import scrub

    if name not in EXTRA:
        raise KeyError(f"unknown extra tracr program {name!r}; known: {list(EXTRA)}")
    weights, spec_path, data_path = _paths(name, data_dir)
    spec = json.loads(spec_path.read_text())
    record = json.loads(data_path.read_text())
    columns = pd.DataFrame({c: [_tuple(v) for v in col] for c, col in record["columns"].items()})
    labels = None if record["labels"] is None else torch.tensor(record["labels"], dtype=torch.long)
    data = scrub.Dataset(torch.tensor(record["tokens"], dtype=torch.long), labels, columns=columns,
                         target_pos=torch.tensor(record["target_pos"], dtype=torch.long))
    return scrub.load_model(weights), spec, data


def main(argv: list[str] | None = None) -> None:
    """Compile the programs named in ``argv`` (all by default) and rewrite their files."""
    from hypotheses.tracr.compile import deterministic_process

    argv = sys.argv[1:] if argv is None else argv
    deterministic_process("hypotheses.tracr.extra", argv)
    for name in argv or list(EXTRA):
        print(json.dumps(write(name)), flush=True)


if __name__ == "__main__":
    main()
