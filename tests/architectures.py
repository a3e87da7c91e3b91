"""The test matrix of architectures: one tiny random model per supported architecture, built offline.

Every row of :func:`scrub.supported_architectures` marked ``exact`` has a builder here (the test
suite fails otherwise), so the documented table is the matrix that was tested.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch

import scrub

D, HEADS, LAYERS, VOCAB, CTX, MLP = 32, 4, 2, 11, 8, 64


def _hf(name: str, seed: int = 0, **over):
    import transformers as T

    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, num_hidden_layers=LAYERS, max_position_embeddings=CTX)
    if name == "GPT2LMHeadModel":
        cfg = T.GPT2Config(vocab_size=VOCAB, n_embd=D, n_layer=LAYERS, n_head=HEADS, n_positions=CTX, **over)
    elif name == "OPTForCausalLM":
        cfg = T.OPTConfig(hidden_size=D, num_attention_heads=HEADS, ffn_dim=MLP, word_embed_proj_dim=D, **common, **over)
    elif name == "GPTNeoXForCausalLM":
        cfg = T.GPTNeoXConfig(hidden_size=D, num_attention_heads=HEADS, intermediate_size=MLP, **common, **over)
    elif name == "GPTJForCausalLM":
        cfg = T.GPTJConfig(vocab_size=VOCAB, n_embd=D, n_layer=LAYERS, n_head=HEADS, n_positions=CTX, rotary_dim=4, **over)
    elif name == "PhiForCausalLM":
        cfg = T.PhiConfig(hidden_size=D, num_attention_heads=HEADS, intermediate_size=MLP, **common, **over)
    else:
        cls = {"LlamaForCausalLM": T.LlamaConfig, "MistralForCausalLM": T.MistralConfig, "Qwen2ForCausalLM": T.Qwen2Config,
               "GemmaForCausalLM": T.GemmaConfig, "Gemma2ForCausalLM": T.Gemma2Config, "Gemma3ForCausalLM": None}[name]
        if cls is None:
            cls = T.Gemma3TextConfig
        kv = over.pop("num_key_value_heads", 1 if name == "GemmaForCausalLM" else 2)
        cfg = cls(hidden_size=D, num_attention_heads=HEADS, num_key_value_heads=kv, intermediate_size=MLP,
                  head_dim=D // HEADS, **common, **over)
    model_cls = getattr(T, name if name != "Gemma3ForCausalLM" else "Gemma3ForCausalLM")
    return model_cls(cfg).eval()


def _randomize_biases(hf_model, seed: int) -> None:
    """Freshly initialised HF biases are zero: make them non-zero so that bias handling is tested."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def hf_model(name: str, seed: int = 0, **over):
    """A tiny random HuggingFace model of class ``name`` (non-zero biases where it has them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = _hf(name, seed, **over)
    _randomize_biases(m, seed)
    return m


def native(seed: int = 0, **over):
    cfg = dict(
        d_model=D, d_head=D // HEADS, n_layers=LAYERS, n_ctx=CTX, n_heads=HEADS, d_vocab=VOCAB,
        normalization_type="LN", act_fn="gelu", seed=seed,
    )
    with contextlib.redirect_stdout(io.StringIO()):
        return scrub.build_model(**{**cfg, **over})


# name in the table -> builder of a scrub-ready bridge
BUILDERS = {
    "TransformerLensNative": lambda seed=0: native(seed),
    "TransformerLensNative/rotary": lambda seed=0: native(seed, positional_embedding_type="rotary"),
    "TransformerLensNative/grouped-query": lambda seed=0: native(seed, positional_embedding_type="rotary", n_key_value_heads=2),
    "TransformerLensNative/rms-gated": lambda seed=0: native(seed, normalization_type="RMS", gated_mlp=True, act_fn="silu"),
    **{
        name: (lambda seed=0, name=name: scrub.from_hf(hf_model(name, seed)))
        for name in [
            "GPT2LMHeadModel", "OPTForCausalLM", "GPTNeoXForCausalLM", "LlamaForCausalLM", "MistralForCausalLM",
            "Qwen2ForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM", "GPTJForCausalLM", "PhiForCausalLM",
        ]
    },
}
