"""Small TransformerBridge models built offline, saved and loaded safely (safetensors, config in the header)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from safetensors import safe_open

__all__ = ["build_model", "save_model", "load_model", "weights_hash"]

# The TransformerBridgeConfig fields a native model is rebuilt from.
_CONFIG_KEYS = (
    "d_model", "d_head", "n_layers", "n_ctx", "n_heads", "d_vocab", "d_vocab_out", "d_mlp",
    "attn_only", "normalization_type", "attention_dir", "act_fn", "positional_embedding_type",
    "eps", "use_attn_scale", "attn_scale", "original_architecture",
)


def build_model(**config: Any):
    """A fresh ``TransformerBridge`` from ``TransformerBridgeConfig(**config)``, built with no hub access."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    with contextlib.redirect_stdout(io.StringIO()):  # boot_native prints "Moving model to device"
        model = TransformerBridge.boot_native(TransformerBridgeConfig(**config))
    model.eval()
    return model


def model_config(model) -> dict[str, Any]:
    """The config fields needed to rebuild ``model`` with :func:`build_model`."""
    cfg = model.cfg
    out = {}
    for key in _CONFIG_KEYS:
        if hasattr(cfg, key):
            value = getattr(cfg, key)
            if isinstance(value, (int, float, str, bool)) or value is None:
                out[key] = value
    return out


def save_model(model, path: str | Path, **metadata: Any) -> None:
    """Save ``model``'s weights as safetensors with its config (and ``metadata``) in the header."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    header = {"config": json.dumps(model_config(model), sort_keys=True), "metadata": json.dumps(metadata, sort_keys=True)}
    save_file(state, str(path), metadata=header)


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the model saved by :func:`save_model` at ``path``.

    Weights are read with safetensors (no pickle). A weights file whose tensors do not
    match the config in its header raises ``ValueError`` naming the tensors.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no weights file at {path}")
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
    if "config" not in header:
        raise ValueError(f"{path}: no model config in the safetensors header (was it written by scrub.save_model?)")
    config = json.loads(header["config"])
    model = build_model(**config)
    state = load_file(str(path), device="cpu")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing from the file: {missing}")
        if unexpected:
            parts.append(f"in the file but not in the model: {unexpected}")
        if wrong:
            parts.append(
                "wrong shape: "
                + ", ".join(f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in wrong)
            )
        raise ValueError(f"{path}: weights do not match the config {config}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    with contextlib.redirect_stdout(io.StringIO()):
        return model.to(device)


def weights_hash(model) -> str:
    """A SHA-256 over the model's parameter names, shapes and bytes (stable across runs)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
