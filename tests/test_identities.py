"""Exact identities the math gives: all-Exact is the model, nothing-claimed is the baseline."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import scrub
from scrub._executor import run_clean, run_plan
from scrub._graph import INPUTS
from tests.conftest import small_model


def claim_everything(node, comps, graph, agree):
    """Claim every treeified path below ``node`` (mapped to ``comps``) with feature ``agree``."""
    node.add(f"{node.name}/inputs", model=list(INPUTS), agree=agree)
    ups = [
        c for c in graph.components
        if c not in INPUTS and c != "out" and any(graph.feeds(c, n, p) for n in comps for p in graph.ports(n))
    ]
    if ups:
        child = node.add(f"{node.name}/up", model=ups, agree=agree)
        claim_everything(child, ups, graph, agree)


def everything(graph, agree=scrub.Exact()):
    h = scrub.Hypothesis("everything")
    claim_everything(h.output(), ["out"], graph, agree)
    return h


@pytest.mark.parametrize(
    "cfg",
    [
        dict(attn_only=True, norm="LN"),
        dict(attn_only=False, norm=None),
        dict(attn_only=False, norm="LN", n_layers=3),
        dict(attn_only=False, norm="LN", attention_dir="bidirectional"),
    ],
)
def test_all_exact_reproduces_the_model(cfg, data):
    m = small_model(**cfg)
    graph = scrub.ModelGraph.from_model(m)
    h = everything(graph)
    plan = scrub.internal.make_plan(h, graph, data, seed=0)
    # every non-leaf instance is computed from patched ports: the identity is not a shortcut
    assert sum(not i.is_leaf for i in plan.instances) >= graph.n_layers + 1
    assert all(set(i.node.model) <= set(INPUTS) for i in plan.instances if i.is_leaf)
    result = scrub.run(m, h, data, seed=0)
    t = result.table()
    np.testing.assert_allclose(t.loss_scrubbed, t.loss_model, atol=1e-5, rtol=0)


def test_padding_takes_the_unmerged_path_and_changes_no_number(data):
    """A padded example keeps heads out of their context's block unless the model takes per-layer masks
    (native models do); on a causal model, padding after the scored position changes nothing, so the
    numbers must not move. An all-ones mask pads nothing: it merges."""
    from scrub._executor import n_blocks

    m = small_model(attn_only=False)
    graph = scrub.ModelGraph.from_model(m)
    h = scrub.Hypothesis("mixed")
    a = h.output().add("A", model=["a1.0"], agree=lambda d: d.tokens[:, -2] % 2)
    a.add("B", model="a0.1", port="k", agree=lambda d: d.tokens[:, 2] % 3)
    h.output().add("C", model="m0", agree=lambda d: d.tokens[:, 0] % 2)
    t = data.seq_len - 2
    plain = scrub.Dataset(data.tokens, data.labels, target_pos=t)
    mask = torch.ones_like(data.tokens)
    mask[0, -1] = 0  # example 0 is padded after its scored position
    padded = scrub.Dataset(data.tokens, data.labels, target_pos=t, attention_mask=mask)
    ones = scrub.Dataset(data.tokens, data.labels, target_pos=t, attention_mask=torch.ones_like(data.tokens))
    plan = scrub.internal.make_plan(h, graph, plain, seed=3)
    assert n_blocks(plan, padded) > n_blocks(plan, plain) == n_blocks(plan, ones) == n_blocks(plan, padded, m)
    a_ = run_plan(m, plan, plain)
    assert torch.allclose(a_, run_plan(m, plan, padded), atol=1e-5)
    assert torch.allclose(a_, run_plan(m, plan, ones), atol=1e-5)


def test_identity_feature_equals_the_model(data):
    m = small_model(attn_only=False)
    graph = scrub.ModelGraph.from_model(m)
    with pytest.warns(UserWarning, match="no agreeing example but"):
        result = scrub.run(m, everything(graph, agree=lambda d: np.arange(len(d))), data, seed=1)
    t = result.table()
    np.testing.assert_allclose(t.loss_scrubbed, t.loss_model, atol=1e-5, rtol=0)
    assert result.loss_recovered == pytest.approx(1.0, abs=1e-5)


def test_output_alone_is_the_baseline(model, data):
    """Nothing claimed: the output reads a random example's residual, scored on the reference's label."""
    graph = scrub.ModelGraph.from_model(model)
    result = scrub.run(model, scrub.fully_scrubbed(), data, seed=5)
    t = result.table()
    np.testing.assert_array_equal(t.loss_scrubbed, t.loss_baseline)
    plan = scrub.internal.make_plan(scrub.fully_scrubbed(), graph, data, seed=5)
    r = plan.root.random
    logits = run_clean(model, scrub.Dataset(data.tokens[r], data.labels[r]))
    expected = F.cross_entropy(logits, data.labels, reduction="none").numpy()
    np.testing.assert_allclose(t.loss_scrubbed, expected, atol=1e-5, rtol=0)


def test_output_fed_random_children_is_the_baseline_in_expectation(model, data):
    """Claiming every path with Random() is fully scrubbed too (with other random draws)."""
    graph = scrub.ModelGraph.from_model(model)
    h = scrub.Hypothesis("all random")
    h.output().add("all", model=[c for c in graph.components if c != "out"], agree=scrub.Random())
    big = scrub.Dataset(data.tokens.repeat(8, 1), data.labels.repeat(8))
    result = scrub.run(model, h, big, seed=0, n_seeds=2)
    assert abs(result.loss_scrubbed - result.loss_baseline) < 4 * np.std(result.table().loss_baseline) / np.sqrt(len(big))


def test_clean_logits_match_the_model(model, data):
    logits = model(data.tokens)[:, -1]
    assert torch.allclose(run_clean(model, data), logits, atol=1e-5)


def test_same_seed_same_result_other_seed_other_samples(model, data):
    h = scrub.Hypothesis("h")
    h.output().add("A", model=["a1.0", "a1.1"], agree=lambda d: d.tokens[:, -1] % 3).add(
        "B", model="embed", agree=lambda d: d.tokens[:, 0] % 2
    )
    a = scrub.run(model, h, data, seed=7)
    b = scrub.run(model, h, data, seed=7)
    c = scrub.run(model, h, data, seed=8)
    assert a.table().equals(b.table())
    assert a.loss_recovered == b.loss_recovered and a.ci == b.ci
    assert not np.array_equal(a.table().loss_scrubbed, c.table().loss_scrubbed)
    graph = scrub.ModelGraph.from_model(model)
    p7, p8 = scrub.internal.make_plan(h, graph, data, 7), scrub.internal.make_plan(h, graph, data, 8)
    assert any(not np.array_equal(x.examples, y.examples) for x, y in zip(p7.instances[1:], p8.instances[1:]))


def test_n_seeds_pools_rows(model, data):
    h = scrub.Hypothesis("h")
    h.output().add("A", model="a1.0", agree=lambda d: d.tokens[:, -1] % 3)
    r = scrub.run(model, h, data, seed=2, n_seeds=3)
    t = r.table()
    assert len(t) == 3 * len(data) and sorted(t.seed.unique()) == [2, 3, 4]
    assert r.loss_scrubbed == pytest.approx(t.loss_scrubbed.mean())
    lo, hi = r.ci
    assert lo <= r.loss_recovered <= hi
    assert "bootstrap" in r.ci_method and "3 seed" in r.ci_method


def test_metrics_kl_and_accuracy(model, data):
    h = scrub.Hypothesis("h")
    h.output().add("A", model=["a1.0", "a1.1", "m1"], agree=scrub.Exact())
    kl = scrub.run(model, h, data, metric="kl")
    assert kl.loss_model == 0.0 and kl.loss_baseline > 0
    acc = scrub.run(model, h, data, metric="accuracy")
    assert set(np.unique(acc.table().loss_model)) <= {0.0, 1.0}
    custom = scrub.run(model, h, data, metric=lambda logits, d: -logits[torch.arange(len(d)), d.labels])
    assert custom.metric == "<lambda>"


def test_result_to_dict_and_record(model, data):
    h = scrub.Hypothesis("h")
    h.output().add("A", model="a1.0", agree=lambda d: d.tokens[:, -1] % 3)
    r = scrub.run(model, h, data, seed=0)
    d = r.to_dict()
    assert d["loss_recovered"] == r.loss_recovered and d["plan_size"]["instances"] == 2
    assert d["record"]["weights_sha256"] == scrub._checkpoint.weights_hash(model)
    assert d["record"]["versions"]["torch"]
    assert "recovered" in str(r)
