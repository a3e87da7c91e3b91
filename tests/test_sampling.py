"""The sampler: agreeing draws, uniform within a group, one random context per instance."""

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import scrub
from scrub._sampling import Sampler, evaluate_feature


def dataset(values: np.ndarray, t: int = 3) -> scrub.Dataset:
    n = len(values)
    return scrub.Dataset(torch.zeros(n, t, dtype=torch.long), columns=pd.DataFrame({"f": values}))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.lists(st.integers(0, 4), min_size=2, max_size=80),
    st.integers(0, 2**32 - 1),
)
def test_every_draw_agrees_with_its_reference(values, seed):
    values = np.array(values)
    data = dataset(values)
    s = Sampler(evaluate_feature("f", data, "f"), len(values))
    rng = np.random.default_rng(seed)
    refs = rng.integers(0, len(values), size=200)
    drawn = s.draw(refs, rng)
    assert (values[drawn] == values[refs]).all()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(0, 2**32 - 1), st.integers(2, 5), st.integers(2, 6))
def test_per_position_draws_agree_at_their_position(seed, k, t):
    rng = np.random.default_rng(seed)
    tokens = torch.from_numpy(rng.integers(0, k, size=(30, t)))
    data = scrub.Dataset(tokens)
    s = Sampler(evaluate_feature(lambda d: d.tokens, data, "p"), 30)
    refs = rng.integers(0, 30, size=50)
    for p in range(t):
        drawn = s.draw(refs, rng, position=p)
        assert (tokens[drawn, p] == tokens[refs, p]).all()


def test_draws_are_uniform_within_a_group():
    """Chi-square on the draws for one reference whose group has 10 members (fixed seed)."""
    values = np.array([0] * 10 + [1] * 25 + [2] * 5)
    s = Sampler(evaluate_feature("f", dataset(values), "f"), len(values))
    rng = np.random.default_rng(123)
    draws = s.draw(np.full(20_000, 3), rng)  # example 3 is in group 0 (examples 0..9)
    counts = np.bincount(draws, minlength=len(values))
    assert counts[10:].sum() == 0
    expected = 20_000 / 10
    chi2 = ((counts[:10] - expected) ** 2 / expected).sum()
    assert chi2 < 27.88  # chi-square, 9 degrees of freedom, p = 0.001
    assert chi2 > 0.5  # and not suspiciously even (a deterministic round-robin would give ~0)


def test_exact_and_random():
    data = dataset(np.arange(10))
    rng = np.random.default_rng(0)
    refs = np.arange(10)
    assert (Sampler(evaluate_feature(scrub.Exact(), data), 10).draw(refs, rng) == refs).all()
    r = Sampler(evaluate_feature(scrub.Random(), data), 10).draw(np.zeros(5000, dtype=int), rng)
    assert len(np.unique(r)) == 10


def test_unique_feature_warns_with_the_node_name():
    s = Sampler(evaluate_feature("f", dataset(np.arange(20)), "my node"), 20, "my node")
    with pytest.warns(UserWarning, match=r"'my node'.*20 distinct"):
        s.warn_if_unique()


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(0, 2**32 - 1))
def test_plan_agreement_shared_random_context_and_size(seed):
    """For random features: children agree with their parent's example; one random context per instance;
    the plan's size equals the treeified tree's."""
    rng = np.random.default_rng(seed)
    n, t = 40, 4
    tokens = torch.from_numpy(rng.integers(0, 3, size=(n, t)))
    data = scrub.Dataset(tokens, labels=torch.zeros(n, dtype=torch.long))
    graph = scrub.ModelGraph.build(n_layers=2, n_heads=2, attn_only=True)
    j = int(rng.integers(0, t))
    h = scrub.Hypothesis("p")
    a = h.output().add("a", model=["a1.0", "a1.1"], agree=lambda d: d.tokens[:, j] % 2)
    b = a.add("b", model="a0.0", port="k", agree=lambda d: d.tokens)  # per position: t instances
    b.add("c", model="embed", agree=lambda d: d.tokens[:, 0])
    a.add("d", model="embed", port="q", agree=scrub.Random())
    plan = scrub.internal.make_plan(h, graph, data, seed=seed, warn=False)
    assert len(plan.instances) == 1 + 1 + t * 2 + 1
    for inst in plan.instances[1:]:
        parent = plan.instances[inst.parent]
        ex, ref = inst.examples, parent.examples
        if inst.node.name == "a":
            assert (tokens[ex, j] % 2 == tokens[ref, j] % 2).all()
        elif inst.node.name == "b":
            assert (tokens[ex, inst.position] == tokens[ref, inst.position]).all()
        elif inst.node.name == "c":
            assert (tokens[ex, 0] == tokens[ref, 0]).all()
    # one shared random example per non-leaf instance, none for leaves
    assert all((i.random is None) == (not i.children and i.parent is not None) for i in plan.instances)
    assert plan.n_random == 1 + 1 + t
