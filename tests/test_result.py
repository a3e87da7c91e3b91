"""Unit tests of the result: the score's formula, its bootstrap interval, equality and the one printed form."""

import copy

import numpy as np
import pandas as pd
import pytest

from scrub._result import MIN_BOOT, Result, bootstrap_ci, per_example_losses, percentile_interval, recovered


def table(n=200, seeds=(0,), seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in seeds:
        m = rng.uniform(0.1, 0.3, n)
        rows.append(pd.DataFrame({"example": np.arange(n), "seed": s, "loss_model": m,
                                  "loss_scrubbed": m + rng.uniform(0.0, 0.4, n), "loss_baseline": m + 1.0}))
    return pd.concat(rows, ignore_index=True)


def result(t, **over):
    lm, ls, lb = (float(t[c].mean()) for c in ("loss_model", "loss_scrubbed", "loss_baseline"))
    fields = dict(hypothesis="h", baseline="fully scrubbed", metric="loss", loss_model=lm, loss_scrubbed=ls,
                  loss_baseline=lb, loss_recovered=recovered(lm, ls, lb), ci=bootstrap_ci(t, n_boot=MIN_BOOT),
                  ci_method="m", n_examples=int(t.example.nunique()), seeds=sorted(t.seed.unique().tolist()),
                  plan_size={"instances": 2, "random_contexts": 1}, per_example=t)
    fields.update(over)
    return Result(**fields)


def test_recovered_is_the_normalised_drop():
    assert recovered(1.0, 1.0, 3.0) == 1.0
    assert recovered(1.0, 3.0, 3.0) == 0.0
    assert recovered(1.0, 2.0, 3.0) == 0.5
    assert recovered(1.0, 4.0, 3.0) == -0.5  # worse than the baseline: reported as it is


def test_per_example_losses_pool_the_seeds():
    t = table(n=5, seeds=(0, 1))
    per = per_example_losses(t)
    assert per.shape == (5, 3)
    expected = t.groupby("example")[["loss_model", "loss_scrubbed", "loss_baseline"]].mean().to_numpy()
    np.testing.assert_allclose(per, expected)


def test_bootstrap_interval_brackets_the_estimate_and_shrinks_with_n():
    small, big = table(n=50), table(n=2000)
    for t in (small, big):
        r = result(t)
        assert r.ci[0] <= r.loss_recovered <= r.ci[1]
    width = lambda t: np.subtract(*bootstrap_ci(t, n_boot=500)[::-1])
    assert width(big) < width(small) / 3  # ~ 1/sqrt(40) of it
    # the same seed gives the same interval; another seed another one
    assert bootstrap_ci(small, seed=1) == bootstrap_ci(small, seed=1) != bootstrap_ci(small, seed=2)


def test_delta_method_stderr_agrees_with_the_bootstrap():
    r = result(table(n=2000), ci=bootstrap_ci(table(n=2000), n_boot=2000))
    half_width = (r.ci[1] - r.ci[0]) / 2
    assert half_width == pytest.approx(1.96 * r.stderr, rel=0.15)


def test_percentile_interval_ignores_non_finite_samples():
    assert all(np.isnan(percentile_interval(np.array([np.nan, np.inf]))))
    assert percentile_interval(np.array([np.nan, 1.0, 2.0, np.inf])) == percentile_interval(np.array([1.0, 2.0]))
    assert percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))


def test_results_compare_by_value_and_print_one_way():
    t = table()
    a, b = result(t), result(t.copy())
    assert a == b and a != result(t, hypothesis="other") and a != "h"
    c = copy.deepcopy(a)
    c.per_example.loc[0, "loss_scrubbed"] += 1e-9
    assert a != c
    text = a.summary()
    lo, hi = a.ci
    assert text.splitlines()[0] == (f"fraction of loss recovered: {a.loss_recovered:.1%} (95% CI {lo:.1%} .. {hi:.1%}; "
                                    "N=200, seeds=[0])")
    assert str(a) == "hypothesis 'h'\n" + text
    with pytest.raises(TypeError):
        hash(a)
