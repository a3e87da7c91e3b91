"""Bad hypotheses and inputs are rejected before any model runs, with errors that name the culprit."""

import pickle
import re
from pathlib import Path

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
        scrub.internal.make_plan(h, graph, data)


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
    scrub.internal.make_plan(h, graph, tiny)


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
    _h, out = hyp()
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
    h, _out = hyp()
    with pytest.raises(ValueError, match=r"vocabulary is 0\.\.6"):
        scrub.run(m, h, scrub.Dataset(torch.full((4, 3), 9), labels=torch.zeros(4, dtype=torch.long)))
    with pytest.raises(ValueError, match="n_ctx=8"):
        scrub.run(m, h, scrub.Dataset(torch.zeros(4, 12, dtype=torch.long), labels=torch.zeros(4, dtype=torch.long)))


def test_run_rejects_a_metric_of_the_wrong_shape_and_a_missing_label():
    m = small_model()
    data = scrub.Dataset(torch.zeros(4, 3, dtype=torch.long))
    h, _out = hyp()
    with pytest.raises(scrub.MetricError, match="needs labels"):
        scrub.run(m, h, data)
    with pytest.raises(scrub.MetricError, match=r"shape \(3,\)"):
        scrub.run(m, h, data, metric=lambda logits, d: logits[:3, 0])


def test_baseline_equal_to_the_model_is_an_error(tiny):
    m = small_model()
    graph = scrub.ModelGraph.from_model(m)
    b = scrub.Hypothesis("everything exact")
    b.output().add("all", model=[c for c in graph.components if c != "out"])
    h, _out = hyp()
    with pytest.raises(ValueError, match="zero denominator"):
        scrub.run(m, h, tiny, baseline=b)


def test_unsupported_model():
    with pytest.raises(TypeError, match="not a supported TransformerLens model"):
        scrub.ModelGraph.from_model(torch.nn.Linear(3, 3))


def test_sabotaged_hook_aborts_the_run(tiny):
    """A hook that never fires (a wrong hook name in the plan) is an error, not a silent wrong score."""
    from scrub import _executor as executor

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
    from scrub import _executor as executor

    def must_not_run(*a, **k):
        raise AssertionError("the model ran")

    monkeypatch.setattr(executor, "_forward", must_not_run)
    h, _out = hyp()
    with pytest.raises(scrub.MetricError, match=r"non-finite loss \(nan\) for example 0.*before running"):
        scrub.run(small_model(), h, tiny, metric=lambda logits, d: logits[:, 0] * float("nan"))
    with pytest.raises(scrub.MetricError, match=r"shape \(3,\)"):
        scrub.run(small_model(), h, tiny, metric=lambda logits, d: logits[:3, 0])
    with pytest.raises(scrub.MetricError, match="raised KeyError"):
        scrub.run(small_model(), h, tiny, metric=lambda logits, d: d.columns["nope"])


# -- the hardening catalogue: each wrong input below once returned a score or a traceback -------
# (M: a tiny 2-layer model, D: 40 x 6 examples, simple(): out <- a1.0 <- a0.0 via k)
N, T = 40, 6


@pytest.fixture(scope="module")
def M():
    return small_model()


@pytest.fixture(scope="module")
def D():
    g = torch.Generator().manual_seed(1)
    return scrub.Dataset(torch.randint(0, 7, (N, T), generator=g), torch.randint(0, 7, (N,), generator=g))


def simple(name="simple"):
    h = scrub.Hypothesis(name)
    h.output().add("a1", model="a1.0").add("a0", model="a0.0", port="k")
    return h


@pytest.fixture
def no_forward(monkeypatch):
    """Any forward pass fails the test: the error must come before the model runs."""
    from scrub import _executor as executor

    def must_not_run(*a, **k):
        raise AssertionError("the model ran")

    monkeypatch.setattr(executor, "_forward", must_not_run)


TOK = torch.zeros(4, 3, dtype=torch.long)


@pytest.mark.parametrize("mask, match", [
    (torch.full((4, 3), 0.7), r"attention_mask\[0, 0\] = 0\.7.*only 0 \(masked\) and 1"),
    (torch.full((4, 3), -1), r"attention_mask\[0, 0\] = -1"),
    (torch.full((4, 3), float("nan")), r"attention_mask\[0, 0\] = nan"),
    (torch.full((4, 3), 2), r"attention_mask\[0, 0\] = 2"),
    (torch.zeros(4, 3), "masks every position of example 0"),
    (torch.tensor([[1, 1, 1], [1, 1, 1], [0, 0, 0], [1, 1, 1]]), "masks every position of example 2"),
    (torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 1, 1]]), "masks example 1's target position 2"),
    ("all", "attention_mask must be an \\[N, T\\] array of 0/1"),
    (torch.ones(4, 2), r"must match tokens \(4, 3\), got \(4, 2\)"),
])
def test_attention_mask_holds_only_zero_and_one(mask, match):
    with pytest.raises(scrub.DatasetError, match=match):
        scrub.Dataset(TOK, attention_mask=mask)


def test_attention_masks_of_bools_ints_and_exact_floats_are_the_same_mask():
    m = torch.tensor([[1, 1, 1], [0, 1, 1], [0, 0, 1], [1, 1, 1]])
    masks = [scrub.Dataset(TOK, attention_mask=x).attention_mask for x in (m, m.bool(), m.float(), m.numpy().tolist())]
    for x in masks:
        assert x.dtype == torch.long and torch.equal(x, m)


@pytest.mark.parametrize("positions, match", [
    ([1.7], "ints only; got float 1.7"),
    ("01", "got str '01'"),
    (["1"], "ints only; got str '1'"),
    ([True], "ints only; got bool True"),
    (np.array([True, False, True]), "boolean array; pass the positions it selects"),
    (torch.tensor([True, False]), "boolean array"),
    ([], "positions= is empty, which claims nothing"),
    (3, "got int 3"),
    (np.zeros((2, 2), dtype=int), r"array of shape \(2, 2\)"),
])
def test_static_positions_are_ints_refused_at_add(positions, match):
    h, out = hyp()
    with pytest.raises(scrub.HypothesisError, match=r"node 'x': .*" + match):
        out.add("x", model="a1.0", positions=positions)
    assert "x" not in h._names  # nothing half-added


def test_static_positions_accept_python_numpy_and_tensor_ints():
    _h, out = hyp()
    for i, p in enumerate(([1, -1], np.array([1, -1]), torch.tensor([1, -1]), (np.int64(1), -1))):
        node = out.add(f"x{i}", model="a1.0", positions=p)
        assert node.positions == [1, -1] and all(type(v) is int for v in node.positions)


@pytest.mark.parametrize("kw", [dict(port="v"), dict(positions=[1]), dict(agree="c"), dict(model="a0.1"),
                                dict(agree=scrub.Random())])
def test_reattaching_an_existing_node_refuses_what_it_would_drop(kw):
    _h, out = hyp()
    a2 = out.add("a2", model="m1")
    x = out.add("a1", model="a1.0").add("x", model="a0.0", port="k")
    with pytest.raises(scrub.HypothesisError, match=f"node 'x': attaching an existing node takes no {next(iter(kw))}="):
        a2.add(x, **kw)
    assert a2.children == []
    assert a2.add(x) is x and a2.children == [x]  # without them it attaches


@pytest.mark.parametrize("kw, match", [
    (dict(model=5), "model= must be graph node.*got int 5"),
    (dict(model=["a1.0", 5]), "model= must be graph node.*5 is not a name"),
    (dict(model=[]), "model= names no graph node"),
    (dict(model="a1.0", port=5), "port= must be a port name.*got int 5"),
    (dict(model="a1.0", port=[]), "port= names no port"),
    (dict(model="a1.0", agree=5), "agree= must be a function of the data, a column name"),
])
def test_node_add_names_the_bad_argument(kw, match):
    _h, out = hyp()
    with pytest.raises(scrub.HypothesisError, match="node 'x': " + match):
        out.add("x", **kw)


def test_an_unknown_graph_node_keeps_its_graph_error_type(graph, tiny):
    h, out = hyp()
    out.add("x", model="a1.9")
    with pytest.raises(scrub.GraphError, match=r"node 'x'.*a1\.9"):
        h.validate(graph)


@pytest.mark.parametrize("fn, match", [
    (lambda d: "x" * len(d), "returned a string"),
    (lambda d: {i: 0 for i in range(len(d))}, "returned a dict"),
    (len, r"returned a single int \(20\)"),
    (lambda d: torch.tensor(3), r"returned a single value \(3\)"),
    (lambda d: None, "returned a single NoneType"),
    (lambda d: pd.Series(np.arange(20), index=np.arange(20) + 100), "index is not the examples 0..19"),
])
def test_features_of_the_wrong_kind_name_the_node(tiny, fn, match):
    from scrub._sampling import evaluate_feature

    with pytest.raises(scrub.FeatureError, match="node 'f': the feature .*" + match):
        evaluate_feature(fn, tiny, "f")


def test_a_sorted_series_is_aligned_by_its_index_and_0d_tensors_agree(tiny):
    from scrub._sampling import evaluate_feature

    values = pd.Series(tiny.tokens[:, 0].numpy())
    plain = evaluate_feature(lambda d: values, tiny, "f")
    shuffled = evaluate_feature(lambda d: values.sort_values(), tiny, "f")  # index is a permutation of 0..19
    np.testing.assert_array_equal(plain.codes, shuffled.codes)
    zero_d = evaluate_feature(lambda d: [torch.tensor(int(v)) for v in d.tokens[:, 0]], tiny, "f")
    np.testing.assert_array_equal(plain.codes, zero_d.codes)
    assert zero_d.n_values == len(set(values.tolist())) < 20


@pytest.mark.parametrize("kw, match", [
    (dict(tokens=[[1, 2], [3]]), "not a rectangular array of integers"),
    (dict(tokens=[["a", "b"], ["c", "d"]]), "must hold integers, got strings"),
    (dict(tokens=None), "tokens is None"),
    (dict(target_pos="3"), "target_pos must be an int or \\[N\\] ints, got str '3'"),
    (dict(target_pos=True), "target_pos must be an int or \\[N\\] ints, got bool True"),
    (dict(target_pos=2.0), "got float 2.0"),
    (dict(columns=5), "columns must be a pandas DataFrame or a dict.*got int"),
    (dict(columns=pd.DataFrame([[1, 2]] * 4, columns=["a", "a"])), "two columns named 'a'"),
    (dict(labels=[0.5] * 4), "labels must hold integers, got floats"),
])
def test_dataset_refuses_malformed_inputs(kw, match):
    args = {"tokens": TOK, **kw}
    with pytest.raises(scrub.DatasetError, match="Dataset: .*" + match):
        scrub.Dataset(args.pop("tokens"), args.pop("labels", None), **args)


def test_target_pos_numpy_and_tensor_ints_equal_a_python_int():
    want = scrub.Dataset(TOK, target_pos=1).target_pos
    for tp in (np.int64(1), torch.tensor(1), np.array(1)):
        assert torch.equal(scrub.Dataset(TOK, target_pos=tp).target_pos, want)
    assert want.tolist() == [1] * 4


def test_subset_refuses_rows_outside_the_dataset_and_reads_boolean_masks():
    d = scrub.Dataset(torch.arange(12).reshape(4, 3))
    with pytest.raises(scrub.DatasetError, match=r"subset: row 100 is outside the dataset \(0\.\.3\)"):
        d.subset([100])
    with pytest.raises(scrub.DatasetError, match="1-d list of row numbers"):
        d.subset([1.5])
    assert d.subset(np.array([True, False, False, True])).tokens[:, 0].tolist() == [0, 9]
    assert d.subset([-1, 0]).tokens[:, 0].tolist() == [9, 0]


def test_an_unused_column_of_lists_does_not_break_the_data_hash(M, D):
    from scrub._experiment import _data_hash

    cols = pd.DataFrame({"lists": [[i, i + 1] for i in range(N)], "dicts": [{"k": i} for i in range(N)]})
    d1 = scrub.Dataset(D.tokens, D.labels, columns=cols)
    d2 = scrub.Dataset(D.tokens, D.labels, columns=cols.copy())
    assert _data_hash(d1) == _data_hash(d2) != _data_hash(D)
    cols.loc[3, "lists"] = [0, 0]
    assert _data_hash(scrub.Dataset(D.tokens, D.labels, columns=cols)) != _data_hash(d1)
    r = scrub.run(M, simple(), d1, n_boot=100)
    assert r.record["data_sha256"] == _data_hash(d1)


@pytest.mark.parametrize("kw, match", [
    (dict(seed=-1), "seed must be at least 0, got -1"),
    (dict(seed=1.5), "seed must be an int, got float 1.5"),
    (dict(seed="1"), "seed must be an int, got str '1'"),
    (dict(seed=True), "seed must be an int, got bool True"),
    (dict(n_seeds=0), r"n_seeds must be 1\.\.1000, got 0"),
    (dict(n_seeds=1.5), "n_seeds must be an int, got float"),
    (dict(n_seeds="2"), "n_seeds must be an int, got str"),
    (dict(n_seeds=10**7), r"n_seeds must be 1\.\.1000, got 10000000 \(each seed is a full set of forward passes"),
    (dict(batch_size=2.5), "batch_size must be an int, got float"),
    (dict(batch_size="8"), "batch_size must be an int, got str"),
    (dict(batch_size=0), "batch_size must be at least 1"),
    (dict(n_boot=1), "n_boot must be at least 100, got 1 \\(a 95% interval needs"),
    (dict(n_boot=0), "n_boot must be at least 100, got 0"),
    (dict(device="tpu"), "device='tpu' is not a device"),
    (dict(device=5), "device must be a string.*got int 5"),
    (dict(device=""), "device='' is not a device"),
    (dict(device="meta"), "device='meta' holds no data"),
    (dict(progress="yes"), "progress must be True, False or None"),
])
def test_run_options_are_checked_before_the_model_runs(M, D, no_forward, kw, match):
    with pytest.raises(scrub.RunOptionsError, match=match):
        scrub.run(M, simple(), D, **kw)
    assert next(M.parameters()).device.type == "cpu"  # the caller's model is untouched


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_without_a_gpu_names_the_argument(M, D, no_forward):
    with pytest.raises(scrub.RunOptionsError, match="device='cuda': CUDA is not available"):
        scrub.run(M, simple(), D, device="cuda")


def test_numpy_int_options_are_accepted_as_ints(M, D):
    a = scrub.run(M, simple(), D, seed=np.int64(2), n_seeds=np.int32(1), n_boot=np.int64(100))
    b = scrub.run(M, simple(), D, seed=2, n_seeds=1, n_boot=100)
    assert a.loss_recovered == b.loss_recovered and a.ci == b.ci and a.record["seed"] == 2


@pytest.mark.parametrize("h, match", [
    (None, "must be a scrub.Hypothesis, got NoneType"),
    (simple, r"is the function 'simple', not a scrub.Hypothesis: call it \(simple\(\)\)"),
])
def test_run_wants_a_hypothesis_not_its_function(M, D, no_forward, h, match):
    with pytest.raises(scrub.HypothesisError, match=match):
        scrub.run(M, h, D)
    with pytest.raises(scrub.HypothesisError, match="baseline"):
        scrub.run(M, simple(), D, baseline=simple)


def test_a_failed_run_leaves_the_callers_model_as_it_was(M, D):
    """A metric that passes the probe and fails mid-run: the model gives the same logits after."""
    before = M(D.tokens).detach().clone()
    calls = []

    def late_failure(logits, d):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("late")
        return logits[:, 0]

    with pytest.raises(RuntimeError, match="late"):
        scrub.run(M, simple(), D, metric=late_failure)
    assert torch.equal(M(D.tokens), before)


@pytest.fixture(scope="module")
def recorded(M, D):
    return scrub.run(M, simple(), D, seed=1, n_boot=100)


def test_the_record_holds_the_score_and_the_hypothesis_fingerprint(recorded):
    rec = recorded.record
    assert rec["score"]["loss_recovered"] == recorded.loss_recovered and rec["score"]["ci"] == list(recorded.ci)
    assert rec["hypothesis_fingerprint"] == scrub._experiment.hypothesis_fingerprint(simple())
    assert rec["hypothesis_fingerprint"] != scrub._experiment.hypothesis_fingerprint(simple().without("a0"))


@pytest.mark.parametrize("edit, match", [
    (dict(seed=2), "rerun does not give the recorded score: loss_scrubbed"),
    (dict(n_seeds=2), "rerun does not give the recorded score: loss_scrubbed"),
    (dict(metric="kl"), "rerun does not give the recorded score: loss_model"),
    (dict(n_boot=200), r"rerun does not give the recorded score: ci \(recorded"),
])
def test_reproduce_catches_an_edited_record(M, D, recorded, edit, match):
    with pytest.raises(scrub.ReproductionError, match=match):
        scrub.reproduce({**recorded.record, **edit}, M, simple(), D)


def test_reproduce_catches_another_hypothesis_of_the_same_name(M, D, recorded):
    other = scrub.Hypothesis("simple")
    other.output().add("a1", model="a1.1").add("a0", model="a0.0", port="k")
    with pytest.raises(scrub.ReproductionError, match=r"hypothesis_fingerprint.*'simple' has the recorded name but"):
        scrub.reproduce(recorded, M, other, D)
    again = scrub.reproduce(recorded, M, simple(), D)  # the same one reproduces bit for bit
    assert again.loss_recovered == recorded.loss_recovered and again.record == recorded.record


@pytest.mark.parametrize("record, match", [
    ("", "the record is not JSON"),
    ("null", "must be a dict.*got NoneType"),
    (5, "must be a dict.*got int"),
    ("/tmp/run.json", "not JSON.*to use a file"),
    (Path("/tmp/run.json"), "the record is a path"),
    ('{"seed": 1, "n_se', "not JSON.*Unterminated"),
    ({"seed": 0}, "the record lacks"),
])
def test_reproduce_refuses_malformed_records(M, D, no_forward, record, match):
    with pytest.raises(scrub.ReproductionError, match=match):
        scrub.reproduce(record, M, simple(), D)


@pytest.mark.parametrize("field, value, match", [
    ("seed", "0", "seed is str '0', not int"),
    ("n_seeds", 1.0, "n_seeds is float"),
    ("score", None, "score is NoneType"),
    ("weights_sha256", 5, "weights_sha256 is int"),
    ("versions", 5, "versions is int"),
    ("seed", -1, "run options are not valid: seed must be at least 0"),
])
def test_reproduce_refuses_fields_of_the_wrong_type(M, D, recorded, no_forward, field, value, match):
    with pytest.raises(scrub.ReproductionError, match=match):
        scrub.reproduce({**recorded.record, field: value}, M, simple(), D)


def test_score_check_of_the_score_field(M, D, recorded, no_forward):
    rec = {**recorded.record, "score": {**recorded.record["score"], "loss_model": "x"}}
    with pytest.raises(scrub.ReproductionError, match=r"score\.loss_model is str"):
        scrub.reproduce(rec, M, simple(), D)


# -- load_model ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory, M):
    d = tmp_path_factory.mktemp("ckpt")
    scrub.save_model(M, d / "m.safetensors")
    return d


def _save_with_config(M, path, config):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in M.state_dict().items()}, str(path), metadata={"config": config})


@pytest.mark.parametrize("make, match", [
    (lambda d, M: pickle.dumps({"a": 1}), "looks like a pickle or torch.save checkpoint"),
    (lambda d, M: b"garbage" * 50, "not a readable safetensors file"),
    (lambda d, M: b"", "the file is empty"),
    (lambda d, M: (d / "m.safetensors").read_bytes()[:3000], "not a readable safetensors file"),
    (lambda d, M: (d / "m.safetensors").read_bytes()[:5], "not a readable safetensors file"),
])
def test_load_model_refuses_files_that_are_not_its_weights(saved, M, make, match):
    bad = saved / "bad.bin"
    bad.write_bytes(make(saved, M))
    with pytest.raises(scrub.CheckpointError, match=re.escape(str(bad)) + ": cannot load model weights: .*" + match):
        scrub.load_model(bad)


@pytest.mark.parametrize("config, match", [
    ("{not json", "the header's model config is not JSON"),
    ("[1, 2]", "model config is a list, not a JSON object"),
    (lambda c: {**c, "d_model": -4}, "d_model=-4; it must be a positive int"),
    (lambda c: {**c, "n_heads": "2"}, "n_heads='2'; it must be a positive int"),
    (lambda c: {**c, "d_model": 10**6}, "describes about .* parameters but the file holds"),
    (lambda c: {**c, "eps": -1.0}, "eps=-1.0; it must be a positive number"),
    (lambda c: {**c, "act_fn": "nope"}, "act_fn='nope'; valid:"),
    (lambda c: {**c, "zzz": 1}, r"unknown fields \['zzz'\]"),
])
def test_load_model_refuses_a_malformed_header_config(saved, M, config, match):
    import json

    from scrub._checkpoint import model_config

    path = saved / "cfg.safetensors"
    _save_with_config(M, path, config if isinstance(config, str) else json.dumps(config(model_config(M))))
    with pytest.raises(scrub.CheckpointError, match=re.escape(str(path)) + ": .*" + match):
        scrub.load_model(path)


def test_load_model_refuses_bad_paths_and_devices(saved):
    with pytest.raises(scrub.CheckpointError, match=r"path must be a file path.*got int 5"):
        scrub.load_model(5)
    with pytest.raises(scrub.CheckpointError, match="is a directory"):
        scrub.load_model(saved)
    with pytest.raises(scrub.CheckpointError, match="no weights file at"):
        scrub.load_model(saved / "missing.safetensors")
    with pytest.raises(scrub.RunOptionsError, match="device='tpu' is not a device"):
        scrub.load_model(saved / "m.safetensors", device="tpu")
    model = scrub.load_model(saved / "m.safetensors")  # and the good file loads
    assert scrub._checkpoint.weights_hash(model) == scrub._checkpoint.weights_hash(small_model())


def test_a_bfloat16_model_hashes_its_raw_bytes(M):
    from scrub._checkpoint import weights_hash

    bf = small_model().to(torch.bfloat16)
    h = weights_hash(bf)
    assert len(h) == 64 and h != weights_hash(M) and h == weights_hash(small_model().to(torch.bfloat16))
    with torch.no_grad():
        next(bf.parameters()).view(-1)[0] += 1
    assert weights_hash(bf) != h


def test_assert_faithful_checks_its_bounds_before_running(M, D, no_forward):
    from scrub import testing

    with pytest.raises(scrub.RunOptionsError, match=r"at_least must be a number.*'0\.9'"):
        testing.assert_faithful(M, simple(), D, at_least="0.9")
    with pytest.raises(scrub.RunOptionsError, match=r"at_least=0\.9 is above at_most=0\.5"):
        testing.assert_faithful(M, simple(), D, at_least=0.9, at_most=0.5)
    with pytest.raises(scrub.HypothesisError, match="call it"):
        testing.assert_faithful(M, simple, D)


def test_run_many_breakdown_and_names_refuse_the_wrong_kinds(M, D, no_forward):
    from scrub._breakdown import breakdown

    with pytest.raises(scrub.HypothesisError, match=r"run_many takes a list of hypotheses: pass \[h\]"):
        scrub.run_many(M, simple(), D)
    with pytest.raises(scrub.HypothesisError, match=r"hypotheses\[1\] must be a scrub.Hypothesis, got str"):
        scrub.run_many(M, [simple(), "simple"], D)
    with pytest.raises(scrub.HypothesisError, match="has no node 'nope' to select"):
        breakdown(M, simple(), D, claims=["nope"])
    with pytest.raises(scrub.RunOptionsError, match="n_seeds must be an int"):
        breakdown(M, simple(), D, n_seeds="2")
    with pytest.raises(scrub.HypothesisError, match="a hypothesis name must be a non-empty string, got 5"):
        scrub.Hypothesis(5)


def test_reproduce_names_a_model_or_data_of_the_wrong_kind(D, recorded, no_forward):
    with pytest.raises(scrub.UnsupportedModelError, match="NoneType is not a supported TransformerLens model"):
        scrub.reproduce(recorded, None, simple(), D)
    with pytest.raises(scrub.DatasetError, match=r"data must be a scrub\.Dataset, got str"):
        scrub.reproduce(recorded, small_model(), simple(), "D")
    with pytest.raises(scrub.HypothesisError, match="call it"):
        scrub.reproduce(recorded, small_model(), simple, D)
