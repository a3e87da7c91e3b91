"""The Llama induction entry of the zoo (a modern architecture: rotary, RMSNorm, gated MLP,
grouped-query attention, no biases): the committed weights load through ``scrub.from_hf`` and solve
the task, the heads the hypotheses name are still the model's, and the refined and a false hypothesis
keep their scores. The whole ladder is checked by the suite (``scrub suite hypotheses -k llama``)."""

import pytest
import torch

import scrub
from hypotheses.llama_induction import HF_CONFIG, load, load_hf, locate_heads, make_data
from hypotheses.llama_induction.heads import kv_group, position_scores
from hypotheses.llama_induction.hypotheses import HEADS, OTHER_LAYER0, false_qk_swapped, false_wrong_prev_head, refined
from hypotheses.llama_induction.suite import CASES
from hypotheses.llama_induction.train import evaluate


@pytest.fixture(scope="module")
def model():
    return load()


def test_weights_are_a_llama_with_grouped_query_attention():
    hf = load_hf()
    cfg = hf.config
    assert type(hf).__name__ == "LlamaForCausalLM"
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.num_hidden_layers, cfg.hidden_size) == (4, 2, 2, 64)
    assert not cfg.attention_bias and not cfg.mlp_bias and cfg.vocab_size == HF_CONFIG["vocab_size"]
    assert not any("bias" in k for k in hf.state_dict())


def test_model_solves_induction(model):
    ev = evaluate(model, n=500, seed=7)
    assert ev["accuracy"] > 0.99, ev
    assert ev["loss"] < 0.6, ev  # uniform guessing: ln(100) = 4.6
    graph = scrub.ModelGraph.from_model(model)
    assert "pos" not in graph.components and "m1" in graph.components


def test_located_heads_are_the_named_ones(model):
    found = locate_heads(model)
    assert found["prev_token"] == HEADS["prev_token"]
    assert sorted(found["induction"]) == sorted(HEADS["induction"])
    assert sorted(OTHER_LAYER0 + HEADS["prev_token"]) == [f"a0.{h}" for h in range(4)]
    assert found["scores"]["prev_token"]["a0.3"] > 0.8 and found["scores"]["induction"]["a1.0"] > 0.8
    prev = position_scores(model, make_data(100, seed=3))["prev"]
    assert prev["a0.3"] > 0.8 and max(prev[h] for h in OTHER_LAYER0) < 0.4
    # the induction heads a1.0, a1.1 share kv group 0; a1.3 shares group 1 with a1.2, which is not one
    assert [kv_group(h) for h in ("a1.0", "a1.1", "a1.2", "a1.3")] == [0, 0, 1, 1]


def test_refined_recovers_and_false_ones_do_not(model):
    # N=100, 1 seed: refined about 0.99 and the false one about 0.2 there (sd about 0.01 and 0.03 at
    # this size), far from the bounds
    data = make_data(100, seed=99)
    r_refined, r_swapped = scrub.run_many(model, [refined(), false_qk_swapped()], data, seed=0, progress=False)
    assert r_refined.loss_recovered >= 0.95, r_refined
    assert r_swapped.loss_recovered <= 0.5, r_swapped
    assert r_refined.loss_model < 0.6 < 4.0 < r_refined.loss_baseline


def test_suite_covers_the_ladder():
    kinds = {c.name.split("/", 1)[1]: c.kind for c in CASES}
    assert kinds["naive"] == "true" and kinds["refined"] == "refined"
    assert {k for k, v in kinds.items() if v == "path"} == {"path_q", "path_k", "path_v"}
    assert {k for k, v in kinds.items() if v == "false"} >= {"false_wrong_prev_head", "false_qk_swapped"}
    assert len(kinds) == len(CASES)
    for c in CASES:
        lo, hi = c.expected
        assert hi - lo <= 0.25, c.name  # ranges are measured, not placeholders
        if c.kind == "refined":
            assert lo >= 0.95, c.name
        if c.kind == "false":
            assert hi <= 0.5, c.name


def test_argument_errors():
    with pytest.raises(ValueError, match="previous-token head"):
        false_wrong_prev_head(wrong="a0.3")
    with pytest.raises(ValueError, match="kv_group"):
        kv_group("a1.4")
