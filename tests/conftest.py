"""Shared fixtures: small seeded models and datasets built in memory (no downloads)."""

import pytest
import torch

import scrub


def small_model(*, n_layers=2, attn_only=True, norm="LN", n_heads=2, d_model=16, d_vocab=7, n_ctx=8, seed=0, **kw):
    """A seeded random TransformerBridge, small enough for the oracle."""
    return scrub.build_model(
        d_model=d_model, d_head=d_model // n_heads, n_layers=n_layers, n_ctx=n_ctx, n_heads=n_heads,
        d_vocab=d_vocab, attn_only=attn_only, normalization_type=norm, seed=seed, act_fn="gelu", **kw,
    )


@pytest.fixture
def model():
    return small_model(attn_only=False)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 7, (64, 6), generator=g)
    return scrub.Dataset(tokens, labels=torch.randint(0, 7, (64,), generator=g))

