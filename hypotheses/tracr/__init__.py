"""Compiled models with exact ground truth: RASP programs compiled by tracr.

Every attention head and MLP of these models computes a known RASP operation, so the
true hypothesis is known. The weights are committed (``weights/<name>.safetensors``),
converted to TransformerLens 4 by ``hypotheses.tracr.convert``; nothing here needs jax
or tracr. ``python -m hypotheses.tracr.compile`` rebuilds them (needs the ``tracr`` extra).

>>> from hypotheses import tracr as zoo
>>> model = zoo.load_model("reverse")
>>> spec = zoo.load_spec("reverse")      # which head / MLP computes which SOp
>>> data = zoo.make_data("reverse", 200, seed=0)

Inputs are prefixed with the compiler's BOS token (model position 0); RASP position
``i`` is model position ``i + 1``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hypotheses.tracr.programs import PROGRAM_INFO, PROGRAMS, ProgramInfo, evaluate, sample_inputs

__all__ = [
    "PROGRAMS",
    "PROGRAM_INFO",
    "WEIGHTS_DIR",
    "weights_path",
    "load_model",
    "load_spec",
    "load_expected",
    "encode",
    "make_data",
    "evaluate",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def _check(name: str) -> ProgramInfo:
    if name not in PROGRAM_INFO:
        raise KeyError(f"unknown tracr program {name!r}; known: {list(PROGRAMS)}")
    return PROGRAM_INFO[name]


def weights_path(name: str) -> Path:
    """The committed safetensors file of program ``name``."""
    _check(name)
    return WEIGHTS_DIR / f"{name}.safetensors"


def load_model(name: str, device: str | torch.device = "cpu"):
    """The compiled model of program ``name`` as a ``TransformerBridge`` (no jax needed).

    Its logits at each position are the unembedded output SOp: one logit per output
    value (in ``load_spec(name)["output_values"]`` order) for categorical programs;
    a single logit holding the value for numerical ones (``frac_prevs``, ``pair_balance``).
    """
    from scrub import load_model as _load

    return _load(weights_path(name), device=device)


@lru_cache(maxsize=None)
def _read_json(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def load_spec(name: str) -> dict[str, Any]:
    """tracr's allocation for program ``name`` (the parsed ``<name>.spec.json``).

    Keys: ``tokens`` (token id -> value), ``bos_id``, ``output_sop``, ``output_values``,
    ``config``; ``sops`` (per SOp label: name, type, encoding, children, values,
    residual ``dims``, ``computed_by``); ``selectors``; ``layers`` (per layer, each head
    and MLP part with the SOp it computes and the SOps it reads and writes);
    ``components`` (scrub node name such as ``"a3.0"`` or ``"m1"`` -> SOp labels);
    ``residual`` (per residual dimension, its SOp and value).
    A fresh copy is returned each call.
    """
    _check(name)
    return json.loads(json.dumps(_read_json(str(WEIGHTS_DIR / f"{name}.spec.json"))))


def load_expected(name: str) -> dict[str, Any]:
    """tracr's own outputs on the test inputs (``inputs``, ``outputs``; BOS dropped)."""
    _check(name)
    return json.loads(json.dumps(_read_json(str(WEIGHTS_DIR / f"{name}.expected.json"))))


def encode(name: str, inputs: list[tuple[Any, ...]] | list[list[Any]]) -> torch.Tensor:
    """Token ids ``[N, 1 + length]`` (BOS first) for inputs of equal length."""
    spec = _read_json(str(WEIGHTS_DIR / f"{name}.spec.json"))
    ids = {v: i for i, v in enumerate(spec["tokens"])}
    lengths = {len(x) for x in inputs}
    if len(lengths) != 1:
        raise ValueError(f"encode: inputs must have one length, got lengths {sorted(lengths)}")
    try:
        rows = [[spec["bos_id"]] + [ids[t] for t in x] for x in inputs]
    except KeyError as err:
        raise ValueError(f"{name}: token {err.args[0]!r} not in the vocabulary {spec['vocab']}") from None
    return torch.tensor(rows, dtype=torch.long)


def make_data(
    name: str,
    n: int,
    seed: int = 0,
    *,
    length: int | None = None,
    target_pos: int | str | None = None,
):
    """A ``scrub.Dataset`` of ``n`` random inputs to program ``name``.

    Args:
        name: one of :data:`PROGRAMS`.
        n: number of examples.
        seed: seed of the numpy generator that draws the inputs (and random positions).
        length: input length without BOS (default: the program's ``max_seq_len``);
            every example has this length, so ``tokens`` is ``[n, 1 + length]``.
        target_pos: the model position scored (BOS is position 0): an int, ``"random"``
            (uniform over ``1..length`` per example), or ``None`` for the last position.

    Returns:
        A dataset whose ``tokens`` start with BOS; ``labels`` are the output token
        (index into the output values, i.e. the logit) at ``target_pos`` for
        categorical programs, ``None`` for numerical ones. ``columns`` holds, per
        example: ``input`` (the token values), ``length``, one column per SOp label
        of the program (a tuple of its values at RASP positions ``0..length-1``, as
        plain-Python RASP evaluation gives them), ``target`` (the output value at
        ``target_pos``), and ``target_index`` (``target_pos - 1``, the RASP position).
        Inputs are i.i.d. tokens (distinct tokens for ``sort``); for the Dyck
        programs half are drawn from the balanced strings.
    """
    from scrub import Dataset

    info = _check(name)
    spec = _read_json(str(WEIGHTS_DIR / f"{name}.spec.json"))
    length = info.max_seq_len if length is None else int(length)
    if n < 1:
        raise ValueError(f"make_data: n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    inputs = sample_inputs(name, n, length, rng)
    tokens = encode(name, inputs)

    if target_pos is None:
        pos = np.full(n, length, dtype=np.int64)
    elif isinstance(target_pos, str):
        if target_pos != "random":
            raise ValueError(f"make_data: target_pos must be an int, 'random' or None, got {target_pos!r}")
        pos = rng.integers(1, length + 1, size=n)
    else:
        if not 1 <= int(target_pos) <= length:
            raise ValueError(f"make_data: target_pos {target_pos} outside 1..{length} (0 is BOS)")
        pos = np.full(n, int(target_pos), dtype=np.int64)

    evaluated = [evaluate(name, x) for x in inputs]
    cols: dict[str, list[Any]] = {"input": [tuple(x) for x in inputs], "length": [length] * n}
    for label in evaluated[0]:
        cols[label] = [tuple(e[label]) for e in evaluated]
    out = info.output
    targets = [e[out][p - 1] for e, p in zip(evaluated, pos)]
    cols["target"] = targets
    cols["target_index"] = [int(p - 1) for p in pos]
    frame = pd.DataFrame(cols)

    labels = None
    if info.categorical_output:
        index = {v: i for i, v in enumerate(spec["output_values"])}
        missing = [t for t in targets if t not in index]
        if missing:
            raise ValueError(f"{name}: output values {missing[:3]} are not among the model's outputs")
        labels = torch.tensor([index[t] for t in targets], dtype=torch.long)
    return Dataset(tokens, labels, columns=frame, target_pos=torch.as_tensor(pos, dtype=torch.long))
