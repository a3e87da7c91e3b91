"""Bad hypotheses and inputs are rejected before any model runs, with errors that name the culprit."""

import numpy as np
import pandas as pd
import pytest
import torch

import scrub
from tests.conftest import small_model


@pytest.fixture
def graph():
    return scrub.ModelGraph.build(n_layers=2, n_heads=2, attn_only=False)


@pytest.fixture
def tiny():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 7, (20, 6), generator=g)
    return scrub.Dataset(tokens, labels=torch.randint(0, 7, (20,), generator=g), columns=pd.DataFrame({"c": np.arange(20) % 2}))


def plan_error(h, graph, data, match):
    with pytest.raises((scrub.HypothesisError, scrub.FeatureError), match=match):
        scrub.make_plan(h, graph, data)


def hyp():
    h = scrub.Hypothesis("bad")
    return h, h.output()


def test_unknown_node(graph, tiny):
    h, out = hyp()
    out.add("x", model="a1.9")
    plan_error(h, graph, tiny, r"node 'x'.*a1\.9.*heads 0\.\.1")


def test_unknown_layer(graph, tiny):
    h, out = hyp()
    out.add("x", model="m7")
    plan_error(h, graph, tiny, r"node 'x'.*m7.*layers 0\.\.1")


def test_misspelt_node_suggests(graph, tiny):
    h, out = hyp()
    out.add("x", model="embd")
    plan_error(h, graph, tiny, r"node 'x'.*did you mean embed")


def test_unknown_port(graph, tiny):
    h, out = hyp()
    out.add("a", model="a1.0").add("x", model="a0.0", port="z")
    plan_error(h, graph, tiny, r"node 'x'.*port 'z'.*valid ports there: \['k', 'q', 'v'\]")


def test_port_of_the_wrong_kind(graph, tiny):
    h, out = hyp()
    out.add("m", model="m1").add("x", model="a0.0", port="k")
    plan_error(h, graph, tiny, r"node 'x'.*port 'k'.*\['in'\]")


def test_child_not_upstream(graph, tiny):
    h, out = hyp()
    out.add("a", model="a0.1").add("x", model="a1.0")
    plan_error(h, graph, tiny, r"node 'x'.*a1\.0 does not feed parent 'a'|node 'x'.*'a1\.0' does not feed")


def test_same_layer_head_is_not_upstream(graph, tiny):
    h, out = hyp()
    out.add("a", model="a1.1").add("x", model="a1.0")
    plan_error(h, graph, tiny, r"node 'x'.*does not feed parent 'a'")


def test_two_nodes_claim_the_same_path(graph, tiny):
    h, out = hyp()
    a = out.add("a", model="a1.0")
    a.add("x", model="a0.0", port="k")
    a.add("y", model=["a0.0", "a0.1"])
    plan_error(h, graph, tiny, r"'x' and 'y' both claim the treeified path a0\.0 -> a1\.0\.k")


def test_disjoint_positions_do_not_collide(graph, tiny):
    h, out = hyp()
    a = out.add("a", model="a1.0")
    a.add("x", model="a0.0", positions=[0, 1])
    a.add("y", model="a0.0", positions=[2])
    scrub.make_plan(h, graph, tiny)


def test_output_mapped_elsewhere(graph, tiny):
    h, out = hyp()
    out.add("x", model="out")
    plan_error(h, graph, tiny, r"node 'x'.*only the output node")


def test_input_with_children(graph, tiny):
    h, out = hyp()
    out.add("e", model="embed").add("x", model="pos")
    plan_error(h, graph, tiny, r"node 'e' maps to an input")


def test_cycle(graph, tiny):
    h, out = hyp()
    a = out.add("a", model="a1.0")
    b = a.add("b", model="a0.0")
    b.add(a)
    plan_error(h, graph, tiny, r"cycle: .*a.*b")


def test_duplicate_name(graph, tiny):
    h, out = hyp()
    out.add("a", model="a1.0")
    with pytest.raises(scrub.HypothesisError, match="already has a node"):
        out.add("a", model="a1.1")


def test_feature_wrong_length(graph, tiny):
    h, out = hyp()
    out.add("x", model="a1.0", agree=lambda d: d.tokens[:5, 0])
    plan_error(h, graph, tiny, r"node 'x'.*shape \(5,\).*\[20\]")


def test_feature_wrong_per_position_shape(graph, tiny):
    h, out = hyp()
    out.add("x", model="a1.0", agree=lambda d: d.tokens[:, :3])
    plan_error(h, graph, tiny, r"node 'x'.*shape \(20, 3\).*\[20, 6\]")


def test_feature_raises(graph, tiny):
    h, out = hyp()
    out.add("x", model="a1.0", agree=lambda d: d.columns["nope"])
    plan_error(h, graph, tiny, r"node 'x'.*raised KeyError")


def test_feature_nan(graph, tiny):
    h, out = hyp()
    out.add("x", model="a1.0", agree=lambda d: np.where(np.arange(len(d)) == 3, np.nan, 1.0))
    plan_error(h, graph, tiny, r"node 'x'.*NaN")


def test_feature_unhashable(graph, tiny):
    h, out = hyp()
    out.add("x", model="a1.0", agree=lambda d: [[1]] * len(d))
    plan_error(h, graph, tiny, r"node 'x'.*(hashable|shape)")


def test_unknown_column(graph, tiny):
    h, out = hyp()
    out.add("x", model="a1.0", agree="missing")
    plan_error(h, graph, tiny, r"node 'x'.*'missing'.*columns are \['c'\]")


def test_position_out_of_range(graph, tiny):
    h, out = hyp()
    out.add("x", model="a1.0", positions=[9])
    plan_error(h, graph, tiny, r"node 'x'.*positions \[9\].*length 6")


def test_positions_function_wrong_shape(graph, tiny):
    h, out = hyp()
    out.add("x", model="a1.0", positions=lambda d: np.zeros((3, 3)))
    plan_error(h, graph, tiny, r"node 'x'.*positions function returned shape")


def test_bad_dataset_inputs():
    with pytest.raises(ValueError, match="labels must be"):
        scrub.Dataset(torch.zeros(4, 3, dtype=torch.long), labels=torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="no examples"):
        scrub.Dataset(torch.zeros(0, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="columns has 2 rows"):
        scrub.Dataset(torch.zeros(4, 3, dtype=torch.long), columns=pd.DataFrame({"a": [1, 2]}))
    with pytest.raises(scrub.DatasetError, match="integers"):
        scrub.Dataset(torch.zeros(4, 3))


def test_run_rejects_tokens_outside_the_vocabulary_and_long_sequences():
    m = small_model()
    h, out = hyp()
    with pytest.raises(ValueError, match=r"vocabulary is 0\.\.6"):
        scrub.run(m, h, scrub.Dataset(torch.full((4, 3), 9), labels=torch.zeros(4, dtype=torch.long)))
    with pytest.raises(ValueError, match="n_ctx=8"):
        scrub.run(m, h, scrub.Dataset(torch.zeros(4, 12, dtype=torch.long), labels=torch.zeros(4, dtype=torch.long)))


def test_run_rejects_a_metric_of_the_wrong_shape_and_a_missing_label():
    m = small_model()
    data = scrub.Dataset(torch.zeros(4, 3, dtype=torch.long))
    h, out = hyp()
    with pytest.raises(scrub.MetricError, match="needs labels"):
        scrub.run(m, h, data)
    with pytest.raises(scrub.MetricError, match=r"shape \(3,\)"):
        scrub.run(m, h, data, metric=lambda logits, d: logits[:3, 0])


def test_baseline_equal_to_the_model_is_an_error(tiny):
    m = small_model()
    graph = scrub.ModelGraph.from_model(m)
    b = scrub.Hypothesis("everything exact")
    b.output().add("all", model=[c for c in graph.components if c != "out"])
    h, out = hyp()
    with pytest.raises(ValueError, match="zero denominator"):
        scrub.run(m, h, tiny, baseline=b)


def test_unsupported_model():
    with pytest.raises(TypeError, match="not a supported TransformerLens model"):
        scrub.ModelGraph.from_model(torch.nn.Linear(3, 3))


def test_sabotaged_hook_aborts_the_run(tiny):
    """A hook that never fires (a wrong hook name in the plan) is an error, not a silent wrong score."""
    from scrub import executor

    m = small_model(attn_only=False)
    h, out = hyp()
    out.add("a", model="a1.0").add("x", model="a0.0", port="k")
    original = executor._HookSet.add

    def sabotaged(self, name, fn):
        original(self, name.replace("attn.hook_z", "attn.hook_zz") if "hook_z" in name else name, fn)

    executor._HookSet.add = sabotaged
    try:
        with pytest.raises(Exception, match="hook_zz"):
            scrub.run(m, h, tiny)
    finally:
        executor._HookSet.add = original


def test_head_index_out_of_range(graph, tiny):
    h, out = hyp()
    out.add("x", model="a1.7")
    with pytest.raises(scrub.HypothesisError, match=r"node 'x'.*a1\.7"):
        h.validate(graph)


def test_metric_returning_nan_is_rejected_before_the_model_runs(tiny, monkeypatch):
    from scrub import executor

    def must_not_run(*a, **k):
        raise AssertionError("the model ran")

    monkeypatch.setattr(executor, "_forward", must_not_run)
    h, out = hyp()
    with pytest.raises(scrub.MetricError, match=r"non-finite loss \(nan\) for example 0.*before running"):
        scrub.run(small_model(), h, tiny, metric=lambda logits, d: logits[:, 0] * float("nan"))
    with pytest.raises(scrub.MetricError, match=r"shape \(3,\)"):
        scrub.run(small_model(), h, tiny, metric=lambda logits, d: logits[:3, 0])
    with pytest.raises(scrub.MetricError, match="raised KeyError"):
        scrub.run(small_model(), h, tiny, metric=lambda logits, d: d.columns["nope"])
