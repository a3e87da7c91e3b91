"""Find the Llama model's previous-token and induction heads from its attention patterns.

The scores and the rule are the induction entry's (:func:`hypotheses.induction.heads.head_scores`,
:func:`~hypotheses.induction.heads.locate_heads`: mean attention to the previous position, and from
the second copy of a repeated sequence to the token after the earlier occurrence; a head counts at
>= 0.3); they read ``blocks.L.attn.hook_pattern``, which holds one pattern per *query* head also under
grouped-query attention. This module adds what the grouped-query model needs: which key/value group
a query head reads, and how much each head attends to its own position on the evaluation data.
"""

from __future__ import annotations

import torch

from hypotheses.induction.heads import THRESHOLD, head_scores, locate_heads

__all__ = ["THRESHOLD", "head_scores", "locate_heads", "kv_group", "position_scores"]


def kv_group(head: str, n_heads: int = 4, n_kv_heads: int = 2) -> int:
    """The key/value group query head ``head`` (``"a{layer}.{h}"``) reads: ``h // (n_heads // n_kv_heads)``
    (HuggingFace's ``repeat_kv`` order: a0.0 and a0.1 share group 0, a0.2 and a0.3 group 1)."""
    h = int(head.split(".")[1])
    if not 0 <= h < n_heads or n_heads % n_kv_heads:
        raise ValueError(f"kv_group: head {head!r} with {n_heads} heads over {n_kv_heads} kv groups")
    return h // (n_heads // n_kv_heads)


@torch.no_grad()
def position_scores(model, data) -> dict[str, dict[str, float]]:
    """Mean attention of every head to its own position (``self``), the previous one (``prev``) and the
    first one (``first``), over all query positions >= 1 of ``data`` (a :class:`scrub.Dataset`).

    Returns ``{"self": {"a0.0": 0.44, ...}, "prev": {...}, "first": {...}}``.
    """
    cfg = model.cfg
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(cfg.n_layers)]
    _, cache = model.run_with_cache(data.tokens, names_filter=lambda name: name in names)
    q = torch.arange(1, data.tokens.shape[1])
    out: dict[str, dict[str, float]] = {"self": {}, "prev": {}, "first": {}}
    for layer in range(cfg.n_layers):
        pattern = cache[names[layer]].float()  # [batch, head, query, key]
        for head in range(cfg.n_heads):
            p = pattern[:, head]
            name = f"a{layer}.{head}"
            out["self"][name] = float(p[:, q, q].mean())
            out["prev"][name] = float(p[:, q, q - 1].mean())
            out["first"][name] = float(p[:, q, 0].mean())
    return out
