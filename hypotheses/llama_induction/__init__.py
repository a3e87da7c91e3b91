"""Induction on a modern architecture: a tiny Llama (rotary, RMSNorm, gated MLP, grouped-query
attention, no biases) trained on repeated segments.

``load()`` rebuilds the committed ``transformers.LlamaForCausalLM`` (:data:`WEIGHTS`) and returns a
bridge ready for scrub; ``load_hf()`` returns the HuggingFace model itself. ``make_data(n, seed)``
gives evaluation examples whose answer is fixed by induction (the induction entry's generator at
32 positions and 100 tokens), ``locate_heads(model)`` the previous-token and induction heads found
from attention patterns. Retrain with ``python -m hypotheses.llama_induction.train``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from hypotheses.induction.heads import head_scores, locate_heads
from hypotheses.llama_induction.data import HF_CONFIG, make_data

__all__ = ["HF_CONFIG", "WEIGHTS", "load", "load_hf", "bridge", "metadata", "make_data", "locate_heads", "head_scores"]

#: The committed trained weights (written by ``python -m hypotheses.llama_induction.train``).
WEIGHTS: Path = Path(__file__).with_name("model.safetensors")


def load_hf(path: str | Path = WEIGHTS):
    """The ``LlamaForCausalLM`` saved at ``path`` (eval mode), rebuilt from the ``LlamaConfig`` dict in
    the safetensors header; the file's tensors must match the config's exactly."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no weights file at {path}")
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
    if "llama_config" not in header:
        raise ValueError(f"{path}: no LlamaConfig in the safetensors header "
                         "(was it written by hypotheses.llama_induction.train?)")
    config = LlamaConfig.from_dict(json.loads(header["llama_config"]))
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config)
    model.load_state_dict(load_file(str(path), device="cpu"), strict=True)
    model.eval()
    return model


def metadata(path: str | Path = WEIGHTS) -> dict[str, Any]:
    """The training record in the weights file's header (seed, steps, losses, head scores)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("metadata", "{}"))


def bridge(hf_model):
    """A TransformerLens bridge over ``hf_model`` (eval mode), built offline with no tokenizer:
    ``scrub.from_hf`` where the engine has it, else TransformerLens's ``build_bridge_from_module``."""
    import scrub

    from_hf = getattr(scrub, "from_hf", None)
    if from_hf is not None:
        model = from_hf(hf_model)
    else:
        from transformer_lens.model_bridge.sources import build_bridge_from_module

        model = build_bridge_from_module(hf_model, type(hf_model).__name__, hf_config=hf_model.config)
    model.eval()
    return model


def load(path: str | Path = WEIGHTS):
    """The trained Llama induction model from :data:`WEIGHTS`, as a bridge ready for scrub."""
    return bridge(load_hf(path))
