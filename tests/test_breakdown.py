"""Claim breakdown on the shipped induction model: each claim alone, and the score lost without it."""

import math

import pytest
import torch

import scrub
from hypotheses.induction import load_model, make_data
from hypotheses.induction.hypotheses import naive
from scrub._breakdown import COLUMNS, breakdown

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    model, data, h = load_model(), make_data(200, seed=1234), naive()
    full = scrub.run(model, h, data, seed=0)
    return model, data, h, full, breakdown(model, h, data, full=full, seed=0)


def test_one_row_per_claim_with_paired_differences(setup):
    """Measured (N=200, seed 0): full 88.2%; without 'token values' 5.1% (lost 83.1%), without
    'current token' 30.5%, without 'previous tokens' 28.3%; alone 22.3%, 24.9%, 17.9%."""
    model, data, h, full, table = setup
    assert list(table.columns) == COLUMNS
    assert list(table["claim"]) == h.leaves() == ["current token", "previous tokens", "token values"]
    assert table.attrs["full"] == full.loss_recovered and table.attrs["full_ci"] == full.ci
    assert (table["lost"] == full.loss_recovered - table["without"]).all()
    for row in table.itertuples():
        assert row.alone_lo <= row.alone <= row.alone_hi
        assert row.without_lo <= row.without <= row.without_hi
        assert row.lost_lo <= row.lost <= row.lost_hi
        # every claim matters: the hypothesis without it, or it alone, recovers far less than all of it
        assert row.alone < full.loss_recovered - 0.5 and row.without < full.loss_recovered - 0.5
    worst = table.sort_values("lost", ascending=False).iloc[0]
    assert worst["claim"] == "token values"
    assert 0.75 < worst["lost"] < 0.9, table
    # pairing: the shared samples make the difference's interval narrower than both intervals added
    w = (table["lost_hi"] - table["lost_lo"]).to_numpy()
    unpaired = (table["without_hi"] - table["without_lo"]).to_numpy() + (full.ci[1] - full.ci[0])
    assert (w < unpaired).all(), (w, unpaired)


def test_rows_are_the_sub_hypotheses_scores(setup):
    """A row's numbers are exactly scrub.run of Hypothesis.only / Hypothesis.without with the same seed."""
    model, data, h, full, table = setup
    row = table.set_index("claim").loc["previous tokens"]
    assert row["without"] == scrub.run(model, h.without("previous tokens"), data, seed=0).loss_recovered
    assert row["alone"] == scrub.run(model, h.only("previous tokens"), data, seed=0).loss_recovered


def test_removals_only_and_checks(setup):
    model, data, h, full, _ = setup
    t = breakdown(model, h, data, claims=["token values"], full=full, alone=False, seed=0)
    assert list(t["claim"]) == ["token values"]
    assert t[["alone", "alone_lo", "alone_hi"]].isna().all().all()
    assert math.isfinite(t["lost"].iloc[0])
    with pytest.raises(ValueError, match="seeds"):
        breakdown(model, h, data, full=full, seed=1)
    with pytest.raises(scrub.HypothesisError, match="no node 'nope'"):
        breakdown(model, h, data, claims=["nope"], full=full, seed=0)
