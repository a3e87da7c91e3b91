"""Redwood's 2-layer attention-only model (``redwood_attn_2l``) and their induction hypotheses.

Source: Chan et al., "Causal Scrubbing" (Redwood Research, 2022), the induction post: induction
heads 1.5 and 1.6, previous-token head 0.0 (see docs/design.md). The model is 2 layers x
8 heads, d_model 256, d_head 32, vocabulary 50259 (GPT-2's plus two), context 2048, trained on
web text, with **shortformer** positional embeddings (the positional embedding is added to the
query and key inputs of every attention layer, never to the residual stream or the values).

The weights are never downloaded: :func:`load_model` reads a local copy (``path=``, then
``$SCRUB_ATTN_2L_PATH``, then the Hugging Face cache) and raises
:class:`~hypotheses.published.local.WeightsUnavailable` saying what to download when there is none.
With the weights present it still raises :class:`Unsupported`: neither TransformerLens 4.3's
native bridge nor scrub's graph and executor implement shortformer positional embeddings yet
(:data:`SHORTFORMER_GAP` says exactly what is missing).

Data: OpenWebText is not available here, so :func:`make_data` makes random-token sequences with
a repeated segment (the induction entry's generator over GPT-2's 50257 token ids), scored where
induction fixes the answer. Redwood's figures were measured on web text: expect these to differ.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import scrub
from hypotheses.induction.data import make_data as _repeated_segments
from hypotheses.induction import hypotheses as _induction_hypotheses
from hypotheses.induction.hypotheses import _induction, previous_tokens, tokens
from hypotheses.published.local import LocalWeights, WeightsUnavailable

__all__ = [
    "WEIGHTS", "SHAPE", "HEADS", "SHORTFORMER_GAP", "Unsupported", "WeightsUnavailable",
    "locate", "read_config", "support_gap", "unavailable", "load_model", "make_data", "graph",
    "naive", "refined", "path_q", "path_k", "path_v", "false_wrong_prev_head",
]

#: Where ``redwood_attn_2l`` may be on this machine, and what to download when it is not.
WEIGHTS = LocalWeights(
    title="redwood_attn_2l (Redwood's 2-layer attention-only model, for the induction cases)",
    repo_ids=("ArthurConmy/redwood_attn_2l",),
    required=(("config.json",), ("*final.pth", "et_model_state_dict.pt")),
    env_var="SCRUB_ATTN_2L_PATH",
    files="config.json and the weights file ending in 'final.pth' (TransformerLens state dict, about 60 MB)",
    download='--include config.json "*final.pth"',
)

#: The model's graph shape: 2 attention-only layers of 8 heads.
SHAPE: dict[str, Any] = dict(n_layers=2, n_heads=8, attn_only=True)

#: Redwood's heads, as their induction write-up names them.
HEADS: dict[str, list[str]] = {"prev_token": ["a0.0"], "induction": ["a1.5", "a1.6"]}

#: What is missing before this model can be scrubbed.
SHORTFORMER_GAP = (
    "redwood_attn_2l uses shortformer positional embeddings (positional_embedding_type='shortformer': "
    "the positional embedding is added to the query and key inputs of every attention layer, not to "
    "the residual stream). Not supported yet: (1) TransformerLens 4.3's native bridge does not "
    "implement them (transformer_lens/model_bridge/sources/tl_legacy.py raises NotImplementedError, "
    "and TransformerBridgeConfig has no shortformer path); (2) scrub's ModelGraph.from_model accepts "
    "only absolute and rotary (scrub/_architecture.py), and its graph and executor would need 'pos' to feed only the "
    "q and k ports of every head (not v, MLPs or the output), added to each head's q/k input after "
    "the layer norm of the residual. Until both exist these cases are skipped."
)


class Unsupported(NotImplementedError):
    """The local copy was found, but scrub (or TransformerLens) cannot run this model yet."""


def locate(path: str | os.PathLike | None = None) -> Path:
    """The folder of the local ``redwood_attn_2l`` copy (raises :class:`WeightsUnavailable` when none)."""
    return WEIGHTS.locate(path)


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The TransformerLens-style ``config.json`` of a local copy."""
    return json.loads((Path(folder) / "config.json").read_text())


def support_gap(config: dict[str, Any]) -> str | None:
    """Why a model with this config cannot be scrubbed here (None when it can)."""
    pet = config.get("positional_embedding_type", "shortformer" if config.get("shortformer_pos") else "standard")
    if config.get("shortformer_pos") or pet == "shortformer":
        return SHORTFORMER_GAP
    if pet != "standard":
        return f"positional_embedding_type={pet!r} is not supported by scrub (only 'standard')"
    return None


def unavailable(path: str | os.PathLike | None = None) -> str | None:
    """Why the cases cannot run here: the weights are missing (what to download) or unsupported."""
    try:
        folder = locate(path)
    except WeightsUnavailable as exc:
        return str(exc)
    return support_gap(read_config(folder))


def load_model(path: str | os.PathLike | None = None, device: str = "cpu"):
    """``redwood_attn_2l`` as a TransformerLens 4 ``TransformerBridge``, from a local copy.

    Raises :class:`WeightsUnavailable` (a ``FileNotFoundError``) naming the files to download
    when no copy is found, and :class:`Unsupported` (a ``NotImplementedError``) when the copy uses
    shortformer positional embeddings, as Redwood's does. A copy with standard positional
    embeddings is built the way TransformerLens's legacy loader does, from local files only:
    ``boot_native`` with the config, then the converted state dict, loaded strictly.
    """
    folder = locate(path)
    config = read_config(folder)
    gap = support_gap(config)
    if gap:
        raise Unsupported(gap)
    return _boot_legacy(folder, config, device)


def _boot_legacy(folder: Path, cfg_json: dict[str, Any], device: str):
    import torch
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    cfg = TransformerBridgeConfig(
        d_model=cfg_json["d_model"], n_layers=cfg_json["n_layers"], d_mlp=cfg_json.get("d_mlp", 4 * cfg_json["d_model"]),
        d_head=cfg_json["d_head"], n_heads=cfg_json["n_heads"], n_ctx=cfg_json["n_ctx"], d_vocab=cfg_json["d_vocab"],
        act_fn=cfg_json.get("act_fn", "gelu"), attn_only=cfg_json["attn_only"],
        normalization_type=cfg_json.get("normalization", cfg_json.get("normalization_type", "LN")),
        positional_embedding_type="standard", architecture="TransformerLensNative",
    )
    files = sorted(folder.glob("*final.pth")) or [folder / "et_model_state_dict.pt"]
    state = torch.load(files[0], map_location="cpu", weights_only=True)
    converted = convert_tl_checkpoint({k: v.float() for k, v in state.items()}, cfg)
    converted.setdefault("unembed.bias", torch.zeros(cfg.d_vocab))
    model = TransformerBridge.boot_native(cfg)
    model.load_state_dict(converted, strict=True)
    shape = (int(model.cfg.n_layers), int(model.cfg.n_heads), bool(model.cfg.attn_only))
    if shape != (SHAPE["n_layers"], SHAPE["n_heads"], SHAPE["attn_only"]):
        raise ValueError(f"{folder} holds a {shape} (layers, heads, attn_only) model, not redwood_attn_2l's "
                         f"{(SHAPE['n_layers'], SHAPE['n_heads'], SHAPE['attn_only'])}")
    model.to(device)
    model.eval()
    return model


def graph() -> scrub.ModelGraph:
    """The model's scrub graph, built from its shape alone (no weights needed)."""
    return scrub.ModelGraph.build(**SHAPE)


def make_data(n: int, seed: int = 0, *, n_ctx: int = 64, d_vocab: int = 50257) -> scrub.Dataset:
    """``n`` random-token sequences of length ``n_ctx`` with a repeated segment, scored at the last
    token, inside the second copy (``hypotheses.induction.make_data`` over GPT-2's ``d_vocab``
    ids). Columns include ``label``, ``current_token``, ``prev_token``, ``prev_occurrence``,
    ``answer_pos`` (see there). OpenWebText, on which Redwood scored, is not available here."""
    return _repeated_segments(n, seed, n_ctx=n_ctx, d_vocab=d_vocab)


# -- hypotheses --------------------------------------------------------------------------------
def naive(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """Redwood's naive induction hypothesis: induction heads 1.5, 1.6 output the answer from the
    current token (embeddings into Q), the previous token at each key position (head 0.0 into K)
    and the token at each key position (embeddings into V). Redwood: 35% of loss recovered.
    (The same builder as the shipped induction model's ``naive``.)"""
    return _induction_hypotheses.naive(heads or HEADS, name="redwood_attn_2l: naive")


def refined(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """A refinement in the spirit of Redwood's (86%; theirs differs in detail): the other layer-0
    heads also carry the current token into Q and the key token into K and V, and the key
    position's own token shapes K besides the previous token. (The shipped induction model's
    ``refined``, on this model's heads.)"""
    return _induction_hypotheses.refined(heads or HEADS, name="redwood_attn_2l: refined", n_heads=SHAPE["n_heads"])


def _path(label: str, port: str, model: list[str] | str, agree, heads: dict[str, list[str]]) -> scrub.Hypothesis:
    """Redwood's per-path test: only ``port``'s input is scrubbed down to this path; the other
    ports and the direct paths to the output stay as on the reference example."""
    h, ind = _induction(f"redwood_attn_2l, path {port.upper()}: {label}", heads)
    ind.add(label, model=model, port=port, agree=agree)
    everything = ["embed", *[f"a0.{i}" for i in range(SHAPE["n_heads"])]]
    ind.add("other ports", model=everything, port=[p for p in ("q", "k", "v") if p != port], agree=scrub.Exact())
    h.output().add("direct paths", model=everything, agree=scrub.Exact())
    return h


def path_q(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """Only Q scrubbed, to embeddings -> Q carrying the current token. Redwood: 51%."""
    return _path("current token", "q", "embed", "current_token", heads or HEADS)


def path_k(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """Only K scrubbed, to head 0.0 -> K carrying the previous token. Redwood: 83%."""
    heads = heads or HEADS
    return _path("previous tokens", "k", heads["prev_token"], previous_tokens, heads)


def path_v(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """Only V scrubbed, to embeddings -> V carrying the token. Redwood: 90%."""
    return _path("token values", "v", "embed", tokens, heads or HEADS)


def false_wrong_prev_head(wrong: str = "a0.1") -> scrub.Hypothesis:
    """False: the naive hypothesis with ``wrong`` (default 0.1, not a previous-token head in
    Redwood's analysis) named as the head that feeds K the previous token; 0.0 is resampled."""
    h = naive({**HEADS, "prev_token": [wrong]})
    h.name = f"redwood_attn_2l: false, {wrong} as previous-token head"
    return h
