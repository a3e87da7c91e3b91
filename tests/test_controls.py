"""Negative controls: random hypotheses of the same shape, identifiability, cancellation, report and CLI."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
import torch

import scrub
from hypotheses.paren import hypotheses as H
from hypotheses.paren import load_model, make_data, make_decorrelated_data
from scrub._controls import ShuffledFeature, percentile_interval_binomial, random_hypothesis
from scrub._experiment import hypothesis_fingerprint
from scrub._result import Result

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def claim_controls(model) -> scrub.Controls:
    return scrub.controls(model, H.claim_1(), make_data(100, seed=1234), n_random=6, seed=0)


# -- random hypotheses of the same shape ---------------------------------------------------------
def _shape(h: scrub.Hypothesis, graph: scrub.ModelGraph) -> list:
    def kinds(n):
        return sorted(m if m in ("embed", "pos", "out") else graph.kind(m) for m in n.model)

    return [(n.name, kinds(n), n.port, [c.name for c in n.children]) for n in h.nodes()]


@pytest.mark.parametrize("kind", ["nodes", "permuted", "random"])
def test_random_hypotheses_keep_the_shape_and_are_seeded(model, kind):
    graph = scrub.ModelGraph.from_model(model)
    h = H.claim_1_3()  # ports (k, v), per-position features and a node reattached under two parents
    rng = np.random.default_rng(5)
    one = [random_hypothesis(h, graph, rng, name=f"r{i}", features=kind, n_examples=50) for i in range(3)]
    again = random_hypothesis(h, graph, np.random.default_rng(5), name="r0", features=kind, n_examples=50)
    for r in one:
        r.validate(graph)
        assert _shape(r, graph) == _shape(h, graph)
    assert [n.model for n in again.nodes()] == [n.model for n in one[0].nodes()]
    # the reattached nodes stay one node (the DAG is kept, not copied)
    assert sum(n.name == "count (m0)" for n in one[0].nodes()) == 1
    own = sorted(map(str, (n.agree for n in h.nodes())))
    if kind == "permuted":  # the same features, reassigned
        assert sorted(map(str, (n.agree for n in one[0].nodes()))) == own
    if kind == "nodes":
        assert [n.agree for n in one[0].nodes()] == [n.agree for n in h.nodes()]
    if kind == "random":
        assert all(isinstance(n.agree, ShuffledFeature) for n in one[0].nodes() if n.name != "output")
    assert len({hypothesis_fingerprint(r) for r in one}) == 3  # three different placements


def test_shuffled_feature_keeps_the_classes():
    data = make_data(60, seed=3)
    f = ShuffledFeature("length", 60, seed=1)
    values = f(data)
    assert sorted(values) == sorted(data.columns["length"])
    assert not np.array_equal(values, data.columns["length"].to_numpy())


def test_binomial_interval():
    assert percentile_interval_binomial(6, 6) == (pytest.approx(0.025 ** (1 / 6), abs=1e-9), 1.0)
    lo, hi = percentile_interval_binomial(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-9)
    lo, hi = percentile_interval_binomial(5, 10)
    assert lo == pytest.approx(0.18709, abs=1e-4) and hi == pytest.approx(0.81291, abs=1e-4)


def test_controls_place_the_true_claim_above_random(claim_controls):
    c = claim_controls
    table = c.table()
    assert list(table["kind"]) == ["hypothesis"] + ["permuted", "random"] * 3
    assert table["score"].iloc[0] == pytest.approx(c.result.loss_recovered)
    assert c.result.loss_recovered > 0.95
    assert (c.random["score"] < c.result.loss_recovered).all()
    assert c.percentile == 1.0 and c.percentile_ci[0] == pytest.approx(0.025 ** (1 / 6), abs=1e-6)
    assert c.p_value == pytest.approx(1 / 7)
    # random features break the claim: each scores far below the claim
    assert (c.random.loc[c.random["kind"] == "random", "score"] < 0.5).all()
    assert "percentile among them 100.0%" in str(c)
    assert not c.cancellation.flag


def test_controls_are_deterministic_under_the_seed(model, claim_controls):
    again = scrub.controls(model, H.claim_1(), make_data(100, seed=1234), n_random=6, seed=0)
    pd.testing.assert_frame_equal(again.table(), claim_controls.table())


def test_controls_refuse_bad_arguments(model):
    data = make_data(20, seed=0)
    with pytest.raises(scrub.RunOptionsError, match="kinds"):
        scrub.controls(model, H.claim_1(), data, kinds=["shuffled"])
    with pytest.raises(scrub.RunOptionsError, match="n_random"):
        scrub.controls(model, H.claim_1(), data, n_random=0)
    with pytest.raises(scrub.HypothesisError):
        scrub.controls(model, H.claim_1, data)


# -- identifiability ---------------------------------------------------------------------------------
def _toy(a, b, **more) -> scrub.Dataset:
    n = len(a)
    return scrub.Dataset(torch.zeros(n, 2, dtype=torch.long), columns={"a": a, "b": b, **more})


def _pair(table: pd.DataFrame, a: str, b: str) -> pd.Series:
    rows = table[((table["a"] == a) & (table["b"] == b)) | ((table["a"] == b) & (table["b"] == a))]
    assert len(rows) == 1, (a, b, table[["a", "b"]])
    return rows.iloc[0]


def _hyp(*features) -> scrub.Hypothesis:
    h = scrub.Hypothesis("toy")
    for i, f in enumerate(features):
        h.output().add(f"n{i}", model=f"a0.{i}", agree=f)
    return h


def test_identifiability_exact_figures():
    # independent: P(b agrees | a agrees) = base rate = 1/2; identical: 1 both ways, nothing separates them
    data = _toy([0, 0, 1, 1], [0, 1, 0, 1], c=[5, 5, 7, 7])
    table = scrub.identifiability(_hyp("a", "b"), data)
    ab = _pair(table, "a", "b")
    assert (ab.p_b_given_a, ab.p_b, ab.p_a_given_b, ab.p_a) == (0.5, 0.5, 0.5, 0.5)
    assert ab.cramers_v == 0.0 and ab.flag == ""
    ac = _pair(table, "a", "c")
    assert ac.b_is_column and (ac.p_b_given_a, ac.p_a_given_b, ac.cramers_v) == (1.0, 1.0, 1.0)
    assert ac.flag == "indistinguishable" and ac.separating == 0 and "no example" in ac.advice
    # a 2x2 table 3:1 / 1:3 over 8 examples: P(b | a) = (3/4)^2 + (1/4)^2 = 5/8; phi^2 = 1/4, and
    # bias-corrected (Bergsma): (1/4 - 1/7) / (1 - 1/7) = 1/8, so V = sqrt(1/8)
    a = [0] * 4 + [1] * 4
    b = [0, 0, 0, 1, 1, 1, 1, 0]
    row = _pair(scrub.identifiability(_hyp("a", "b"), _toy(a, b)), "a", "b")
    assert row.p_b_given_a == pytest.approx(5 / 8) and row.p_b == pytest.approx(0.5)
    assert row.cramers_v == pytest.approx(np.sqrt(1 / 8)) and row.flag == "correlated" and row.separating == 8


def test_identifiability_flags_the_paren_swap_and_decorrelated_data_clears_it():
    """The known case: count and horizon tests are correlated on make_data, independent on the decorrelated data."""
    table = scrub.identifiability(H.false_swapped(), make_data(500, seed=1234), columns=False)
    row = _pair(table, "horizon_test", "count_test")
    assert row.flag == "correlated"
    assert row.cramers_v == pytest.approx(0.3079, abs=1e-3)
    cond = row.p_b_given_a if row.a == "count_test" else row.p_a_given_b
    assert cond == pytest.approx(0.5753, abs=1e-3)  # P(agree on horizon | agree on count), base 0.530
    dec = scrub.identifiability(H.false_swapped(), make_decorrelated_data(500, seed=1234), columns=False)
    row = _pair(dec, "horizon_test", "count_test")
    assert row.flag == "" and row.cramers_v == 0.0
    assert row.p_b_given_a == pytest.approx(row.p_b) == pytest.approx(0.5)


def test_decorrelated_data_is_balanced_by_cell():
    data = make_decorrelated_data(402, seed=7)
    cells = pd.crosstab(data.columns["count_test"], data.columns["horizon_test"]).to_numpy()
    assert sorted(cells.ravel().tolist()) == [100, 100, 101, 101]
    assert torch.equal(data.labels, torch.tensor(data.columns["balanced"].to_numpy(), dtype=torch.long))
    assert (data.columns["balanced"] == (data.columns["count_test"] & data.columns["horizon_test"])).all()


# -- cancellation ------------------------------------------------------------------------------------
def _synthetic(model: np.ndarray, scrubbed: np.ndarray, baseline: np.ndarray) -> Result:
    n = len(model)
    table = pd.DataFrame({"example": np.arange(n), "seed": 0, "loss_model": model, "loss_scrubbed": scrubbed,
                          "loss_baseline": baseline})
    lm, ls, lb = float(model.mean()), float(scrubbed.mean()), float(baseline.mean())
    return Result("synthetic", "fully scrubbed", "loss", lm, ls, lb, (lb - ls) / (lb - lm), (0.0, 1.0), "none", n,
                  [0], {}, table)


def test_cancellation_flags_errors_that_cancel():
    n = 100
    model, baseline = np.full(n, 1.0), np.full(n, 3.0)  # gap 2: "large" is above 0.5 x 2 = 1
    swing = np.where(np.arange(n) % 2 == 0, 1.5, -0.9)  # +1.5 on half, -0.9 on the other half
    r = _synthetic(model, model + swing, baseline)
    assert r.loss_recovered == pytest.approx(1 - 0.3 / 2)  # 85%: looks good
    c = scrub.cancellation(r)
    assert (c.gap, c.fraction_worse, c.fraction_better) == (2.0, 0.5, 0.0)
    assert not c.flag  # -0.9 is not large (0.45 of the gap)
    assert c.hidden == pytest.approx((1.2 - 0.3) / 2)
    c = scrub.cancellation(r, large=0.4)
    assert c.flag and c.fraction_affected == 1.0
    swing = np.where(np.arange(n) % 2 == 0, 2.0, -2.0)
    c = scrub.cancellation(_synthetic(model, model + swing, baseline))
    assert c.flag and c.hidden == pytest.approx(1.0) and "CANCELLATION" in c.describe()
    c = scrub.cancellation(_synthetic(model, model + 0.2, baseline))  # one sign only: nothing hidden
    assert not c.flag and c.hidden == 0.0 and c.fraction_affected == 0.0
    with pytest.raises(scrub.RunOptionsError, match="large"):
        scrub.cancellation(r, large=0)


# -- report and CLI ----------------------------------------------------------------------------------
def test_report_has_a_controls_section(claim_controls):
    page = scrub.report.render_html(claim_controls.result, controls=claim_controls)
    assert "<section id='controls'>" in page
    strips = [ET.fromstring(s) for s in re.findall(r"<svg\b[^>]*class='controls-strip'.*?</svg>", page, flags=re.S)]
    assert len(strips) == 1
    assert len(list(strips[0].iter("{http://www.w3.org/2000/svg}circle"))) == 6
    assert "data-verdict='ok'" in page and "data-flag='false'" in page
    assert "<section id='controls'>" not in scrub.report.render_html(claim_controls.result)


def test_cli_controls(tmp_path):
    from typer.testing import CliRunner

    from scrub.cli import app

    out = tmp_path / "c.json"
    res = CliRunner().invoke(app, ["controls", "hypotheses:paren/claim_1", "--n", "40", "--n-random", "2",
                                   "--json", str(out), "--html", str(tmp_path / "c.html")])
    assert res.exit_code == 0, res.output
    assert "negative controls for 'paren: claim 1'" in res.output
    doc = json.loads(out.read_text())
    assert len(doc["random"]) == 2 and doc["percentile_ci"][1] == 1.0 and "cancellation" in doc
    assert "<section id='controls'>" in (tmp_path / "c.html").read_text()
    bad = CliRunner().invoke(app, ["controls", "hypotheses:paren/claim_1", "--kind", "shuffled"])
    assert bad.exit_code == 2


def test_siblings_may_share_model_nodes_on_different_ports():
    """The refined induction hypothesis claims the same layer-0 heads into q, k and v: a placement exists."""
    from hypotheses.induction.hypotheses import refined

    graph = scrub.ModelGraph.build(2, 4, attn_only=True)
    h = refined()
    r = random_hypothesis(h, graph, np.random.default_rng(0), name="r", features="nodes")
    r.validate(graph)
    assert _shape(r, graph) == _shape(h, graph)
    assert sorted(r.nodes()[1].model) == ["a1.0", "a1.1", "a1.2", "a1.3"]  # the only heads above layer 0
    tiny = scrub.ModelGraph.build(1, 4, attn_only=True)  # the hypothesis does not fit this graph
    with pytest.raises(scrub.HypothesisError, match=r"a1\.0"):
        random_hypothesis(h, tiny, np.random.default_rng(0), name="r", features="nodes")
