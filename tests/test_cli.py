"""The ``scrub`` command line: ``scrub suite`` on a tiny suite of the shipped induction model, ``scrub run``."""

import json
import re
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from scrub.cli import app

torch.set_num_threads(1)

runner = CliRunner()

SUITE = textwrap.dedent("""
    from hypotheses.induction import load_model, make_data
    from hypotheses.induction.hypotheses import naive
    from scrub.suite import Case

    CASES = [
        Case("induction/naive", model=load_model, data=make_data, hypothesis=naive,
             expected=(0.80, 0.95), n=200, n_seeds=1),
        # deliberately broken: the expected range excludes the true score (88.2% at N=200, seed 0)
        Case("induction/broken", model=load_model, data=make_data, hypothesis=naive,
             expected=(0.0, 0.5), n=200, n_seeds=1, kind="false"),
    ]
""")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    d = tmp_path_factory.mktemp("suite")
    (d / "tiny_suite.py").write_text(SUITE)
    return d


@pytest.fixture(scope="module")
def first_run(suite):
    """`scrub suite` on both cases, writing out.json and out.csv (shared by the tests below)."""
    return runner.invoke(app, ["suite", str(suite / "tiny_suite.py"), "--json", str(suite / "out.json"),
                               "--csv", str(suite / "out.csv")])


def test_suite_exits_nonzero_when_a_case_leaves_its_range(suite, first_run):
    res = first_run
    assert res.exit_code == 1, res.output
    out = res.output
    assert "induction/naive" in out and "induction/broken" in out
    assert "88.2%" in out and "86.9% .. 89.5%" in out  # measured at N=200, seed 0
    assert "FAIL induction/broken: score 88.2% is above the expected range 0.0% .. 50.0%" in out
    assert "2 case(s): 1 pass, 1 fail" in out
    doc = json.loads((suite / "out.json").read_text())
    assert [(r["name"], r["status"]) for r in doc["cases"]] == [("induction/naive", "pass"), ("induction/broken", "fail")]
    assert doc["cases"][0]["score"] == pytest.approx(0.8822, abs=1e-4)
    assert (suite / "out.csv").read_text().startswith("name,kind,status,score,ci_lo,ci_hi")


def test_suite_selects_with_k_and_compares(suite, first_run):
    old = json.loads((suite / "out.json").read_text())
    res = runner.invoke(app, ["suite", str(suite / "tiny_suite.py"), "-k", "naive", "--compare", str(suite / "out.json")])
    assert res.exit_code == 0, res.output
    assert "induction/broken" not in res.output and "1 case(s): 1 pass" in res.output
    assert re.search(r" 88\.2% +\+0\.0% ", res.output), res.output  # columns old, change
    old["cases"][0]["score"] -= 0.05  # an old run 5 points lower: far outside both intervals (+-1.3 points)
    (suite / "old.json").write_text(json.dumps(old))
    res = runner.invoke(app, ["suite", str(suite / "tiny_suite.py"), "-k", "naive", "--compare", str(suite / "old.json")])
    assert res.exit_code == 1, res.output
    assert "+5.0% moved" in res.output and "1 moved" in res.output


def test_suite_skips_are_listed_once_and_do_not_fail(tmp_path):
    (tmp_path / "skips.py").write_text(SUITE + textwrap.dedent("""
        for c in CASES:
            c.skip = lambda: "weights are not here. Looked at:\\n  - /nowhere"
    """))
    res = runner.invoke(app, ["suite", str(tmp_path / "skips.py")])
    assert res.exit_code == 0, res.output
    assert "SKIP 2 case(s) (induction/naive, ...): weights are not here.\n" in res.output
    assert "2 case(s): 2 skip" in res.output and "/nowhere" not in res.output


def test_suite_errors(suite, tmp_path):
    res = runner.invoke(app, ["suite", str(suite / "tiny_suite.py"), "-k", "nothing-matches"])
    assert res.exit_code == 1 and "no cases" in res.output
    (tmp_path / "empty.py").write_text("X = 1\n")
    res = runner.invoke(app, ["suite", str(tmp_path / "empty.py")])
    assert res.exit_code == 2 and "defines no CASES" in res.output


def test_run_scores_a_hypothesis_function(tmp_path):
    res = runner.invoke(app, ["run", "hypotheses.induction.hypotheses:naive", "--n", "200", "--seeds", "1",
                              "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "fraction recovered:   88.2%  (95% CI 86.9% .. 89.5%)" in res.output
    assert "loss, model:          0.3112" in res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["cases"][0]["name"] == "hypotheses.induction.hypotheses:naive" and doc["cases"][0]["n"] == 200
    res = runner.invoke(app, ["run", "hypotheses.induction.hypotheses:no_such_thing"])
    assert res.exit_code == 2 and "no attribute" in res.output and "no_such_thing" in res.output


def test_run_writes_the_html_report(tmp_path):
    pytest.importorskip("scrub.report")
    path = tmp_path / "r.html"
    res = runner.invoke(app, ["run", "hypotheses.induction.hypotheses:naive", "--n", "200", "--seeds", "1",
                              "--no-breakdown", "--html", str(path)])
    assert res.exit_code == 0, res.output
    assert path.read_text().lstrip().lower().startswith("<!doctype html") and "induction: naive" in path.read_text()
