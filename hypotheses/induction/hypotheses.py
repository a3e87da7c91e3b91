"""Hypotheses about the induction demo model.

Head names come from :func:`hypotheses.induction.locate_heads` on the committed weights
(previous-token heads a0.2, a0.3; induction heads a1.0-a1.3); pass ``heads=`` to use others.
"""

from __future__ import annotations

import torch

import scrub

__all__ = ["HEADS", "naive", "previous_tokens", "tokens"]

#: Located on the committed weights by ``locate_heads(load_model())`` (a test checks it still holds).
HEADS: dict[str, list[str]] = {"prev_token": ["a0.2", "a0.3"], "induction": ["a1.0", "a1.1", "a1.2", "a1.3"]}


def tokens(d: scrub.Dataset) -> torch.Tensor:
    """The token at each position ([N, T]): what an embedding feeds a head's V."""
    return d.tokens


def previous_tokens(d: scrub.Dataset) -> torch.Tensor:
    """The token before each position ([N, T]; -1 at position 0): what a previous-token head writes."""
    return torch.cat([torch.full_like(d.tokens[:, :1], -1), d.tokens[:, :-1]], dim=1)


def naive(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """The naive induction hypothesis: the induction heads' output is the answer, computed from
    the current token (embeddings into Q), the previous token at each key position
    (previous-token heads into K) and the token at each key position (embeddings into V)."""
    heads = heads or HEADS
    h = scrub.Hypothesis("induction: naive")
    ind = h.output().add("induction heads", model=heads["induction"], agree="label")
    ind.add("current token", model="embed", port="q", agree="current_token")
    ind.add("previous tokens", model=heads["prev_token"], port="k", agree=previous_tokens)
    ind.add("token values", model="embed", port="v", agree=tokens)
    return h
