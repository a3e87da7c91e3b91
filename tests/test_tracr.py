"""The tracr-compiled zoo entries: converted models reproduce tracr exactly.

The first tests need no jax: they load the committed weights and compare with tracr's
outputs stored beside them. The ``live`` tests recompile with tracr (skipped when the
``tracr`` extra is not installed).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hypotheses import tracr as zoo
from hypotheses.tracr.programs import PROGRAM_INFO, PROGRAMS, all_inputs, evaluate

torch.set_num_threads(1)

NUM_TOL = 1e-4


def _run(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(tokens)


def _model_outputs(name: str, inputs: list[list[Any]]) -> tuple[list[list[Any]], float]:
    """The converted model's decoded outputs (BOS dropped) and the smallest top-1 margin."""
    spec = zoo.load_spec(name)
    model = zoo.load_model(name)
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, x in enumerate(inputs):
        by_len[len(x)].append(i)
    outs: list[list[Any]] = [[] for _ in inputs]
    margin = math.inf
    for _, rows in sorted(by_len.items()):
        logits = _run(model, zoo.encode(name, [inputs[i] for i in rows]))[:, 1:, :]
        if spec["categorical_output"]:
            top2 = logits.topk(2, dim=-1).values
            margin = min(margin, float((top2[..., 0] - top2[..., 1]).min()))
            decoded = [[spec["output_values"][j] for j in r] for r in logits.argmax(-1).tolist()]
        else:
            decoded = logits[..., 0].tolist()
        for r, i in enumerate(rows):
            outs[i] = decoded[r]
    return outs, margin


def _assert_same(name: str, got: list[list[Any]], want: list[list[Any]], inputs: list[list[Any]], categorical: bool):
    bad = []
    for x, g, w in zip(inputs, got, want):
        if len(g) != len(w):
            bad.append((x, g, w))
        elif categorical:
            if list(g) != list(w):
                bad.append((x, g, w))
        elif any(abs(a - b) > NUM_TOL for a, b in zip(g, w)):
            bad.append((x, g, w))
    assert not bad, f"{name}: {len(bad)}/{len(inputs)} inputs differ, e.g. input, got, want = {bad[:3]}"


@pytest.mark.parametrize("name", PROGRAMS)
def test_converted_model_matches_tracr_outputs(name: str) -> None:
    """Committed weights, no jax: decoded outputs equal tracr's on every stored input."""
    expected = zoo.load_expected(name)
    inputs, want = expected["inputs"], expected["outputs"]
    assert len(inputs) == len(all_inputs(name)), "the test set is every valid input"
    got, margin = _model_outputs(name, inputs)
    _assert_same(name, got, want, inputs, PROGRAM_INFO[name].categorical_output)
    if PROGRAM_INFO[name].categorical_output:
        # argmax decisions are not near-ties, so the comparison is robust
        assert margin > 0.5, f"{name}: smallest top-1 logit margin {margin}"
    print(f"{name}: {len(inputs)} inputs exact")


@pytest.mark.parametrize("name", PROGRAMS)
def test_plain_evaluator_matches_tracr(name: str) -> None:
    """The plain-Python RASP evaluators give tracr's outputs (and tracr agreed with RASP)."""
    expected = zoo.load_expected(name)
    assert expected["rasp_disagrees"] == []
    info = PROGRAM_INFO[name]
    mine = [evaluate(name, x)[info.output] for x in expected["inputs"]]
    _assert_same(name, mine, expected["outputs"], expected["inputs"], info.categorical_output)


@pytest.mark.parametrize("name", PROGRAMS)
def test_spec_is_consistent(name: str) -> None:
    """The allocation covers every nonzero head and MLP neuron; SOp labels match the evaluators."""
    spec = zoo.load_spec(name)
    model = zoo.load_model(name)
    cfg = spec["config"]
    assert zoo.weights_path(name).stat().st_size < 1_000_000
    assert spec["output_sop"] == PROGRAM_INFO[name].output
    used = {lab for lab, s in spec["sops"].items() if not s.get("unused")}
    assert used == set(evaluate(name, all_inputs(name)[-1])), "evaluator labels != compiled SOp labels"
    assert len(spec["residual"]) == cfg["d_model"]
    assert spec["tokens"][spec["bos_id"]] == spec["bos"]

    sd = model.state_dict()
    dh = cfg["d_head"]
    for layer in spec["layers"]:
        l = layer["layer"]
        heads = {h["head"] for h in layer["attn"]}
        for h in range(cfg["n_heads"]):
            w = sd[f"blocks.{l}.attn.o.weight"][:, h * dh : (h + 1) * dh]
            assert (w.abs().sum() > 0) == (h in heads), f"layer {l} head {h}: allocation vs weights"
        neurons = sorted(i for p in layer["mlp"] for i in p["neurons"])
        live = torch.nonzero(sd[f"blocks.{l}.mlp.out.weight"].abs().sum(0) > 0).flatten().tolist()
        assert set(live) <= set(neurons), f"layer {l}: live MLP neurons outside the allocation"
        for part in layer["mlp"]:
            assert part["sop"] in spec["sops"]
        for head in layer["attn"]:
            assert head["sop"] in spec["sops"] and head["writes"]["sops"]
    for comp, labels in spec["components"].items():
        for lab in labels:
            assert comp in spec["sops"][lab]["computed_by"]
    # every SOp other than the inputs is computed somewhere
    for lab in used - {"tokens", "indices"}:
        assert spec["sops"][lab]["computed_by"], f"{lab} has no component"


@pytest.mark.parametrize("name", PROGRAMS)
def test_make_data(name: str) -> None:
    """Datasets start with BOS, carry the SOp columns, and the model gets every label right."""
    info = PROGRAM_INFO[name]
    spec = zoo.load_spec(name)
    data = zoo.make_data(name, 64, seed=1, target_pos="random")
    again = zoo.make_data(name, 64, seed=1, target_pos="random")
    assert torch.equal(data.tokens, again.tokens)
    assert data.tokens.shape == (64, info.max_seq_len + 1)
    assert (data.tokens[:, 0] == spec["bos_id"]).all()
    for lab in evaluate(name, data.columns["input"][0]):
        assert lab in data.columns
    logits = _run(zoo.load_model(name), data.tokens)
    at = logits[torch.arange(64), data.target_pos]
    if info.categorical_output:
        assert data.labels is not None
        assert torch.equal(at.argmax(-1), data.labels)
    else:
        assert data.labels is None
        np.testing.assert_allclose(at[:, 0].numpy(), data.columns["target"].astype(float).to_numpy(), atol=NUM_TOL)
    short = zoo.make_data(name, 8, seed=0, length=2)
    assert short.tokens.shape == (8, 3) and (short.target_pos == 2).all()
    if info.balanced_half:
        big = zoo.make_data(name, 400, seed=0)
        frac = float(big.labels.float().mean())
        assert 0.35 < frac < 0.65, f"{name}: fraction balanced {frac}"


def test_works_without_jax() -> None:
    """Loading, data and inference never import jax, haiku or tracr (they are an optional extra)."""
    code = (
        "import sys\n"
        "for m in ('jax', 'jaxlib', 'haiku', 'tracr'):\n"
        "    sys.modules[m] = None  # any import of them now raises ImportError\n"
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "from hypotheses import tracr as zoo\n"
        "import hypotheses.tracr.convert, hypotheses.tracr.compile\n"
        "for name in zoo.PROGRAMS:\n"
        "    d = zoo.make_data(name, 4)\n"
        "    zoo.load_model(name)(d.tokens)\n"
        "print('ok')\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]


# ---------------------------------------------------------------------------------------
# Live tracr (needs the tracr extra: tracr-pypi, jax, dm-haiku)


@pytest.fixture(scope="module")
def compiled():
    pytest.importorskip("jax", reason="the tracr extra (jax) is not installed")
    pytest.importorskip("tracr", reason="the tracr extra (tracr-pypi) is not installed")
    from hypotheses.tracr.compile import compile_program

    cache: dict[str, Any] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = compile_program(name)
        return cache[name]

    return get


@pytest.mark.parametrize("name", PROGRAMS)
def test_live_tracr(name: str, compiled) -> None:
    """Against live tracr: same weights as committed, same residual stream, same outputs, same SOps."""
    import jax
    import jax.numpy as jnp

    from hypotheses.tracr.compile import tracr_outputs
    from hypotheses.tracr.convert import json_value, tracr_to_bridge

    c = compiled(name)
    info = PROGRAM_INFO[name]
    fresh = tracr_to_bridge(c.assembled, c.program.label)
    committed = zoo.load_model(name)
    fs, cs = fresh.state_dict(), committed.state_dict()
    assert fs.keys() == cs.keys()
    for k in fs:
        assert torch.equal(fs[k], cs[k]), f"{name}: committed {k} differs from a fresh compile (rerun compile)"

    inputs = all_inputs(name)
    forward = jax.jit(c.assembled.forward)  # eager haiku is slow to warm up; same function
    want = tracr_outputs(c.assembled, inputs, forward=forward)
    want = [[json_value(v) for v in o] for o in want]
    got, _ = _model_outputs(name, [list(x) for x in inputs])
    _assert_same(name, got, want, inputs, info.categorical_output)
    _assert_same(name, zoo.load_expected(name)["outputs"], want, inputs, info.categorical_output)

    # residual stream, layer by layer, on the longest inputs
    long = [x for x in inputs if len(x) == info.max_seq_len][:64]
    ids = zoo.encode(name, long)
    out = forward(c.assembled.params, jnp.array(ids.numpy()))
    with torch.inference_mode():
        _, cache = fresh.run_with_cache(ids)
    n_layers = fresh.cfg.n_layers
    for l in range(n_layers):
        for j, hook in enumerate((f"blocks.{l}.hook_resid_mid", f"blocks.{l}.hook_resid_post")):
            tr = np.asarray(out.transformer_output.residuals[2 * l + j])
            np.testing.assert_allclose(cache[hook].numpy(), tr, atol=1e-4, rtol=1e-5, err_msg=f"{name} {hook}")

    # every intermediate SOp: plain-Python evaluator == tracr's RASP evaluator
    from tracr.compiler import nodes
    from tracr.rasp import rasp

    sops = {lab: c.graph.nodes[lab][nodes.EXPR] for lab in c.graph.nodes
            if isinstance(c.graph.nodes[lab][nodes.EXPR], rasp.SOp)}
    step = max(1, len(inputs) // 150)
    for x in inputs[::step]:
        mine = evaluate(name, x)
        assert set(mine) == set(sops)
        for lab, expr in sops.items():
            ref = rasp.evaluate(expr, list(x))
            assert mine[lab] == ref, f"{name} {lab} on {x}: {mine[lab]} != {ref}"
