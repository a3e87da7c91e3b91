"""The paren balancer's regression suite: claims 1, 1+2, 1+3, 1+2+3 and false hypotheses.

Each case is scored on the committed weights (:func:`hypotheses.paren.load_model`) with
:func:`hypotheses.paren.make_data`, one scrub seed. Ranges: each case was run at its own ``n``
on five data seeds (1234, the default, and 1-4); the range is the seeds' min and max widened by
about 3 standard deviations of that spread (at least 0.03 either side), cut at the target where
one applies (a false case's top stays at 0.5). A case runs in under ~9 s on one busy thread
(the per-position claims 1+3 and 1+2+3 at n=200, the rest at n=500).

The ``paren/decorrelated/*`` cases score claim 1 and the swap on
:func:`hypotheses.paren.make_decorrelated_data`, where the count and horizon tests are independent
(n=300, data seeds 1234 and 1-4: claim 1 96.5% .. 99.6%, the swap 66.4% .. 73.6%).
"""

from __future__ import annotations

from scrub.suite import Case

from hypotheses.paren import load_model, make_data, make_decorrelated_data
from hypotheses.paren import hypotheses as H

__all__ = ["CASES"]


def _case(name: str, fn, expected: tuple[float, float], kind: str, n: int, notes: str, data=make_data) -> Case:
    return Case(f"paren/{name}", model=load_model, data=data, hypothesis=fn, expected=expected,
                kind=kind, n=n, n_seeds=1, notes=notes)


CASES: list[Case] = [
    _case("claim_1", H.claim_1, (0.95, 1.01), "true", 500,
          "m2 from the count test (m0, a1.1, m1), the horizon test (a1.0, a2.0) and both (a2.1)"),
    _case("claim_1_2", H.claim_1_2, (0.95, 1.01), "true", 500,
          "and the count test from the open proportion read by the layer-0 heads"),
    _case("claim_1_3", H.claim_1_3, (0.90, 1.0), "true", 200,
          "and the horizon heads from per-position prefix/suffix signs (a1.0 from layer 0, a2.0 from m1)"),
    _case("claim_1_2_3", H.claim_1_2_3, (0.83, 1.0), "true", 200, "claims 1, 2 and 3 together"),
    _case("redwood_claim_1", H.redwood_claim_1, (0.45, 0.80), "path", 500,
          "Redwood's claim 1 read literally (2.0 count, 2.1 horizon): misses the count test through m1"),
    _case("false_count_only", H.false_count_only, (0.45, 0.75), "false", 500,
          "every node carries only the count test"),
    _case("false_first_char", H.false_first_char, (0.33, 0.50), "false", 500,
          "every node carries only whether the first paren is ("),
    _case("false_layer_0", H.false_layer_0, (0.15, 0.45), "false", 500,
          "the final MLP reads balance off the layer-0 heads; layers 1-2 unimportant"),
    _case("false_swapped", H.false_swapped, (0.84, 0.96), "false", 500,
          "count and horizon swapped: scores high (a2.1 still carries both; the two tests are correlated)"),
    _case("decorrelated/claim_1", H.claim_1, (0.93, 1.02), "true", 300,
          "claim 1 on data where the count and horizon tests are independent: keeps its score",
          data=make_decorrelated_data),
    _case("decorrelated/false_swapped", H.false_swapped, (0.58, 0.82), "false", 300,
          "the swap on decorrelated data: falls from ~91% to ~69% but stays above 50%: a2.1 and m2 still carry "
          "'balanced' (see the zoo page)", data=make_decorrelated_data),
]
