"""The batched executor against the recursive oracle, on random models and random hypotheses.

Size: 30 random models x 1 random hypothesis each x 8 references (plus the hand-written cases).
"""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scrub
from scrub._executor import run_plan
from scrub._graph import INPUTS
from scrub._hypothesis import HypothesisError
from scrub._reference import run_reference
from tests.conftest import small_model

N, T, VOCAB = 8, 5, 6


def random_feature(rng: np.random.Generator):
    kind = rng.choice(["exact", "random", "example", "example", "position", "column"])
    if kind == "exact":
        return scrub.Exact()
    if kind == "random":
        return scrub.Random()
    if kind == "column":
        return "parity"
    k, j = int(rng.integers(2, 4)), int(rng.integers(0, T))
    if kind == "position":
        return lambda d, k=k: d.tokens % k
    return lambda d, k=k, j=j: d.tokens[:, j] % k


def random_positions(rng: np.random.Generator):
    kind = rng.choice(["all", "all", "static", "function"])
    if kind == "static":
        return sorted(rng.choice(T, size=int(rng.integers(1, T)), replace=False).tolist())
    if kind == "function":
        return lambda d: d.tokens % 2 == 0
    return None


def random_hypothesis(rng: np.random.Generator, graph: scrub.ModelGraph, data, max_nodes: int = 6) -> scrub.Hypothesis:
    """A random DAG over the graph: random model nodes, ports, positions and small-alphabet features."""
    h = scrub.Hypothesis("random")
    frontier = [h.output()]
    count = 0
    while frontier and count < max_nodes:
        parent = frontier.pop(0)
        if any(m in INPUTS for m in parent.model):
            continue
        for _ in range(int(rng.integers(1, 3))):
            ups = sorted({u for n in parent.model for p in graph.ports(n) for u in graph.upstream(n, p)})
            port_choices = sorted({p for n in parent.model for p in graph.ports(n)})
            port = None if rng.random() < 0.5 else str(rng.choice(port_choices))
            if port is not None:
                ups = [u for u in ups if any(graph.feeds(u, n, port) for n in parent.model)]
            size = int(rng.integers(1, min(3, len(ups)) + 1))
            model_nodes = sorted(rng.choice(ups, size=size, replace=False).tolist())
            if any(m in INPUTS for m in model_nodes) and len(model_nodes) > 1 and rng.random() < 0.5:
                model_nodes = [m for m in model_nodes if m not in INPUTS] or model_nodes
            child = parent.add(
                f"n{count}", model=model_nodes, port=port, positions=random_positions(rng), agree=random_feature(rng)
            )
            try:
                scrub.internal.make_plan(h, graph, data, warn=False)  # static and data-dependent checks
            except HypothesisError:
                parent.children.pop()
                del h._names[child.name]
                continue
            count += 1
            frontier.append(child)
    return h


def random_model(rng: np.random.Generator):
    return small_model(
        n_layers=int(rng.integers(1, 4)),
        attn_only=bool(rng.random() < 0.5),
        norm=None if rng.random() < 0.5 else "LN",
        n_heads=int(rng.choice([1, 2, 3])),
        d_model=12,
        d_vocab=VOCAB,
        attention_dir="bidirectional" if rng.random() < 0.25 else "causal",
        seed=int(rng.integers(0, 1000)),
    )


def random_data(rng: np.random.Generator, mask: bool) -> scrub.Dataset:
    import pandas as pd

    tokens = torch.from_numpy(rng.integers(0, VOCAB, size=(N, T)))
    attention_mask, lengths = None, T
    if mask:  # right padding on some examples
        lengths = rng.integers(3, T + 1, size=N)
        attention_mask = torch.from_numpy((np.arange(T)[None, :] < lengths[:, None]).astype(np.int64))
    return scrub.Dataset(
        tokens,
        labels=torch.from_numpy(rng.integers(0, VOCAB, size=N)),
        columns=pd.DataFrame({"parity": (tokens.sum(1) % 2).numpy()}),
        target_pos=torch.from_numpy(rng.integers(0, T, size=N) % lengths) if mask else None,  # an attended position
        attention_mask=attention_mask,
    )


def check_agreement(seed: int) -> int:
    rng = np.random.default_rng(seed)
    model = random_model(rng)
    graph = scrub.ModelGraph.from_model(model)
    data = random_data(rng, mask=model.cfg.attention_dir == "bidirectional" and rng.random() < 0.7)
    h = random_hypothesis(rng, graph, data)
    if h.leaves() and rng.random() < 0.3:  # removing a claim leaves its parent open (non-leaf, childless)
        h = h.without(str(rng.choice(h.leaves())))
    plan = scrub.internal.make_plan(h, graph, data, seed=seed, warn=False)
    with warnings.catch_warnings():  # small random batch sizes are the point: their warning is expected
        warnings.filterwarnings("ignore", message="batch_size=.* is smaller than the plan", category=UserWarning)
        fast = run_plan(model, plan, data, batch_size=int(rng.integers(1, 200)))
    slow = run_reference(model, plan, data)
    err = (fast - slow).abs().max().item()
    assert err < 1e-4, f"executor and oracle disagree by {err:.2e}\n{h.describe()}\n{plan.summary()}"
    return len(plan.instances)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1))
def test_executor_matches_oracle_on_random_models_and_hypotheses(seed):
    check_agreement(seed)


def test_oracle_on_a_deep_multi_node_hypothesis():
    """Instances spanning several stages (host and context blocks apart), per-position features, ports."""
    model = small_model(n_layers=3, attn_only=False, norm="LN", n_heads=2, d_model=12, d_vocab=VOCAB)
    graph = scrub.ModelGraph.from_model(model)
    data = random_data(np.random.default_rng(0), mask=False)
    h = scrub.Hypothesis("deep")
    top = h.output().add("top", model=["a2.0", "m2", "a1.1"], agree=lambda d: d.tokens[:, -1] % 2)
    mid = top.add("mid", model=["a1.0", "m0"], port="v", agree=lambda d: d.tokens % 2)
    mid.add("low", model="a0.1", agree=lambda d: d.tokens[:, 1] % 3, positions=[0, 2, 4])
    mid.add("emb", model="embed", port="k", agree=scrub.Random())
    top.add("q", model="embed", port="q", agree=lambda d: d.tokens[:, -1] % 3)
    plan = scrub.internal.make_plan(h, graph, data, seed=1, warn=False)
    assert len(plan.instances) == 1 + 1 + T * (1 + 1 + 1) + 1
    fast, slow = run_plan(model, plan, data), run_reference(model, plan, data)
    assert (fast - slow).abs().max().item() < 1e-4


@pytest.mark.parametrize("batch_size", [1, 7, 10_000])
def test_batch_size_does_not_change_the_numbers(batch_size):
    rng = np.random.default_rng(11)
    model = small_model(n_layers=2, attn_only=False, d_vocab=VOCAB)
    graph = scrub.ModelGraph.from_model(model)
    data = random_data(rng, mask=False)
    h = random_hypothesis(np.random.default_rng(4), graph, data)
    plan = scrub.internal.make_plan(h, graph, data, seed=0, warn=False)
    full = run_plan(model, plan, data, batch_size=10**6)
    with pytest.warns(UserWarning) if batch_size == 1 else _nothing():
        part = run_plan(model, plan, data, batch_size=batch_size)
    assert torch.allclose(full, part, atol=1e-5)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _drop(plan: scrub.internal.Plan, keep) -> scrub.internal.Plan:
    """A copy of ``plan`` without the instances ``keep`` rejects (and their subtrees); samples untouched."""
    import dataclasses

    kept: dict[int, int] = {}
    out = []
    for inst in plan.instances:
        if (inst.parent is not None and inst.parent not in kept) or not keep(inst):
            continue
        kept[inst.index] = len(out)
        out.append(dataclasses.replace(inst, index=len(out), children=[]))
    for new in out:
        if new.parent is not None:
            new.parent = kept[new.parent]
            out[new.parent].children.append(new.index)
    return dataclasses.replace(plan, instances=out)


def test_pruned_per_position_copies_change_nothing(monkeypatch):
    """Under a per-position parent, copies of a per-position child at other positions, through
    column-local ports (MLP in, head q), feed columns nobody reads: the plan leaves them out,
    and putting them back changes no output."""
    import scrub._plan as plan_mod

    model = small_model(n_layers=2, attn_only=False, norm="LN", n_heads=2, d_model=12, d_vocab=VOCAB)
    graph = scrub.ModelGraph.from_model(model)
    data = random_data(np.random.default_rng(3), mask=False)
    h = scrub.Hypothesis("per-position chain")
    mlp = h.output().add("mlp", model="m1", agree=lambda d: d.tokens % 2)
    mlp.add("into mlp", model="a0.1", port="in", agree=lambda d: d.tokens % 3)
    head = mlp.add("head", model="a1.0", agree=lambda d: (d.tokens + 1) % 2)
    head.add("queries", model="embed", port="q", agree=lambda d: d.tokens % 2)
    head.add("keys", model="a0.0", port="k", agree=lambda d: d.tokens % 3)

    pruned = scrub.internal.make_plan(h, graph, data, seed=5, warn=False)
    monkeypatch.setattr(plan_mod, "_column_local", lambda g, c: False)
    full = scrub.internal.make_plan(h, graph, data, seed=5, warn=False)
    # the output reads m1 at the scored position only: 1 copy of 'mlp'; under it, 1 'into mlp' (not T)
    # and 1 'head' (its claim is on m1.in); under the head, 1 'queries' (q is column-local) and T 'keys'
    assert len(pruned.instances) == 1 + (1 + 1 + 1 + 1 + T)
    assert len(full.instances) > len(pruned.instances)

    def local_copy(inst) -> bool:
        parent = full.instances[inst.parent] if inst.parent is not None else None
        if parent is None or parent.position is None or inst.node.name == "keys":
            return True
        return inst.position == parent.position

    manual = _drop(full, local_copy)
    a, b = run_plan(model, full, data), run_plan(model, manual, data)
    assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()
    assert (run_plan(model, pruned, data) - run_reference(model, pruned, data)).abs().max() < 1e-4


def test_open_nodes_match_the_oracle():
    """A node whose children were all removed keeps its random context (it is not a leaf)."""
    model = small_model(n_layers=2, attn_only=False, norm="LN", n_heads=2, d_model=12, d_vocab=VOCAB)
    graph = scrub.ModelGraph.from_model(model)
    data = random_data(np.random.default_rng(8), mask=False)
    h = scrub.Hypothesis("full")
    top = h.output().add("top", model=["a1.0", "m1"], agree=lambda d: d.tokens[:, -1] % 2)
    top.add("low", model="a0.1", port="v", agree=lambda d: d.tokens % 2)
    top.add("emb", model="embed", agree=lambda d: d.tokens[:, 0] % 3)
    opened = h.without("low", "emb")
    assert opened._names["top"].open and not opened._names["top"].children
    assert h.leaves() == ["low", "emb"] or sorted(h.leaves()) == ["emb", "low"]
    plan = scrub.internal.make_plan(opened, graph, data, seed=2, warn=False)
    assert [i.is_leaf for i in plan.instances] == [False, False]
    assert (run_plan(model, plan, data) - run_reference(model, plan, data)).abs().max() < 1e-4
    only = h.only("low")
    assert sorted(only._names) == ["low", "output", "top"]


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1))
def test_leaves_sharing_a_clean_block_match_the_oracle(seed):
    """Hypotheses from edge sets (every feature Exact) have many leaves running the reference itself:
    they share one block, and the numbers are the oracle's."""
    from scrub._attribution import edges_of
    from scrub._discover import hypothesis_from_edges
    from scrub._executor import _layout

    rng = np.random.default_rng(seed)
    model = random_model(rng)
    graph = scrub.ModelGraph.from_model(model)
    data = random_data(rng, mask=model.cfg.attention_dir == "bidirectional" and rng.random() < 0.7)
    edges = edges_of(graph)
    kept = [e for e in edges if rng.random() < 0.85]
    positions = {e: sorted(rng.choice(T, size=int(rng.integers(1, T)), replace=False).tolist())
                 for e in kept if rng.random() < 0.2}
    h = hypothesis_from_edges(graph, kept, positions=positions)
    plan = scrub.internal.make_plan(h, graph, data, seed=seed, warn=False)
    leaves = [i for i in plan.instances if i.is_leaf]
    lay = _layout(plan, merge_attention=data.attention_mask is None)
    hosts = {lay.host[i.index] for i in leaves}
    same = {i.examples.tobytes() for i in leaves}
    assert len(hosts) <= len(same)  # one block per distinct clean example (at most)
    err = (run_plan(model, plan, data) - run_reference(model, plan, data)).abs().max().item()
    assert err < 1e-4, f"executor and oracle disagree by {err:.2e}\n{h.describe()}"
