"""Small TransformerBridge models built offline, saved and loaded safely (safetensors, config in the header)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from scrub.errors import CheckpointError, RunOptionsError

__all__ = ["build_model", "save_model", "load_model", "weights_hash", "check_device"]

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
        model = TransformerBridge.boot_native(TransformerBridgeConfig(**config))  # pyright: ignore[reportAttributeAccessIssue]
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


def check_device(device, name: str = "device") -> torch.device | None:
    """``device`` as a :class:`torch.device` available here (None stays None), or a RunOptionsError naming it."""
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise RunOptionsError(
            f"{name} must be a string such as 'cpu' or 'cuda:0', or a torch.device; got {type(device).__name__} {device!r}"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise RunOptionsError(f"{name}={device!r} is not a device ({exc}); use 'cpu', 'cuda', 'cuda:1' or 'mps'") from None
    if dev.type == "meta":
        raise RunOptionsError(f"{name}='meta' holds no data: a model cannot run there; use 'cpu' or 'cuda'")
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RunOptionsError(f"{name}={device!r}: CUDA is not available on this machine; use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RunOptionsError(f"{name}={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return dev
    backend = getattr(torch.backends, "mps", None) if dev.type == "mps" else getattr(torch, dev.type, None)
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise RunOptionsError(f"{name}={device!r}: no {dev.type} device is available here; use 'cpu' or 'cuda'")
    return dev


_POSITIVE_INTS = ("d_model", "d_head", "n_layers", "n_ctx", "n_heads", "d_vocab")


def _check_config(config: Any, path: Path, n_stored: int) -> dict[str, Any]:
    """The header's config, checked before a model is built from it (a bad one would crash or allocate wildly)."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: the header's model config is a {type(config).__name__}, not a JSON object")
    unknown = sorted(set(config) - set(_CONFIG_KEYS))
    if unknown:
        raise CheckpointError(f"{path}: the header's model config has unknown fields {unknown}; valid: {list(_CONFIG_KEYS)}")
    for key in (*_POSITIVE_INTS, "d_mlp", "d_vocab_out"):
        v = config.get(key)
        if v is None and key not in _POSITIVE_INTS:
            continue
        optional = key in ("d_mlp", "d_vocab_out") and v == -1
        if isinstance(v, bool) or not isinstance(v, int) or (v < 1 and not optional):
            raise CheckpointError(f"{path}: the header's model config has {key}={v!r}; it must be a positive int")
    eps = config.get("eps")
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0):
        raise CheckpointError(f"{path}: the header's model config has eps={eps!r}; it must be a positive number")
    for key in ("normalization_type", "attention_dir", "act_fn", "positional_embedding_type", "original_architecture"):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise CheckpointError(f"{path}: the header's model config has {key}={config[key]!r}; it must be a string")
    act = config.get("act_fn")
    if act is not None:
        from transformer_lens.utilities.activation_functions import SUPPORTED_ACTIVATIONS

        if act not in SUPPORTED_ACTIVATIONS:
            raise CheckpointError(
                f"{path}: the header's model config has act_fn={act!r}; valid: {sorted(SUPPORTED_ACTIVATIONS)}"
            )
    d, layers = config["d_model"], config["n_layers"]
    attn = 4 * d * config["n_heads"] * config["d_head"]
    mlp = 0 if config.get("attn_only") else 2 * d * max(config.get("d_mlp") or 4 * d, 0)
    expected = (layers * (attn + mlp) + config["d_vocab"] * d + (config.get("d_vocab_out") or config["d_vocab"]) * d
                + config["n_ctx"] * d)
    if expected > 2 * n_stored + 10_000:
        raise CheckpointError(
            f"{path}: the header's model config describes about {expected:,} parameters but the file holds "
            f"{n_stored:,}; the config does not belong to these weights"
        )
    return config


def _read_error(path: Path, exc: BaseException) -> CheckpointError:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        head = b""
    if not head:
        what = "the file is empty"
    elif head[:1] == b"\x80" or head[:2] == b"PK":
        what = "it looks like a pickle or torch.save checkpoint, which scrub does not load (convert it with scrub.save_model)"
    else:
        what = f"it is not a readable safetensors file (garbage or truncated: {type(exc).__name__}: {exc})"
    return CheckpointError(f"{path}: cannot load model weights: {what}")


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the model saved by :func:`save_model` at ``path``.

    Weights are read with safetensors (no pickle). A path that is not a readable safetensors file
    written by :func:`save_model` (missing, a directory, empty, truncated, a pickle, a header
    without a valid model config, tensors that do not match that config) raises
    :class:`~scrub.CheckpointError` naming the file and the problem; a device that is not
    available raises :class:`~scrub.RunOptionsError`.
    """
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise CheckpointError(f"load_model: path must be a file path (str or pathlib.Path), got {type(path).__name__} {path!r}")
    dev = check_device(device)
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no weights file at {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; pass the .safetensors file written by scrub.save_model")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            n_stored = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 (safe_open is not iterable)
    except Exception as exc:  # safetensors raises its own error types for every kind of bad file
        raise _read_error(path, exc) from exc
    if "config" not in header:
        raise CheckpointError(f"{path}: no model config in the safetensors header (was it written by scrub.save_model?)")
    try:
        config = json.loads(header["config"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: the header's model config is not JSON ({exc})") from None
    config = _check_config(config, path, n_stored)
    try:
        model = build_model(**config)
    except Exception as exc:  # the config's values do not make a model
        raise CheckpointError(f"{path}: the header's model config {config} does not build a model: "
                              f"{type(exc).__name__}: {exc}") from exc
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise _read_error(path, exc) from exc
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
        raise CheckpointError(f"{path}: weights do not match the config {config}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    with contextlib.redirect_stdout(io.StringIO()):
        return model.to(dev)


def weights_hash(model) -> str:
    """A SHA-256 over the model's parameter names, shapes and bytes (stable across runs)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        t = t.detach().cpu().contiguous()
        try:
            h.update(t.numpy().tobytes())
        except TypeError:  # dtypes numpy lacks (bfloat16, float8): hash the raw bytes
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
