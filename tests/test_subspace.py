"""Subspace claims: exact identities the projection gives, and the executor against the oracle."""

import numpy as np
import pytest
import torch

import scrub
from scrub.errors import HypothesisError
from scrub.internal import make_plan, run_plan, run_reference
from tests.conftest import small_model
from tests.test_oracle import random_data, random_hypothesis

D = 16


@pytest.fixture(scope="module")
def setup():
    model = small_model(attn_only=False, d_model=D, n_heads=2)
    graph = scrub.ModelGraph.from_model(model)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 7, (64, 6), generator=g)
    data = scrub.Dataset(tokens, labels=torch.randint(0, 7, (64,), generator=g))
    return model, graph, data


def hypothesis(subspace=None):
    h = scrub.Hypothesis("h")
    a = h.output().add("A", model="a1.0", agree=lambda d: d.tokens[:, -1] % 3)
    a.add("B", model="a0.1", port="v", agree=lambda d: d.tokens[:, 2] % 2, subspace=subspace)
    return h


def head_output_space(model, layer, head):
    """The row space of W_O[head]: every output of that head lies in it."""
    return scrub.Subspace.span(model.blocks[layer].attn.W_O[head].detach().T.double())


def test_the_whole_space_is_the_ordinary_claim(setup):
    model, graph, data = setup
    plain = make_plan(hypothesis(), graph, data, seed=1)
    full = make_plan(hypothesis(scrub.Subspace(torch.eye(D))), graph, data, seed=1)
    assert torch.allclose(run_plan(model, plain, data), run_plan(model, full, data), atol=1e-5)


def test_the_heads_output_space_is_the_ordinary_claim_and_its_complement_claims_nothing(setup):
    model, graph, data = setup
    space = head_output_space(model, 0, 1)
    assert space.dim == D // 2
    plain = run_plan(model, make_plan(hypothesis(), graph, data, seed=2), data)
    inside = run_plan(model, make_plan(hypothesis(space), graph, data, seed=2), data)
    outside = run_plan(model, make_plan(hypothesis(space.complement()), graph, data, seed=2), data)
    nothing = run_plan(model, make_plan(hypothesis().without("B"), graph, data, seed=2), data)
    assert torch.allclose(plain, inside, atol=1e-5)
    assert torch.allclose(outside, nothing, atol=1e-5)
    assert not torch.allclose(plain, nothing, atol=1e-3)  # the claim matters here


def test_executor_equals_oracle_with_random_subspaces(setup):
    model = small_model(attn_only=False, d_model=12, n_heads=2, d_vocab=6, n_ctx=8)
    graph = scrub.ModelGraph.from_model(model)
    worst = 0.0
    for k in range(12):
        rng = np.random.default_rng(k)
        data = random_data(rng, mask=False)
        h = random_hypothesis(rng, graph, data, max_nodes=5)
        for node in h.nodes()[1:]:
            if rng.random() < 0.6:
                node.subspace = scrub.Subspace.span(torch.from_numpy(rng.normal(size=(12, int(rng.integers(1, 12))))))
        plan = make_plan(h, graph, data, seed=k, warn=False)
        worst = max(worst, (run_plan(model, plan, data) - run_reference(model, plan, data)).abs().max().item())
    assert worst < 1e-4


def test_bad_subspaces_are_refused(setup):
    model, _, data = setup
    with pytest.raises(HypothesisError, match="orthonormal"):
        scrub.Subspace(torch.ones(D, 2))
    with pytest.raises(HypothesisError, match="span only 1"):
        scrub.Subspace.span(torch.ones(D, 2))
    with pytest.raises(HypothesisError, match=r"\[d_model, k\]"):
        scrub.Subspace(torch.eye(3)[:, :0])
    with pytest.raises(HypothesisError, match="must be a scrub.Subspace"):
        scrub.Hypothesis("h").output().add("x", model="a0.0", subspace=torch.eye(D))  # type: ignore[arg-type]
    with pytest.raises(HypothesisError, match="d_model=16"):
        scrub.run(model, hypothesis(scrub.Subspace(torch.eye(8))), data)
    h = hypothesis(scrub.Subspace(torch.eye(D)[:, :3], name="first three"))
    assert "subspace=Subspace('first three', dim 3 of 16)" in h.describe()
    other = hypothesis(scrub.Subspace(torch.eye(D)[:, 3:6]))
    from scrub._experiment import hypothesis_fingerprint

    assert hypothesis_fingerprint(h) != hypothesis_fingerprint(other)
