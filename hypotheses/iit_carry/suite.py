"""The IIT carry entry as a regression suite: the carry's trained direction against an orthogonal one.

Every case runs on the committed model and ``make_data(500, seed=1234)`` with sampling seeds 0, 1.
Ranges: each case was run at that size on 4 (data seed, sampling seed) pairs, (1234, 0) and (k, k)
for k = 1..3; the range is ``mean +- max(5 sd, 0.02)``, rounded outwards to 0.01.

Against the default baseline (nothing claimed) the wrong direction still scores about 78%: the
digits, claimed correctly, carry most of the answer. Against ``digits_only`` (the digits claimed,
the carry not) the score is the carry's share: 100% for the trained direction, about 1% for the
wrong one.
"""

from __future__ import annotations

from scrub.suite import Case
from hypotheses.iit_carry import load_model, make_data
from hypotheses.iit_carry.hypotheses import digits_only, true_hypothesis, wrong_hypothesis

__all__ = ["CASES"]


def _case(name: str, hypothesis, expected: tuple[float, float], kind: str, notes: str, baseline=None) -> Case:
    return Case(f"iit_carry/{name}", model=load_model, data=make_data, hypothesis=hypothesis, expected=expected,
                kind=kind, n=500, n_seeds=2, data_seed=1234, baseline=baseline, notes=notes)


CASES: list[Case] = [
    _case("true", true_hypothesis, (0.98, 1.02), "true", "carry in e0 (trained there); 4 runs: 100.0% each"),
    _case("wrong", wrong_hypothesis, (0.76, 0.80), "false",
          "carry in e1; 4 runs: 78.3% (77.98..78.78): the digits alone recover most of the loss"),
    _case("true_vs_digits", true_hypothesis, (0.98, 1.02), "true",
          "carry in e0 against the digits-only baseline; 4 runs: 100.0% each", baseline=digits_only),
    _case("wrong_vs_digits", wrong_hypothesis, (-0.05, 0.06), "false",
          "carry in e1 against the digits-only baseline; 4 runs: 0.8% (-0.5..1.9)", baseline=digits_only),
]
