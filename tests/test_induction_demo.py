"""The shipped demo: committed induction weights, located heads, the naive hypothesis's score."""

import scrub
from hypotheses.induction import load_model, locate_heads, make_data
from hypotheses.induction.hypotheses import HEADS, naive


def test_located_heads_are_the_shipped_ones():
    found = locate_heads(load_model())
    assert sorted(found["prev_token"]) == sorted(HEADS["prev_token"])
    assert sorted(found["induction"]) == sorted(HEADS["induction"])


def test_naive_hypothesis_recovers_part_of_the_loss():
    """Measured: 88.2% (95% CI 87.6..88.7) at N=1000, 2 seeds; 87.6% (86.3..88.8) at N=300, seed 0.

    The range is the measured value +- about 5 CI half-widths: it fails if the engine or the
    weights move the score, not on sampling noise."""
    model = load_model()
    result = scrub.run(model, naive(), make_data(300, seed=1234), seed=0)
    assert result.loss_model < result.loss_scrubbed < result.loss_baseline
    assert 0.84 < result.loss_recovered < 0.91, result
    lo, hi = result.ci
    assert lo < result.loss_recovered < hi and hi - lo < 0.05
