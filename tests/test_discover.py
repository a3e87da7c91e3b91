"""scrub.discover, the peer algorithms (ACDC, EAP) and saving hypotheses, on zoo models with known circuits."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

import scrub
from hypotheses import tracr as zoo
from hypotheses.tracr.hypotheses import metric, true_hypothesis
from scrub._attribution import edges_of
from scrub._discover import _reachable, _split, claimed_edges, hypothesis_from_edges, roc_auc
from scrub._experiment import hypothesis_fingerprint
from scrub.errors import HypothesisError, RunOptionsError


@pytest.fixture(scope="module")
def hist():
    model = zoo.load_model("hist")
    data = zoo.make_data("hist", 200, seed=0)
    graph = scrub.ModelGraph.from_model(model)
    return model, data, graph, claimed_edges(true_hypothesis("hist"), graph)


@pytest.fixture(scope="module")
def hist_found(hist):
    model, data, _, _ = hist
    return scrub.discover(model, data, metric=metric("hist"), seed=0, n_boot=200)


# -- hypotheses from edge sets: exact identities -------------------------------------------


def test_every_edge_is_the_model_and_no_edge_is_the_baseline(hist):
    model, data, graph, _ = hist
    full = hypothesis_from_edges(graph, edges_of(graph), name="all")
    none = hypothesis_from_edges(graph, [], name="none")
    r_full, r_none = scrub.run_many(model, [full, none], data, seed=0, n_boot=100)
    assert r_full.loss_scrubbed == pytest.approx(r_full.loss_model, abs=1e-9)
    assert r_none.loss_scrubbed == r_none.loss_baseline  # the open root is the fully scrubbed model
    assert none.root.open and not none.root.children


def test_claimed_edges_are_the_reachable_kept_edges():
    graph = scrub.ModelGraph.build(3, 2, attn_only=False)
    edges = edges_of(graph)
    rng = np.random.default_rng(0)
    for _ in range(30):
        kept = frozenset(e for e in edges if rng.random() < 0.3)
        h = hypothesis_from_edges(graph, kept)
        h.validate(graph)
        assert claimed_edges(h, graph) == set(_reachable(graph, kept))


def test_roc_auc_exact_values():
    assert roc_auc([True, False, True, False], [4, 1, 3, 2]) == 1.0
    assert roc_auc([True, False], [1, 2]) == 0.0
    assert roc_auc([True, False, True, False], [1, 1, 1, 1]) == 0.5
    assert np.isnan(roc_auc([True, True], [1, 2]))


# -- discovery against ground truth ---------------------------------------------------------


def test_hist_finds_the_true_circuit(hist, hist_found):
    _, _, graph, truth = hist
    found = hist_found
    assert found.edges == truth  # precision and recall 1
    assert claimed_edges(found.hypothesis, graph) == truth
    assert found.score >= 0.95 and found.held_out is not None and found.held_out >= 0.95
    labels = [(a, b, c) in truth for a, b, c in zip(found.ranking.up, found.ranking.node, found.ranking.port, strict=True)]
    assert roc_auc(labels, found.ranking.importance) == 1.0
    curve = found.curve
    assert list(curve.columns) == ["step", "stage", "n_edges", "n_components", "score", "lo", "hi"]
    assert (curve.score >= found.threshold).all() and (curve.lo <= curve.score).all()
    assert curve.n_edges.iloc[-1] == len(truth) and curve.n_edges.is_monotonic_decreasing
    # every scored hypothesis runs the model at least once over the data, and each run_many call adds
    # a clean run and a baseline run
    assert found.n_hypotheses > 0 and found.forward_passes >= found.n_hypotheses + 2
    assert found.forward_equivalents > 0


def test_discovery_is_deterministic_under_a_seed(hist, hist_found):
    model, data, _, _ = hist
    again = scrub.discover(model, data, metric=metric("hist"), seed=0, n_boot=200, controls=False)
    assert again.edges == hist_found.edges and again.score == hist_found.score
    assert again.held_out == hist_found.held_out and again.n_hypotheses == hist_found.n_hypotheses
    assert hypothesis_fingerprint(again.hypothesis) == hypothesis_fingerprint(hist_found.hypothesis)


def test_controls_are_reported_and_flag_by_their_rule(hist_found):
    c = hist_found.controls
    assert c is not None and list(c.control) == ["random weights", "shuffled labels"]
    ref = hist_found.held_out
    assert ref is not None
    for row in c.itertuples():
        if row.note:
            assert not row.close
            continue
        expect = row.held_out >= ref - 0.1 and row.n_edges <= len(hist_found.edges) and row.effect >= 0.5
        assert row.close == expect
    # shuffled answers: the model barely beats the baseline at them, so that control cannot flag the result
    shuffled = c[c.control == "shuffled labels"].iloc[0]
    assert shuffled.effect < 0.5 and not shuffled.close
    assert hist_found.flagged == bool(c.close.any())
    assert "control random weights" in hist_found.summary()


def test_sort_misses_only_an_edge_that_carries_a_constant(hist):
    """sort: 6 of the 7 true edges; the missed pos -> a1.0.q reads the position embedding, the same in
    every example of fixed-length data, so no resampling can show it matters (the true hypothesis
    scores the same without it). Recall 0.857 is below the 0.95 target for this reason."""
    model = zoo.load_model("sort")
    data = zoo.make_data("sort", 200, seed=0, target_pos="random")
    graph = scrub.ModelGraph.from_model(model)
    truth = claimed_edges(true_hypothesis("sort"), graph)
    found = scrub.discover(model, data, metric=metric("sort"), seed=0, n_boot=100, controls=False)
    assert found.edges <= truth and truth - found.edges == {("pos", "a1.0", "q")}
    search, _ = _split(data, 0.5, 0)
    with_it, without = scrub.run_many(
        model, [hypothesis_from_edges(graph, truth), hypothesis_from_edges(graph, truth - {("pos", "a1.0", "q")})],
        search, metric=metric("sort"), seed=0, n_boot=100)
    assert with_it.loss_recovered == without.loss_recovered == 1.0


def test_induction_components_find_the_heads_and_beat_naive():
    from hypotheses import induction as ind
    from hypotheses.induction.hypotheses import HEADS, naive

    model = ind.load_model()
    data = ind.make_data(200, seed=0)
    found = scrub.discover(model, data, granularity="component", seed=0, n_boot=200, controls=False)
    comps = {x for e in found.edges for x in e[:2]}
    assert set(HEADS["prev_token"]) | set(HEADS["induction"]) <= comps
    _, test = _split(data, 0.5, 0)
    naive_score = scrub.run(model, naive(), test, seed=0, n_boot=200).loss_recovered
    assert found.held_out is not None and found.held_out >= naive_score


def test_feature_synthesis_picks_the_coarsest_feature_that_keeps_the_score(hist):
    model, data, _, truth = hist
    found = scrub.discover(model, data, metric=metric("hist"), seed=0, n_boot=100, controls=False,
                           features=["length", "target"])
    agrees = {n.name: n.agree for n in found.hypothesis.nodes() if n is not found.hypothesis.root}
    # "length" is the same on every example (a constant: no node of the circuit keeps the score with
    # it); "target" (the output's value, 5 values) is coarser than Exact and keeps it at every node
    assert agrees == {"m0 (in)": "target", "a0.0 (in)": "target", "embed (q|k)": "target"}
    assert list(found.curve.stage).count("features") == 3
    assert found.edges == truth and found.score == 1.0


# -- peers ----------------------------------------------------------------------------------


def test_acdc_and_eap_on_hist(hist):
    model, data, graph, truth = hist
    a = scrub.acdc(model, data, metric=metric("hist"), tau=0.01)
    assert a.edges == truth
    tested = int(np.isfinite(a.ranking.score).sum())
    assert a.forward_passes == 4 + tested  # corrupted, clean, fully patched, unpatched, one per edge tested
    scores = scrub.edge_attribution(model, data, metric=metric("hist"))
    assert set(scores) == set(edges_of(graph))
    labels = [e in truth for e in scores]
    assert roc_auc(labels, [abs(s) for s in scores.values()]) == 1.0


def test_edge_attribution_is_the_first_order_effect_on_a_linear_path():
    """On the hist model's output edge, attribution equals the patched loss change to first order:
    check the sign and that the unused edges score exactly 0."""
    model = zoo.load_model("hist")
    data = zoo.make_data("hist", 100, seed=1)
    scores = scrub.edge_attribution(model, data, metric=metric("hist"))
    unused = [e for e, s in scores.items() if e[0] == "pos"]
    assert unused and all(scores[e] == 0.0 for e in unused)


# -- saving ---------------------------------------------------------------------------------


def test_python_and_json_round_trip(hist, hist_found, tmp_path, monkeypatch):
    model, data, _, _ = hist
    h = hist_found.hypothesis
    text = scrub.to_json(h)
    back = scrub.from_json(text)
    assert back.describe() == h.describe() and hypothesis_fingerprint(back) == hypothesis_fingerprint(h)
    (tmp_path / "found_circuit.py").write_text(scrub.to_python(h))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("found_circuit")
    try:
        rebuilt = module.hypothesis()
    finally:
        sys.modules.pop("found_circuit", None)
    assert hypothesis_fingerprint(rebuilt) == hypothesis_fingerprint(h)
    a, b = scrub.run_many(model, [h, rebuilt], data, metric=metric("hist"), seed=0, n_boot=100)
    assert a.loss_scrubbed == b.loss_scrubbed


def test_neuron_sets_and_subspaces_round_trip_exactly(hist, tmp_path, monkeypatch):
    """Neuron sets and subspaces are saved too (the basis in full): same fingerprint, same numbers."""
    model, data, _, _ = hist
    d = int(model.cfg.d_model)
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(d, 3)))[0]
    h = scrub.Hypothesis("variables")
    top = h.output().add("m0 some", model="m0", neurons=[0, 2, 5])
    top.add("a0 part", model="a0.0", subspace=scrub.Subspace(basis, name="s3"))
    back = scrub.from_json(scrub.to_json(h))
    assert hypothesis_fingerprint(back) == hypothesis_fingerprint(h)
    assert back.describe() == h.describe() and "neurons" in scrub.to_json(h)
    (tmp_path / "saved_variables.py").write_text(scrub.to_python(h))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        rebuilt = importlib.import_module("saved_variables").hypothesis()
    finally:
        sys.modules.pop("saved_variables", None)
    assert hypothesis_fingerprint(rebuilt) == hypothesis_fingerprint(h)
    a, b, c = scrub.run_many(model, [h, back, rebuilt], data, metric=metric("hist"), seed=0, n_boot=100)
    assert a.loss_scrubbed == b.loss_scrubbed == c.loss_scrubbed


def test_saving_functions_by_name_and_refusing_lambdas():
    from hypotheses.induction.hypotheses import previous_tokens

    h = scrub.Hypothesis("fns")
    node = h.output().add("prev", model="a0.2", agree=previous_tokens, positions=[1, 2])
    back = scrub.from_json(scrub.to_json(h))
    assert back._names["prev"].agree is previous_tokens and back._names["prev"].positions == [1, 2]
    assert "from hypotheses.induction.hypotheses import previous_tokens" in scrub.to_python(h)
    node.agree = lambda d: d.tokens
    with pytest.raises(HypothesisError, match="cannot be saved"):
        scrub.to_json(h)
    with pytest.raises(HypothesisError, match="cannot be saved"):
        scrub.to_python(h)
    with pytest.raises(HypothesisError, match="not JSON"):
        scrub.from_json("{")


def test_bad_arguments_are_refused(hist):
    model, data, _, _ = hist
    with pytest.raises(RunOptionsError, match="threshold"):
        scrub.discover(model, data, threshold=1.5)
    with pytest.raises(RunOptionsError, match="granularity must be one of"):
        scrub.discover(model, data, granularity="token")
    with pytest.raises(RunOptionsError, match="pre_rank"):
        scrub.discover(model, data, pre_rank="magic")
    with pytest.raises(HypothesisError, match="cannot be saved"):
        scrub.discover(model, data, features=[lambda d: d.tokens])


def test_cli_discover(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from scrub.cli import app

    (tmp_path / "hist_task.py").write_text(
        "from hypotheses import tracr as zoo\n"
        "def load_model():\n    return zoo.load_model('hist')\n"
        "def make_data(n, seed):\n    return zoo.make_data('hist', n, seed=seed)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "found.json"
    res = CliRunner().invoke(app, ["discover", "hist_task", "--n", "100", "--no-controls", "--json", str(out)])
    sys.modules.pop("hist_task", None)
    assert res.exit_code == 0, res.output
    assert "4 edges over" in res.output and out.exists()
    assert scrub.from_json(out.read_text()).leaves()


# -- position granularity ------------------------------------------------------------------


def test_claiming_an_edge_at_every_position_is_claiming_it(hist):
    """positions= listing every position claims the edge itself: the same score (to float rounding: the
    nodes are then computed, not run clean as leaves), while dropping one position changes it."""
    model, data, graph, truth = hist
    every = {e: range(data.seq_len) for e in truth}
    some = {e: range(data.seq_len - 1) for e in truth}  # the scored (last) position dropped: another hypothesis
    h_edges = hypothesis_from_edges(graph, truth, name="edges")
    h_every = hypothesis_from_edges(graph, truth, name="every", positions=every)
    h_some = hypothesis_from_edges(graph, truth, name="some", positions=some)
    assert {tuple(n.positions) for n in h_every.nodes() if n is not h_every.root} == {tuple(range(data.seq_len))}
    assert any(list(n.positions or []) == [0, 1, 2, 3, 4] for n in h_some.nodes())
    r_edges, r_every, r_some = scrub.run_many(model, [h_edges, h_every, h_some], data, metric=metric("hist"), seed=0,
                                              n_boot=100)
    assert r_every.loss_scrubbed == pytest.approx(r_edges.loss_scrubbed, rel=1e-6, abs=1e-9)
    assert r_edges.loss_recovered == pytest.approx(1.0) and r_some.loss_recovered < 0.5


@pytest.mark.parametrize(("target", "source"), [(5, 1), (4, 2), (2, 4)])
def test_position_granularity_finds_the_mirrored_token_in_reverse(target, source):
    """reverse at position t of a length-5 input is the token at 6 - t: the only edges kept are
    the output reading the copying head at t, and that head's values reading that one token."""
    model = zoo.load_model("reverse")
    data = zoo.make_data("reverse", 200, seed=0, target_pos=target)
    found = scrub.discover(model, data, metric=metric("reverse"), granularity="position", seed=0, n_boot=200,
                           controls=False)
    assert found.positions == {("a3.0", "out", "in"): (target,), ("embed", "a3.0", "v"): (source,)}
    assert found.edges == {("a3.0", "out", "in"), ("embed", "a3.0", "v")}
    assert found.score >= 0.95 and found.held_out is not None and found.held_out >= 0.95
    assert sorted(list(n.positions) for n in found.hypothesis.nodes() if n is not found.hypothesis.root) == sorted(
        [[target], [source]])
    assert set(found.curve.stage) >= {"position"}
    assert found.scored_positions == 1 and "positions are absolute" not in found.summary()


def test_position_granularity_says_when_the_scored_position_varies(hist):
    model, _, _, _ = hist
    data = zoo.make_data("hist", 200, seed=0, target_pos="random")
    found = scrub.discover(model, data, metric=metric("hist"), granularity="position", seed=0, n_boot=100,
                           controls=False)
    assert found.scored_positions == 5 and "scored position takes 5 values" in found.summary()


# -- neuron and subspace granularity --------------------------------------------------------


def test_a_sender_claimed_through_all_its_neurons_or_directions_is_claimed_whole(hist):
    model, data, graph, truth = hist
    d_mlp, d = int(model.cfg.d_mlp), int(model.cfg.d_model)
    whole = hypothesis_from_edges(graph, truth, name="whole")
    neurons = hypothesis_from_edges(graph, truth, name="neurons", neurons={"m0": range(d_mlp)})
    space = hypothesis_from_edges(graph, truth, name="space",
                                  subspaces={"a0.0": scrub.Subspace(np.linalg.qr(np.random.default_rng(0).normal(size=(d, d)))[0])})
    results = scrub.run_many(model, [whole, neurons, space], data, metric=metric("hist"), seed=0, n_boot=100)
    assert [r.loss_recovered for r in results] == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    assert any(n.neurons is not None for n in neurons.nodes()) and any(n.subspace is not None for n in space.nodes())


@pytest.mark.parametrize("granularity", ["neuron", "subspace"])
def test_variable_granularity_keeps_only_what_varies_and_clears_the_threshold(hist, granularity):
    """Neurons and output directions that never vary on the data change nothing when unclaimed (an
    exact no-op), so the search drops every one of them; what is left still clears the threshold."""
    from scrub._discover import _output_variance

    model, data, graph, truth = hist
    found = scrub.discover(model, data, metric=metric("hist"), granularity=granularity, seed=0, n_boot=200,
                           controls=False)
    assert found.edges == truth and found.score >= 0.95
    assert found.held_out is not None and found.held_out >= 0.9
    search, _ = _split(data, 0.5, 0)
    if granularity == "neuron":
        assert set(found.neurons) == {"m0"} and not found.subspaces
        var = _output_variance(model, graph, search, ["m0"], "neuron")["m0"]
        kept = list(found.neurons["m0"])
        assert (var[kept] > 1e-9).all() and len(kept) < int(model.cfg.d_mlp)
        assert set(np.flatnonzero(var > 1e-9)) >= set(kept)
    else:
        assert found.subspaces and not found.neurons
        for u, sub in found.subspaces.items():
            values, vectors = _output_variance(model, graph, search, [u], "subspace")[u]
            rank = int((values > 1e-9 * max(1.0, values[0])).sum())
            assert sub.dim <= rank  # never a direction the output does not use
            # the kept span lies in the output's span: projecting onto the used directions keeps it
            used = vectors[:, :rank]
            assert float((used @ (used.T @ sub.basis) - sub.basis).abs().max()) < 1e-6
    node_vars = [n for n in found.hypothesis.nodes() if n.neurons is not None or n.subspace is not None]
    assert node_vars and scrub.from_json(scrub.to_json(found.hypothesis)).describe() == found.hypothesis.describe()


def test_progress_bar_counts_the_hypotheses_scored(hist, capsys):
    model, data, _, _ = hist
    found = scrub.discover(model, data, metric=metric("hist"), seed=0, n_boot=100, controls=False, progress=True)
    err = capsys.readouterr().err
    assert "discovering 'discovered'" in err and f"{found.n_hypotheses}" in err and "stage" in err
    scrub.discover(model, data, metric=metric("hist"), seed=0, n_boot=100, controls=False, progress=False)
    assert "discovering" not in capsys.readouterr().err


def test_neuron_granularity_is_refused_before_any_search_on_a_model_without_neurons():
    from hypotheses import induction as ind

    model = ind.load_model()  # attention-only
    with pytest.raises(scrub.UnsupportedModelError, match="attention-only"):
        scrub.discover(model, ind.make_data(20, seed=0), granularity="neuron")
