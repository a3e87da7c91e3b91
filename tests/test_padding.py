"""Padded data: which blocks may merge, and the executor still equals the oracle.

An MLP or the output reads nothing but its (overwritten) input, so it always shares its context's
block. A head also reads its example's padding mask: on native models the executor gives a merged
head its own example's mask for that layer only; on HuggingFace models, which build their own masks,
only references whose examples share their context's mask merge, and the others run unmerged.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import scrub
from scrub._executor import _layout, _merge_groups, n_blocks, run_plan
from scrub._reference import run_reference
from tests.architectures import BUILDERS, VOCAB
from tests.test_oracle import random_hypothesis

T = 6


def padded_data(seed: int, n: int = 8) -> scrub.Dataset:
    """Half the examples unpadded, half right-padded; each scored at a position it attends to."""
    rng = np.random.default_rng(seed)
    tokens = torch.from_numpy(rng.integers(0, VOCAB, size=(n, T)))
    lengths = np.where(np.arange(n) % 2 == 0, T, rng.integers(3, T, size=n))
    mask = torch.from_numpy((np.arange(T)[None, :] < lengths[:, None]).astype(np.int64))
    return scrub.Dataset(
        tokens, labels=torch.from_numpy(rng.integers(0, VOCAB, size=n)),
        columns=pd.DataFrame({"parity": (tokens.sum(1) % 2).numpy()}),
        target_pos=torch.from_numpy(lengths - 1), attention_mask=mask,
    )


def head_tree() -> scrub.Hypothesis:
    """A layer-1 head instance (non-leaf) and an MLP instance, each with a child."""
    h = scrub.Hypothesis("heads and an MLP")
    head = h.output().add("head", model="a1.1", agree="parity")
    head.add("key writer", model="a0.0", port="k", agree=lambda d: d.tokens[:, 0] % 2)
    mlp = h.output().add("mlp", model="m1", agree=lambda d: d.tokens[:, 1] % 3)
    mlp.add("embed", model="embed", agree=lambda d: d.tokens[:, 1])
    return h


@pytest.mark.parametrize("name", ["TransformerLensNative/rotary", "LlamaForCausalLM", "GPT2LMHeadModel"])
def test_padded_executor_equals_oracle(name):
    m = BUILDERS[name]()
    graph = scrub.ModelGraph.from_model(m)
    worst, checked = 0.0, 0
    for k in range(6):
        rng = np.random.default_rng(50 + k)
        data = padded_data(k)
        h = head_tree() if k == 0 else random_hypothesis(rng, graph, data, max_nodes=5)
        plan = scrub.internal.make_plan(h, graph, data, seed=k, warn=False)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="batch_size=.* is smaller than the plan", category=UserWarning)
            fast = run_plan(m, plan, data, batch_size=int(rng.integers(1, 40)))
        worst = max(worst, (fast - run_reference(m, plan, data)).abs().max().item())
        checked += 1
    assert checked == 6 and worst < 1e-4, f"{name}: executor and oracle differ by {worst:.2e} on padded data"


def test_mlp_and_output_instances_merge_on_padded_data():
    m = BUILDERS["LlamaForCausalLM"]()
    graph = scrub.ModelGraph.from_model(m)
    data = padded_data(1)
    plan = scrub.internal.make_plan(head_tree(), graph, data, seed=0, warn=False)
    # output, head, MLP (each host + context unless merged) and two leaves
    assert _layout(plan, merge_attention=False).n_blocks == 1 + 2 + 1 + 2
    assert _layout(plan, merge_attention=True).n_blocks == 1 + 1 + 1 + 2


def test_huggingface_references_merge_only_where_masks_agree():
    m = BUILDERS["LlamaForCausalLM"]()
    graph = scrub.ModelGraph.from_model(m)
    data = padded_data(2, n=40)
    plan = scrub.internal.make_plan(head_tree(), graph, data, seed=0, warn=False)
    groups = dict(_merge_groups(plan, data, per_layer_masks=False))
    assert set(groups) == {True, False} and sum(len(r) for r in groups.values()) == plan.n
    (head,) = [i for i in plan.instances if i.node.name == "head"]
    mask = data.attention_mask
    same = (mask[head.examples] == mask[head.random]).all(1).numpy()
    np.testing.assert_array_equal(np.sort(groups[True]), np.flatnonzero(same))
    # a native model gives each merged head its own mask instead: one group, every block merged
    assert [(merge, len(r)) for merge, r in _merge_groups(plan, data, per_layer_masks=True)] == [(True, plan.n)]
    native = BUILDERS["TransformerLensNative/rotary"]()
    merged, unmerged = _layout(plan, merge_attention=True), _layout(plan, merge_attention=False)
    assert merged.n_blocks < unmerged.n_blocks
    assert n_blocks(plan, data, native) == merged.width(len(data)) < n_blocks(plan, data, m)
