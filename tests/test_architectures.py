"""Every supported architecture, exact against the model's own forward; every unsupported one refused.

Tiny random models (2 layers, d_model 32, 4 heads) of each HuggingFace class and TransformerLens-native
variant in ``tests/architectures.py``, built offline. For each: all-Exact is the model to 1e-5,
claiming nothing or everything with Random() is the baseline's computation, and the executor equals
the oracle (which computes heads by overwriting the q/k/v projections' inputs, not by the executor's
kv-group indexing) on 20 random hypotheses. A grouped-query model equals its twin with every kv
head repeated, on random hypotheses.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import scrub
from scrub.errors import GraphError, UnsupportedModelError
from scrub._executor import run_clean, run_plan
from scrub._reference import run_reference
from tests.architectures import BUILDERS, CTX, VOCAB, hf_model, native
from tests.test_oracle import random_hypothesis

NAMES = list(BUILDERS)
N, T = 16, 6


@pytest.fixture(scope="module")
def models():
    return {}


def get(models, name):
    if name not in models:
        models[name] = BUILDERS[name]()
    return models[name]


def dataset(seed: int = 0, n: int = N) -> scrub.Dataset:
    import pandas as pd

    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (n, T), generator=g)
    return scrub.Dataset(
        tokens, labels=torch.randint(0, VOCAB, (n,), generator=g),
        columns=pd.DataFrame({"parity": (tokens.sum(1) % 2).numpy()}),
    )


def claim_everything(node, comps, graph, agree):
    node.add(f"{node.name}/inputs", model=list(graph.inputs), agree=agree)
    ups = [c for c in graph.components
           if graph.kind(c) not in ("input", "output") and any(graph.feeds(c, n, p) for n in comps for p in graph.ports(n))]
    if ups:
        child = node.add(f"{node.name}/up", model=ups, agree=agree)
        claim_everything(child, ups, graph, agree)


def test_the_table_is_the_matrix():
    """Every exact row of the documented table has a builder here, and every refused row a refusal test."""
    table = scrub.supported_architectures()
    exact = set(table[table.status == "exact"].architecture)
    assert exact == {n.split("/")[0] for n in NAMES}
    assert set(table[table.status == "refused"].architecture) == set(REFUSED_HF)


@pytest.mark.parametrize("name", NAMES)
def test_all_exact_is_the_model(models, name):
    m = get(models, name)
    graph = scrub.ModelGraph.from_model(m)
    data = dataset(1)
    h = scrub.Hypothesis("everything")
    claim_everything(h.output(), ["out"], graph, scrub.Exact())
    plan = scrub.internal.make_plan(h, graph, data, seed=0)
    assert sum(not i.is_leaf for i in plan.instances) >= graph.n_layers + 1
    scrubbed = run_plan(m, plan, data)
    with torch.no_grad():
        own = m(data.tokens)[:, -1].float()  # the model's own forward, not scrub's unembedding
    assert (scrubbed - own).abs().max().item() < 1e-5
    assert (run_clean(m, data) - own).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_all_random_is_the_baseline(models, name):
    m = get(models, name)
    graph = scrub.ModelGraph.from_model(m)
    data = dataset(2)
    clean = run_clean(m, data)
    base = scrub.internal.make_plan(scrub.fully_scrubbed(), graph, data, seed=4)
    np.testing.assert_allclose(run_plan(m, base, data), clean[base.root.random], atol=1e-5, rtol=0)
    h = scrub.Hypothesis("all random")
    h.output().add("all", model=[c for c in graph.components if c != "out"], agree=scrub.Random())
    plan = scrub.internal.make_plan(h, graph, data, seed=4)
    np.testing.assert_allclose(run_plan(m, plan, data), clean[plan.instances[1].examples], atol=1e-5, rtol=0)
    # and the loss a run reports for it is the baseline's computation on other random examples
    r = scrub.run(m, scrub.fully_scrubbed(), data, seed=4, n_boot=200)
    expected = F.cross_entropy(clean[base.root.random], data.labels, reduction="none").numpy()
    np.testing.assert_allclose(r.table().loss_scrubbed, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_executor_equals_oracle_on_random_hypotheses(models, name):
    m = get(models, name)
    graph = scrub.ModelGraph.from_model(m)
    worst, sizes = 0.0, []
    for k in range(20):
        rng = np.random.default_rng(1000 + k)
        data = dataset(k, n=6)
        h = random_hypothesis(rng, graph, data, max_nodes=5)
        plan = scrub.internal.make_plan(h, graph, data, seed=k, warn=False)
        with warnings.catch_warnings():  # small random batch sizes are the point: their warning is expected
            warnings.filterwarnings("ignore", message="batch_size=.* is smaller than the plan", category=UserWarning)
            fast = run_plan(m, plan, data, batch_size=int(rng.integers(1, 200)))
        slow = run_reference(m, plan, data)
        worst = max(worst, (fast - slow).abs().max().item())
        sizes.append(len(plan.instances))
    assert worst < 1e-4, f"{name}: executor and oracle differ by {worst:.2e}"
    assert max(sizes) >= 4  # the random hypotheses are not all trivial


def _repeat_kv_twin(gqa):
    """The same function with every kv head repeated for its query heads (n_kv = n_heads)."""
    twin = hf_model("LlamaForCausalLM", num_key_value_heads=4)
    sd = gqa.state_dict()
    group = gqa.config.num_attention_heads // gqa.config.num_key_value_heads
    d_head = gqa.config.hidden_size // gqa.config.num_attention_heads
    new = {}
    for k, v in sd.items():
        if k.endswith(("k_proj.weight", "v_proj.weight")):
            v = v.reshape(-1, d_head, v.shape[-1]).repeat_interleave(group, dim=0).reshape(-1, v.shape[-1])
        new[k] = v
    twin.load_state_dict(new)
    return twin


def test_grouped_query_equals_its_repeated_kv_twin():
    gqa_hf = hf_model("LlamaForCausalLM", seed=3)
    twin_hf = _repeat_kv_twin(gqa_hf)
    gqa, twin = scrub.from_hf(gqa_hf), scrub.from_hf(twin_hf)
    assert scrub.Architecture.of(gqa).n_kv_heads == 2 and scrub.Architecture.of(twin).n_kv_heads == 4
    data = dataset(5)
    assert (run_clean(gqa, data) - run_clean(twin, data)).abs().max().item() < 1e-5
    graph = scrub.ModelGraph.from_model(gqa)
    # a claim into one head's keys: head 1 is in kv group 0, which head 0 also reads
    h = scrub.Hypothesis("head 1 keys")
    a = h.output().add("a1.1", model="a1.1", agree=scrub.Exact())
    a.add("k", model=["a0.0", "a0.2"], port="k", agree="parity")
    plans = [scrub.internal.make_plan(h, graph, data, seed=0)]
    for k in range(12):
        rng = np.random.default_rng(50 + k)
        plans.append(scrub.internal.make_plan(random_hypothesis(rng, graph, data, max_nodes=5), graph, data, seed=k, warn=False))
    for plan in plans:
        x, y = run_plan(gqa, plan, data), run_plan(twin, plan, data)
        assert (x - y).abs().max().item() < 1e-5, plan.hypothesis.describe()


def test_grouped_query_claim_on_a_later_head_in_a_group():
    """``a1.3`` at port v used to raise IndexError (the kv tensor has 2 rows); it is head 3's own claim now."""
    m = native(positional_embedding_type="rotary", n_key_value_heads=2)
    graph = scrub.ModelGraph.from_model(m)
    data = dataset(6)
    h = scrub.Hypothesis("v of a1.3")
    h.output().add("a1.3", model="a1.3", agree=scrub.Exact()).add("v", model="embed", port="v", agree="parity")
    plan = scrub.internal.make_plan(h, graph, data, seed=1)
    np.testing.assert_allclose(run_plan(m, plan, data), run_reference(m, plan, data), atol=1e-4, rtol=0)


def test_parallel_blocks_have_no_same_layer_head_to_mlp_edges(models):
    for name in ["GPTNeoXForCausalLM", "GPTJForCausalLM", "PhiForCausalLM"]:
        graph = scrub.ModelGraph.from_model(get(models, name))
        assert graph.parallel
        assert not graph.feeds("a1.0", "m1", "in") and graph.feeds("a0.0", "m1", "in") and graph.feeds("m0", "m1", "in")
    graph = scrub.ModelGraph.from_model(get(models, "LlamaForCausalLM"))
    assert not graph.parallel and graph.feeds("a1.0", "m1", "in")


def test_rotary_models_have_no_pos_node(models):
    m = get(models, "LlamaForCausalLM")
    graph = scrub.ModelGraph.from_model(m)
    assert graph.inputs == ("embed",)
    h = scrub.Hypothesis("pos")
    h.output().add("pos", model="pos")
    with pytest.raises(GraphError, match="rotary"):
        h.validate(graph)


# -- refusals -------------------------------------------------------------------------------
REFUSED_HF = ["Gemma3ForCausalLM"]


@pytest.mark.parametrize("name", REFUSED_HF)
def test_unchecked_architectures_in_the_table_are_refused(name):
    with pytest.raises(UnsupportedModelError, match="not supported"):
        scrub.from_hf(hf_model(name))


def test_post_norm_models_refuse_per_head_claims_and_offer_the_layer(models):
    """Gemma 2 normalises each attention layer's output as a whole: one head's share is undefined."""
    m = get(models, "Gemma2ForCausalLM")
    graph = scrub.ModelGraph.from_model(m)
    assert graph.whole_layers and "a1" in graph.components and "a1.0" not in graph.components
    h = scrub.Hypothesis("one head")
    h.output().add("head", model="a1.0")
    with pytest.raises(GraphError, match="claim the whole layer instead: 'a1'"):
        h.validate(graph)
    arch = scrub.Architecture.of(m)
    assert arch.post_norms and arch.logit_soft_cap == 30.0


def test_post_norm_sums_are_checked_when_bridged_by_hand():
    """The self-check reads the post-norm outputs: a bridge built without scrub.from_hf passes it too."""
    from transformer_lens.model_bridge.sources import build_bridge_from_module

    m = hf_model("Gemma2ForCausalLM", seed=2)
    bridge = build_bridge_from_module(m, type(m).__name__, hf_config=m.config)
    graph = scrub.ModelGraph.from_model(bridge)
    assert graph.components == ["embed", "a0", "m0", "a1", "m1", "out"]


def test_native_parallel_config_is_refused():
    with pytest.raises(UnsupportedModelError, match="parallel_attn_mlp"):
        scrub.ModelGraph.from_model(native(parallel_attn_mlp=True))


def test_other_positional_embeddings_are_refused():
    m = native()
    m.cfg.positional_embedding_type = "shortformer"
    try:
        with pytest.raises(UnsupportedModelError, match="shortformer"):
            scrub.Architecture.of(m)
    finally:
        m.cfg.positional_embedding_type = "standard"


def test_encoder_decoder_is_refused():
    import transformers as T

    cfg = T.T5Config(vocab_size=VOCAB, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4)
    with pytest.raises(UnsupportedModelError, match="encoder-decoder"):
        scrub.from_hf(T.T5ForConditionalGeneration(cfg))


def test_mixture_of_experts_is_refused():
    import transformers as T

    cfg = T.MixtralConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=4, num_key_value_heads=2, num_local_experts=2, max_position_embeddings=CTX)
    with pytest.raises(UnsupportedModelError, match="mixture-of-experts"):
        scrub.from_hf(T.MixtralForCausalLM(cfg))


def test_untested_architectures_are_refused():
    import transformers as T

    cfg = T.BloomConfig(vocab_size=VOCAB, hidden_size=16, n_layer=1, n_head=4)
    with pytest.raises(UnsupportedModelError, match="not supported yet"):
        scrub.from_hf(T.BloomForCausalLM(cfg))


def test_not_a_model_is_refused():
    with pytest.raises(UnsupportedModelError, match="HuggingFace"):
        scrub.from_hf("gpt2")
    with pytest.raises(UnsupportedModelError, match="TransformerLens"):
        scrub.ModelGraph.from_model(object())


def test_a_residual_that_is_not_a_sum_is_refused():
    """The one-forward self-check: a model whose blocks add something the graph does not know of."""
    m = native(seed=3)
    m.blocks[1].hook_resid_pre.add_hook(lambda x, hook: x * 1.5, is_permanent=True)
    with pytest.raises(UnsupportedModelError, match="not the sum|does not read"):
        scrub.Architecture.of(m)


def test_from_hf_needs_no_tokenizer_and_no_hub():
    m = scrub.from_hf(hf_model("LlamaForCausalLM"))
    assert m.cfg.architecture == "LlamaForCausalLM" and not m.training
