"""The Llama induction entry's model config and data: the induction entry's generator at this size.

The task and its data are those of :mod:`hypotheses.induction.data` (a segment ``A``, a random
gap, ``A`` again; evaluation examples end inside the second copy, so the next token is fixed by
induction), only with a longer context (:data:`N_CTX`) and a larger vocabulary (:data:`D_VOCAB`).
The functions here call that module's with these sizes; nothing is copied.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hypotheses.induction import data as _induction
from scrub._dataset import Dataset

__all__ = ["HF_CONFIG", "N_CTX", "D_VOCAB", "hf_config", "train_batch", "TrainBatches", "make_data", "repeated_tokens"]

#: Context length (positions the model reads) and vocabulary size.
N_CTX: int = 32
D_VOCAB: int = 100

#: The ``transformers.LlamaConfig`` keyword arguments of the model: 2 layers, d_model 64, 4 query
#: heads sharing 2 key/value heads (grouped-query attention), head size 16, a gated SiLU MLP of
#: width 128, RMSNorm, rotary positions, no biases anywhere, untied unembedding.
HF_CONFIG: dict[str, Any] = dict(
    vocab_size=D_VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=N_CTX,
    hidden_act="silu",
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    attention_bias=False,
    mlp_bias=False,
    tie_word_embeddings=False,
)


def hf_config(**overrides: Any):
    """A ``transformers.LlamaConfig`` from :data:`HF_CONFIG` (plus ``overrides``), eager attention."""
    from transformers import LlamaConfig

    config = LlamaConfig(**{**HF_CONFIG, **overrides})
    config._attn_implementation = "eager"  # plain softmax attention: deterministic, what the bridge computes
    return config


def train_batch(rng: np.random.Generator, batch: int) -> torch.Tensor:
    """One training batch ``[batch, N_CTX + 1]`` (see :func:`hypotheses.induction.data.train_batch`)."""
    return _induction.train_batch(rng, batch, N_CTX, D_VOCAB)


class TrainBatches(_induction.TrainBatches):
    """An endless, seeded stream of training batches at this entry's sizes."""

    def __init__(self, seed: int, batch: int) -> None:
        super().__init__(seed, batch, N_CTX, D_VOCAB)


def make_data(n: int, seed: int = 0) -> Dataset:
    """``n`` evaluation examples of length :data:`N_CTX` (see :func:`hypotheses.induction.data.make_data`
    for the layout and the columns: ``label``, ``current_token``, ``prev_token``, ``prev_occurrence``, ...)."""
    return _induction.make_data(n, seed, n_ctx=N_CTX, d_vocab=D_VOCAB)


def repeated_tokens(n: int, seed: int = 0, *, half: int | None = None) -> torch.Tensor:
    """``[n, 2 * half]`` sequences ``x x`` of distinct random tokens (``half`` defaults to ``N_CTX // 2``)."""
    return _induction.repeated_tokens(n, seed, half=half, n_ctx=N_CTX, d_vocab=D_VOCAB)
