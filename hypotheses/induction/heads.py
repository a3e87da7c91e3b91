"""Find the previous-token and induction heads of a model from its attention patterns."""

from __future__ import annotations

from typing import Any

import torch

from hypotheses.induction.data import repeated_tokens

__all__ = ["head_scores", "locate_heads", "THRESHOLD"]

#: A head "counts" when its mean score is at least this (scores are attention probabilities).
THRESHOLD: float = 0.3


@torch.no_grad()
def head_scores(model, seed: int = 0, n: int = 200) -> dict[str, dict[str, float]]:
    """Previous-token and induction scores of every head, on ``n`` repeated random sequences.

    The sequences are ``x x`` with ``x`` = ``n_ctx // 2`` distinct random tokens.

    - previous-token score: mean attention from position ``i`` to ``i - 1`` (all ``i >= 1``);
    - induction score: mean attention from each position of the second copy to the
      position just after the earlier occurrence of its token (query ``half + j``,
      key ``j + 1``).

    Returns ``{"prev_token": {"a0.2": 0.51, ...}, "induction": {...}}`` over all heads.
    """
    cfg = model.cfg
    half = cfg.n_ctx // 2
    tokens = repeated_tokens(n, seed, half=half, n_ctx=cfg.n_ctx, d_vocab=cfg.d_vocab)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(cfg.n_layers)]
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    out: dict[str, dict[str, float]] = {"prev_token": {}, "induction": {}}
    seq = torch.arange(2 * half)
    q_ind = torch.arange(half, 2 * half)
    for layer in range(cfg.n_layers):
        pattern = cache[names[layer]].float()  # [batch, head, query, key]
        prev = pattern[:, :, seq[1:], seq[1:] - 1].mean(dim=(0, 2))
        ind = pattern[:, :, q_ind, q_ind - half + 1].mean(dim=(0, 2))
        for head in range(cfg.n_heads):
            out["prev_token"][f"a{layer}.{head}"] = float(prev[head])
            out["induction"][f"a{layer}.{head}"] = float(ind[head])
    return out


def locate_heads(model, seed: int = 0, threshold: float = THRESHOLD) -> dict[str, Any]:
    """The model's previous-token and induction heads, named ``a{layer}.{head}``.

    How a head is decided: :func:`head_scores` measures, on repeated random sequences,
    each head's mean attention to the previous position (previous-token score) and to the
    position after the earlier occurrence of the current token (induction score). These
    are attention probabilities in ``[0, 1]``; a uniform head over ~12 keys scores about
    0.08. A head is listed under a role when its score for that role is ``>= threshold``
    (0.3 by default), in any layer, sorted by score, highest first.

    Returns ``{"prev_token": [...], "induction": [...], "scores": head_scores(...)}``.
    """
    scores = head_scores(model, seed=seed)
    found: dict[str, Any] = {}
    for role in ("prev_token", "induction"):
        ranked = sorted(scores[role].items(), key=lambda kv: -kv[1])
        found[role] = [name for name, s in ranked if s >= threshold]
    found["scores"] = scores
    return found
