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
    assert "fraction of loss recovered: 88.2% (95% CI 86.9% .. 89.5%; N=200, seeds=[0])" in res.output
    assert "loss: model 0.3112, scrubbed" in res.output
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


# -- usage mistakes: exit 2 with one line, before anything runs ---------------------------------
@pytest.fixture
def nothing_runs(monkeypatch):
    from scrub import suite

    def must_not_run(*a, **k):
        raise AssertionError("a case ran")

    monkeypatch.setattr(suite.Case, "run", must_not_run)


def _usage_line(res) -> str:
    assert res.exit_code == 2, res.output
    assert not isinstance(res.exception, AssertionError), res.exception
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, res.output
    return lines[0]


@pytest.mark.parametrize("content, match", [
    ("", "is empty; pass a file written by --json"),
    ("garbage", "is not JSON"),
    ("{}", "holds no case results"),
    ("null", "holds no case results"),
    ('{"cases": [5]}', "a case result is not an object with a 'name'"),
    ('{"cases": [{"name": "x", "score": "high"}]}', "score or interval is not a number"),
])
def test_a_bad_compare_file_is_refused_before_running(tmp_path, nothing_runs, content, match):
    bad = tmp_path / "old.json"
    bad.write_text(content)
    for cmd in (["run", "hypotheses.induction.hypotheses:naive"], ["suite", "hypotheses", "-k", "induction/naive"]):
        line = _usage_line(runner.invoke(app, [*cmd, "--compare", str(bad)]))
        assert line.startswith("Error: --compare: ") and match in line


@pytest.mark.parametrize("source, match", [
    ("def (:\n", "importing the suite .* failed: line 1: SyntaxError"),
    ("raise RuntimeError('boom')\n", "importing the suite .* failed: RuntimeError: boom"),
    ("CASES = 5\n", "CASES must be a list of scrub.suite.Case, got int"),
    ("import not_a_module_anywhere\n", "failed: ModuleNotFoundError: No module named 'not_a_module_anywhere'"),
])
def test_a_broken_suite_is_a_usage_error(tmp_path, nothing_runs, source, match):
    (tmp_path / "broken.py").write_text(source)
    line = _usage_line(runner.invoke(app, ["suite", str(tmp_path / "broken.py")]))
    assert re.search("Error: PATH: .*" + match, line), line
    line = _usage_line(runner.invoke(app, ["run", f"{tmp_path / 'broken.py'}:x"]))
    assert re.search("Error: TARGET: .*" + match.replace("must be a list of", "is a int, not a list of")
                     .replace(", got int", ""), line), line


@pytest.mark.parametrize("target, match", [
    (":naive", "expected MODULE:NAME with both parts"),
    ("hypotheses.induction.hypotheses:", "expected MODULE:NAME with both parts"),
    ("no_such_module_at_all:naive", "no suite at 'no_such_module_at_all'"),
    ("hypotheses.no_such_entry:naive", "no module named 'hypotheses.no_such_entry'"),
])
def test_a_bad_target_is_a_usage_error(nothing_runs, target, match):
    assert match in _usage_line(runner.invoke(app, ["run", target]))


@pytest.mark.parametrize("flag", ["--json", "--csv", "--html"])
def test_outputs_into_a_missing_directory_are_refused_before_running(tmp_path, nothing_runs, flag):
    line = _usage_line(runner.invoke(app, ["run", "hypotheses.induction.hypotheses:naive", flag,
                                           str(tmp_path / "missing" / "out.x")]))
    assert line == f"Error: {flag}: the directory {tmp_path / 'missing'} does not exist (create it first)"


@pytest.mark.parametrize("args", [["demo", "--n", "0"], ["demo", "--n", "1"], ["demo", "--n-seeds", "0"],
                                  ["demo", "--n-seeds", "1001"], ["demo", "--seed", "-1"],
                                  ["run", "hypotheses.induction.hypotheses:naive", "--n", "1"],
                                  ["run", "hypotheses.induction.hypotheses:naive", "--seeds", "0"],
                                  ["suite", "hypotheses", "--seed", "-1"]])
def test_out_of_range_numbers_are_usage_errors(nothing_runs, args):
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "Invalid value for" in res.output, res.output
