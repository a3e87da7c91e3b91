"""Interchange-intervention-trained addition: the carry lives in a chosen residual direction.

A 2-layer transformer reads ``a1 a0 b1 b0 =`` (two two-digit numbers, digit by digit) and predicts,
at ``=``, the tens of their sum, ``a1 + b1 + carry`` (0..19), where ``carry = [a0 + b0 >= 10]``.
It was trained (``python -m hypotheses.iit_carry.train``) with the task loss plus an interchange
intervention training (IIT) loss: the component of the residual entering layer :data:`LAYER` at
position :data:`POSITION` (the ``=`` token) along :data:`CARRY_DIRECTION` (the first standard basis
vector) is swapped in from a source example, and the model must then answer
``a1 + b1 + carry(source)``. So the ground truth is known: the carry sits in that direction.

>>> from hypotheses import iit_carry
>>> model = iit_carry.load_model()
>>> data = iit_carry.make_data(100, seed=0)
>>> data.tokens.shape
torch.Size([100, 5])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import scrub

__all__ = [
    "CONFIG", "WEIGHTS", "LAYER", "POSITION", "EQUALS", "load_model", "make_data", "carry_subspace", "carry",
    "counterfactual", "digits",
]

#: The model's TransformerBridgeConfig (passed to ``scrub.build_model``).
CONFIG: dict[str, Any] = dict(
    n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=128, attn_only=False, normalization_type="LN",
    act_fn="gelu", d_vocab=11, d_vocab_out=20, n_ctx=5, attention_dir="causal", positional_embedding_type="standard",
    seed=0,
)
#: The committed trained weights.
WEIGHTS: Path = Path(__file__).with_name("model.safetensors")
#: The site of the carry: the residual entering this layer ...
LAYER: int = 1
#: ... at this position (the ``=`` token).
POSITION: int = 4
#: Token id of ``=`` (digits are their own ids 0..9).
EQUALS: int = 10


def carry_subspace() -> scrub.Subspace:
    """The direction the carry was trained into: the first standard basis vector of the residual."""
    return scrub.Subspace(torch.eye(CONFIG["d_model"], dtype=torch.float64)[:, :1], name="carry (trained)")


def load_model():
    """The trained model from :data:`WEIGHTS` (a ``TransformerBridge`` in eval mode)."""
    model = scrub.load_model(WEIGHTS)
    model.eval()
    return model


def digits(n: int, seed: int = 0) -> np.ndarray:
    """``[n, 4]`` uniform digits ``a1 a0 b1 b0``."""
    return np.random.default_rng(seed).integers(0, 10, size=(n, 4))


def make_data(n: int, seed: int = 0) -> scrub.Dataset:
    """``n`` random additions: tokens ``a1 a0 b1 b0 =`` ``[n, 5]``, label the tens of the sum (0..19).

    Columns: ``a1``, ``a0``, ``b1``, ``b0``, ``carry`` (0/1) and ``tens`` (the label).
    """
    d = digits(n, seed)
    c = (d[:, 1] + d[:, 3] >= 10).astype(np.int64)
    tens = d[:, 0] + d[:, 2] + c
    tokens = np.concatenate([d, np.full((n, 1), EQUALS)], 1)
    cols = pd.DataFrame({"a1": d[:, 0], "a0": d[:, 1], "b1": d[:, 2], "b0": d[:, 3], "carry": c, "tens": tens})
    return scrub.Dataset(torch.as_tensor(tokens), torch.as_tensor(tens), columns=cols)


def carry(data: scrub.Dataset) -> np.ndarray:
    """The high-level variable: ``[N]`` carries (0/1)."""
    return data.columns["carry"].to_numpy()


def counterfactual(data: scrub.Dataset, base: np.ndarray, values: np.ndarray) -> torch.Tensor:
    """The high-level model: the base's ``a1 + b1`` plus the carry set to ``values`` (for ``scrub.das``)."""
    a1 = data.columns["a1"].to_numpy()[base]
    b1 = data.columns["b1"].to_numpy()[base]
    return torch.as_tensor(a1 + b1 + np.asarray(values, dtype=np.int64))
