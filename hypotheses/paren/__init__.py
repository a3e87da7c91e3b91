"""Paren balancer: a classifier of balanced parenthesis strings, in Redwood's architecture.

The causal scrubbing paper's paren balancer: 3 layers, 2 heads each, d_model 56,
MLPs, layer norm, bidirectional attention, vocab 5 (pad, start, end, ``(``, ``)``),
up to 40 parens between a start and an end token (n_ctx 42), pads masked through
the attention mask, and a 2-class head (0 unbalanced, 1 balanced) read at the
start position, 0. The weights are trained here by ``python -m hypotheses.paren.train``.

Always pass the mask: ``model(data.tokens, attention_mask=data.attention_mask)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import scrub
from hypotheses.paren.data import CLOSE, END, MAX_LEN, N_CTX, OPEN, PAD, START, VOCAB, make_data, make_decorrelated_data

__all__ = [
    "CONFIG", "WEIGHTS", "load_model", "make_data", "make_decorrelated_data",
    "PAD", "START", "END", "OPEN", "CLOSE", "VOCAB", "MAX_LEN", "N_CTX",
]

CONFIG: dict[str, Any] = {
    "n_layers": 3,
    "n_heads": 2,
    "d_model": 56,
    "d_head": 28,
    "d_mlp": 224,
    "d_vocab": len(VOCAB),
    "d_vocab_out": 2,
    "n_ctx": N_CTX,
    "act_fn": "gelu",
    "normalization_type": "LN",
    "attention_dir": "bidirectional",
    "positional_embedding_type": "standard",
}
"""The ``TransformerBridgeConfig`` fields of the model (give them to :func:`scrub.build_model`)."""

WEIGHTS: Path = Path(__file__).with_name("model.safetensors")
"""The trained weights, written by ``python -m hypotheses.paren.train``."""


def load_model(path: str | Path | None = None, device: str = "cpu"):
    """The trained paren balancer (a ``TransformerBridge`` in eval mode) from :data:`WEIGHTS`.

    Raises ``FileNotFoundError`` with the command that makes the weights if they are missing.
    """
    path = Path(path) if path is not None else WEIGHTS
    if not path.exists():
        raise FileNotFoundError(
            f"no paren-balancer weights at {path}; train them with `python -m hypotheses.paren.train`"
        )
    model = scrub.load_model(path, device=device)
    model.eval()
    return model
