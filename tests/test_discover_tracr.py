"""scrub.discover against the true hypothesis of tracr programs compiled only for this test.

The three programs of ``hypotheses.tracr.extra`` read only tokens and what is computed from
them, so every edge of their true hypothesis carries a value that varies with the input (the
zoo's programs also read positions or the length, constant on fixed-length data, which caps
recall). Their weights, specs and data are committed in ``tests/data/tracr_extra`` (rebuilt by
``python -m hypotheses.tracr.extra`` with the ``tracr`` extra); nothing here needs tracr.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import scrub
from hypotheses.tracr.extra import EXTRA, N, load
from hypotheses.tracr.hypotheses import metric, true_hypothesis
from scrub._discover import _split, claimed_edges, hypothesis_from_edges, roc_auc

ROOT = Path(__file__).resolve().parents[1]

# The true edges (up, node, port) of each program, from tracr's allocation.
TRUTH = {
    "map_chain": {("embed", "m0", "in"), ("m0", "m1", "in"), ("m1", "m2", "in"), ("embed", "m2", "in"),
                  ("m2", "out", "in")},
    "frac_smaller": {("embed", "m0", "in"), ("embed", "a1.0", "q"), ("embed", "a1.0", "k"), ("m0", "a1.0", "v"),
                     ("a1.0", "out", "in")},
    "hist_parity": {("embed", "a0.0", "q"), ("embed", "a0.0", "k"), ("a0.0", "m0", "in"), ("m0", "m1", "in"),
                    ("m1", "out", "in")},
}


@pytest.fixture(scope="module", params=list(EXTRA))
def program(request):
    name = request.param
    model, spec, data = load(name)
    graph = scrub.ModelGraph.from_model(model)
    return name, model, spec, data, graph, claimed_edges(true_hypothesis(spec), graph)


def test_committed_model_computes_the_program(program):
    """The committed model reproduces the committed RASP outputs; the true hypothesis recovers all of it."""
    name, model, spec, data, _, truth = program
    assert len(data) == N and truth == TRUTH[name]
    with torch.no_grad():
        logits = model(data.tokens)[torch.arange(len(data)), data.target_pos]
    if spec["categorical_output"]:
        assert data.labels is not None and (logits.argmax(-1) == data.labels).all()
        assert data.labels.unique().numel() == len(spec["output_values"])  # every output value occurs
    else:
        target = torch.tensor([float(v) for v in data.columns["target"]])
        assert torch.allclose(logits[:, 0].double(), target.double(), atol=1e-4)
    r = scrub.run(model, true_hypothesis(spec), data, metric=metric(spec), seed=0, n_boot=100)
    assert r.loss_recovered == pytest.approx(1.0, abs=1e-6)
    assert r.loss_baseline - r.loss_model > 0.1


def test_every_true_edge_is_needed(program):
    """Removing any one true edge drops the score far below the 0.95 threshold: recall is measurable."""
    _, model, spec, data, graph, truth = program
    search, _ = _split(data, 0.5, 0)
    edges = sorted(truth)
    hyps = [hypothesis_from_edges(graph, frozenset(truth - {e})) for e in edges]
    results = scrub.run_many(model, hyps, search, metric=metric(spec), seed=0, n_boot=100)
    assert max(r.loss_recovered for r in results) < 0.5


def test_discover_finds_the_true_circuit(program):
    """Precision and recall >= 0.95 (measured: 1 and 1 on all three), ROC AUC of the ranking 1."""
    _, model, spec, data, _, truth = program
    found = scrub.discover(model, data, metric=metric(spec), seed=0, n_boot=200, controls=False)
    tp = len(found.edges & truth)
    precision, recall = tp / max(1, len(found.edges)), tp / len(truth)
    assert precision >= 0.95 and recall >= 0.95
    assert found.edges == truth
    assert found.held_out is not None and found.held_out >= 0.95
    ranking = found.ranking
    labels = [(a, b, c) in truth for a, b, c in zip(ranking.up, ranking.node, ranking.port, strict=True)]
    assert sum(labels) == len(truth) and len(labels) > 2 * len(truth)  # the ranking holds every candidate
    assert roc_auc(labels, ranking.importance.to_numpy()) == 1.0


def test_loader_needs_no_tracr():
    """load() works with tracr, jax and haiku unimportable (as in CI, where they are not installed)."""
    code = (
        "import sys\n"
        "for m in ('tracr', 'jax', 'haiku', 'jaxlib'):\n"
        "    sys.modules[m] = None\n"
        "from hypotheses.tracr.extra import EXTRA, load\n"
        "from hypotheses.tracr.hypotheses import true_hypothesis\n"
        "for name in EXTRA:\n"
        "    model, spec, data = load(name)\n"
        "    true_hypothesis(spec)\n"
        "print('ok', sorted(EXTRA))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"ok {sorted(EXTRA)}"


def test_unknown_program_is_refused():
    with pytest.raises(KeyError, match="unknown extra tracr program"):
        load("nope")
