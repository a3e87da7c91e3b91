"""Suites: loading CASES from files, packages and modules; selecting; running; comparing runs."""

import json
import math
import textwrap

import pandas as pd
import pytest
import torch

import scrub
from scrub.suite import (
    Case, SuiteError, collect, compare, find_case, load_suite, read_results, run_suite, select,
)
from tests.conftest import small_model

torch.set_num_threads(1)


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return scrub.Dataset(torch.randint(0, 7, (n, 6), generator=g), labels=torch.randint(0, 7, (n,), generator=g))


def _model():
    return small_model(attn_only=False)


def _broken():
    raise RuntimeError("hypothesis builder is broken")


def _case(name, expected, **kw):
    # the fully scrubbed hypothesis scores exactly 0: the baseline is sampled with the same seed
    return Case(name, model=_model, data=_data, hypothesis=scrub.fully_scrubbed, expected=expected, n=32, n_seeds=1, **kw)


def test_run_suite_statuses_and_table():
    cases = [
        _case("ok", (-0.01, 0.01)),
        _case("out of range", (0.5, 1.0), kind="false"),
        _case("skipped", (0, 1), skip=lambda: "weights not available offline"),
        Case("raises", model=_model, data=_data, hypothesis=_broken, expected=(0, 1), n=32),
    ]
    seen = []
    out = run_suite(cases, on_start=lambda c: seen.append(c.name))
    assert seen == [c.name for c in cases]
    assert [c.status for c in out.cases] == ["pass", "fail", "skip", "error"]
    assert not out.ok and [c.case.name for c in out.failed] == ["out of range", "raises"]
    t = out.table()
    assert t.loc[0, "score"] == 0.0 and t.loc[0, "ci_lo"] == t.loc[0, "ci_hi"] == 0.0
    assert t.loc[1, "message"] == "score 0.0% is below the expected range 50.0% .. 100.0%"
    assert t.loc[2, "message"] == "weights not available offline" and math.isnan(t.loc[2, "score"])
    assert t.loc[3, "message"] == "RuntimeError: hypothesis builder is broken"
    assert list(t["n"]) == [32, 32, 32, 32]
    assert run_suite(cases[:1] + cases[2:3]).ok  # a skip is not a failure
    over = run_suite(cases[:1], n=16, n_seeds=2, seed=5).cases[0]
    assert (over.n, over.n_seeds, over.seed) == (16, 2, 5)
    assert over.result.n_examples == 16 and over.result.seeds == [5, 6]


def test_json_round_trip_and_csv(tmp_path):
    out = run_suite([_case("ok", (-0.01, 0.01)), _case("skipped", (0, 1), skip=lambda: "no")])
    doc = json.loads(out.to_json(tmp_path / "r.json").read_text())
    assert [r["name"] for r in doc["cases"]] == ["ok", "skipped"]
    assert doc["cases"][1]["score"] is None and doc["cases"][0]["record"]["seed"] == 0
    back = read_results(tmp_path / "r.json")
    pd.testing.assert_frame_equal(back[["name", "score", "ci_lo", "ci_hi"]], out.table()[["name", "score", "ci_lo", "ci_hi"]])
    csv = pd.read_csv(out.to_csv(tmp_path / "r.csv"))
    assert list(csv["status"]) == ["pass", "skip"]


def test_compare_flags_moves_beyond_the_combined_interval():
    def table(rows):
        return pd.DataFrame(rows, columns=["name", "score", "ci_lo", "ci_hi"])

    old = table([("a", 0.80, 0.78, 0.82), ("b", 0.50, 0.47, 0.53), ("gone", 0.1, 0.0, 0.2)])
    new = table([("a", 0.83, 0.81, 0.85), ("b", 0.45, 0.42, 0.48), ("new", 0.3, 0.2, 0.4)])
    d = compare(new, old).set_index("name")
    # a: moved 0.03, allowed hypot(0.02, 0.02) = 0.0283; b: moved 0.05, allowed hypot(0.03, 0.03) = 0.0424
    assert d.loc["a", "allowed"] == pytest.approx(math.hypot(0.02, 0.02))
    assert d.loc["a", "delta"] == pytest.approx(0.03) and d.loc["a", "moved"]
    assert d.loc["b", "delta"] == pytest.approx(-0.05) and d.loc["b", "moved"]
    new.loc[0, "score"] = 0.82  # 0.02 < 0.0283
    assert not compare(new, old).set_index("name").loc["a", "moved"]
    assert d.loc["new", "note"] == "new" and d.loc["gone", "note"] == "gone"
    assert not d.loc["new", "moved"] and not d.loc["gone", "moved"]


def test_load_suite_from_file_package_and_module(tmp_path, monkeypatch):
    body = textwrap.dedent("""
        from scrub.suite import Case
        from tests.test_suite import _case
        CASES = [_case("x/one", (0, 1), tags=("fast",)), _case("x/two", (0, 1), kind="false"), _case("y", (0, 1))]
    """)
    (tmp_path / "flat.py").write_text(body)
    (tmp_path / "pkgsuite").mkdir()
    (tmp_path / "pkgsuite" / "__init__.py").write_text(body)
    assert [c.name for c in load_suite(tmp_path / "flat.py")] == ["x/one", "x/two", "y"]
    assert [c.name for c in load_suite(str(tmp_path / "pkgsuite"))] == ["x/one", "x/two", "y"]
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = load_suite("flat")
    assert [c.name for c in select(cases, "x/")] == ["x/one", "x/two"]
    assert [c.name for c in select(cases, "X/*O")] == ["x/two"]  # glob on the name, case-insensitive
    assert [c.name for c in select(cases, "fast")] == ["x/one"]  # a tag
    assert [c.name for c in select(cases, "false")] == ["x/two"]  # the kind
    assert [c.name for c in select(cases, ["y", "fast"])] == ["x/one", "y"]
    assert [c.name for c in select(cases, "not x/")] == ["y"]
    (tmp_path / "dup.py").write_text(body.replace('"y"', '"x/one"'))
    with pytest.raises(SuiteError, match="two cases are named 'x/one'"):
        load_suite(tmp_path / "dup.py")
    (tmp_path / "nocases.py").write_text("X = 1\n")
    with pytest.raises(SuiteError, match="defines no CASES"):
        load_suite(tmp_path / "nocases.py")
    with pytest.raises(SuiteError, match="no suite at"):
        load_suite("no_such_suite_module_here")


def test_collect_skips_entries_without_a_suite_and_surfaces_broken_ones(tmp_path, monkeypatch):
    zoo = tmp_path / "zoo_for_test"
    for entry in ("alpha", "beta", "gamma"):
        (zoo / entry).mkdir(parents=True)
        (zoo / entry / "__init__.py").write_text("")
    (zoo / "__init__.py").write_text("")
    (zoo / "alpha" / "suite.py").write_text("from tests.test_suite import _case\nCASES = [_case('alpha/a', (0, 1))]\n")
    (zoo / "gamma" / "suite.py").write_text("from tests.test_suite import _case\nCASES = [_case('gamma/g', (0, 1))]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [c.name for c in collect("zoo_for_test")] == ["alpha/a", "gamma/g"]  # beta has no suite: skipped
    (zoo / "beta" / "suite.py").write_text("import not_a_module_anywhere\nCASES = []\n")
    with pytest.raises(ModuleNotFoundError, match="not_a_module_anywhere"):
        collect("zoo_for_test")


def test_the_zoo_is_a_suite():
    import hypotheses

    cases = load_suite("hypotheses")
    assert cases is hypotheses.CASES or cases == hypotheses.CASES
    assert all(isinstance(c, Case) for c in cases)
    assert len({c.name for c in cases}) == len(cases)


def test_find_case():
    from hypotheses import induction
    from hypotheses.induction.hypotheses import naive

    case = find_case("hypotheses.induction.hypotheses:naive")
    assert case.model is induction.load_model and case.data is induction.make_data
    assert case.hypothesis is naive and case.expected == (-math.inf, math.inf)
    # (pytest imports this file as `test_suite`; find_case imports it again as `tests.test_suite`)
    assert find_case("tests.test_suite:_CASE_OBJ").name == "obj"
    assert find_case("tests.test_suite:named/case").name == "named/case"  # a case name in CASES
    with pytest.raises(SuiteError, match="no load_model"):
        find_case("tests.test_suite:_broken")
    with pytest.raises(SuiteError, match="no attribute 'nothing'.*named/case"):
        find_case("tests.test_suite:nothing")
    with pytest.raises(SuiteError, match="MODULE:NAME"):
        find_case("tests.test_suite")


def test_case_checks_its_range_and_kind():
    with pytest.raises(ValueError, match="low > high"):
        _case("bad", (0.9, 0.1))
    with pytest.raises(ValueError, match="kind"):
        _case("bad", (0, 1), kind="maybe")
    c = _case("c", (0.2, 0.4))
    assert c.contains(0.2) and c.contains(0.4) and not c.contains(0.41)


_CASE_OBJ = _case("obj", (0, 1))
_CASES = [_case("named/case", (0, 1))]
CASES = _CASES


def test_a_case_can_be_scored_under_mean_ablation():
    def claim():
        h = scrub.Hypothesis("a1.0 and below")
        h.output().add("head", model="a1.0")
        return h

    base = Case("ablated", model=_model, data=_data, hypothesis=claim, expected=(-10, 10), n=32, n_seeds=1)
    mean = Case("ablated", model=_model, data=_data, hypothesis=claim, expected=(-10, 10), n=32, n_seeds=1,
                ablation=scrub.Mean())
    r_mean, r_base = mean.run(), base.run()
    direct = scrub.run(_model(), claim(), _data(32, mean.data_seed), seed=0, n_seeds=1, ablation=scrub.Mean())
    assert r_mean.loss_recovered == direct.loss_recovered != r_base.loss_recovered
    assert r_mean.record["ablation"] == "mean" and "ablation" not in r_base.record
    with pytest.raises(SuiteError, match=r"'bad'.*ablation must be"):
        Case("bad", model=_model, data=_data, hypothesis=claim, expected=(0, 1), ablation="median")
