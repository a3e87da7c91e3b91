"""The induction entry of the zoo: every case of its suite keeps its expected range, the refined
hypothesis reaches 95%, the false ones stay at or below 50%, and the heads they name are still the
model's (located from attention patterns on the committed weights)."""

import pytest
import torch

import scrub
from hypotheses.induction import load_model, locate_heads, make_data
from hypotheses.induction.hypotheses import HEADS, SELF_HEADS, false_wrong_prev_head, path_v
from hypotheses.induction.suite import CASES

_CACHE: dict = {}
_RESULTS: dict[str, scrub.Result] = {}


def _result(case) -> scrub.Result:
    """Each case runs once per session, at its own n, seeds and data seed."""
    if case.name not in _RESULTS:
        _RESULTS[case.name] = case.run(cache=_CACHE)
    return _RESULTS[case.name]


def _ids(cases):
    return [c.name for c in cases]


def test_suite_covers_the_ladder():
    kinds = {c.name.split("/", 1)[1]: c.kind for c in CASES}
    assert kinds["naive"] == "true" and kinds["refined"] == "refined"
    assert {k for k, v in kinds.items() if v == "path"} >= {"path_q", "path_k", "path_v"}
    assert {k for k, v in kinds.items() if v == "false"} == {"false_wrong_prev_head", "false_qk_swapped"}
    assert len(kinds) == len(CASES)  # names unique


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_case_keeps_its_expected_range(case):
    r = _result(case)
    assert r.loss_model < r.loss_baseline
    assert case.contains(r.loss_recovered), (case.name, r.loss_recovered, case.expected)
    lo, hi = r.ci
    assert lo <= r.loss_recovered <= hi and hi - lo < 0.1, (case.name, r.ci)


@pytest.mark.parametrize("case", [c for c in CASES if c.kind == "refined"], ids=_ids([c for c in CASES if c.kind == "refined"]))
def test_refined_reaches_95_percent(case):
    assert _result(case).loss_recovered >= 0.95, case.name


@pytest.mark.parametrize("case", [c for c in CASES if c.kind == "false"], ids=_ids([c for c in CASES if c.kind == "false"]))
def test_false_hypotheses_stay_at_or_below_half(case):
    assert _result(case).loss_recovered <= 0.50, case.name


def test_refined_beats_naive_beats_every_false_one():
    score = {c.name: _result(c).loss_recovered for c in CASES}
    assert score["induction/refined"] > score["induction/naive"] + 0.05
    assert score["induction/naive"] > max(v for c, v in score.items() if "false" in c) + 0.3


def test_located_heads_are_the_named_ones():
    model = load_model()
    found = locate_heads(model)
    assert sorted(found["prev_token"]) == sorted(HEADS["prev_token"])
    assert sorted(found["induction"]) == sorted(HEADS["induction"])
    # the other layer-0 heads attend mostly to their own position (what the refined hypothesis uses)
    assert sorted(SELF_HEADS + HEADS["prev_token"]) == [f"a0.{h}" for h in range(model.cfg.n_heads)]
    data = make_data(200, seed=0)
    _, cache = model.run_with_cache(data.tokens, names_filter=lambda n: n == "blocks.0.attn.hook_pattern")
    pattern = cache["blocks.0.attn.hook_pattern"]  # [N, head, query, key]
    q = torch.arange(1, data.seq_len)
    for name in SELF_HEADS:
        h = int(name.split(".")[1])
        to_self, to_prev = float(pattern[:, h, q, q].mean()), float(pattern[:, h, q, q - 1].mean())
        assert to_self > 0.3 and to_self > 1.5 * to_prev, (name, to_self, to_prev)


def test_argument_errors():
    with pytest.raises(ValueError, match="previous-token head"):
        false_wrong_prev_head(wrong="a0.2")
    with pytest.raises(ValueError, match="rest must be"):
        path_v(rest="sometimes")
