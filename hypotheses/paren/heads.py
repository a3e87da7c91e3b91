"""Find what each head of the paren balancer carries to the output, with the engine and attention patterns.

Two measurements:

- :func:`failure_attention`: on strings with equal counts whose depth dips below 0 (``kind ==
  "dip"``), how much each head attends, from position 0, to the positions where the prefix is
  negative and to those where the suffix holds more ( than ): a horizon head looks there.
- :func:`feature_scores`: causal scrubbing. In claim 1 (:func:`hypotheses.paren.hypotheses.claim_1`),
  a head in turn is said to carry ``count_test``, ``horizon_test`` or ``balanced`` at position 0,
  the rest as in the given roles; the fraction of loss recovered says which feature the head's
  output really carries. (Measured on layers 1-2 with all three, only the layer-2 heads separate
  clearly: 0.974 / 0.996 / 0.986 for a2.0 and 0.857 / 0.971 / 0.996 for a2.1 at N=300, while a1.0
  and a1.1 score within 0.004 whatever they are said to carry: their outputs are redundant with
  the rest at position 0. So the layer-1 roles come from attention.)

:func:`locate_heads` combines them into roles.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

import scrub
from hypotheses.paren.hypotheses import HEADS, _build, _steps

__all__ = ["FEATURES", "ATTENTION_THRESHOLD", "MARGIN", "failure_attention", "feature_scores", "locate_heads"]

#: Feature -> role, for :func:`feature_scores` and :func:`locate_heads`.
FEATURES: dict[str, str] = {"count_test": "count", "horizon_test": "horizon", "balanced": "balance"}

#: A horizon reader carries the conjunction when ``balanced`` beats ``horizon_test`` by more than this.
MARGIN: float = 0.015

#: A head reads failure positions when at least this share of its position-0 attention goes there
#: (on dips each kind is about 9% of the tokens).
ATTENTION_THRESHOLD: float = 0.2


@torch.no_grad()
def failure_attention(model, data: scrub.Dataset) -> pd.DataFrame:
    """Mean attention from position 0 to failure positions, per head, on the ``dip`` examples of ``data``.

    Returns a frame indexed by head (``a{L}.{H}``) with columns ``prefix_negative`` (positions
    where the prefix ending there has more ) than ( ) and ``suffix_excess_open`` (positions where
    the suffix starting there has more ( than ) ), and ``share`` (the fraction of tokens that are
    such positions, for scale).
    """
    dips = torch.tensor((data.columns["kind"] == "dip").to_numpy())
    if not bool(dips.any()):
        raise ValueError("failure_attention needs examples of kind 'dip' in the data")
    tokens, mask = data.tokens[dips], data.attention_mask[dips]
    steps = _steps(data)[dips]
    paren = tokens >= 3
    pre = (steps.cumsum(1) < 0) & paren
    suf = (steps.flip(1).cumsum(1).flip(1) > 0) & paren
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(tokens, attention_mask=mask, names_filter=lambda n: n in names)
    rows = {}
    for layer, name in enumerate(names):
        pattern = cache[name][:, :, 0].float()  # [batch, head, key]: from position 0
        for head in range(model.cfg.n_heads):
            p = pattern[:, head]
            rows[f"a{layer}.{head}"] = {
                "prefix_negative": float((p * pre).sum(1).mean()),
                "suffix_excess_open": float((p * suf).sum(1).mean()),
                "share": float(((pre | suf).sum(1) / mask.sum(1)).mean()),
            }
    return pd.DataFrame.from_dict(rows, orient="index")


def feature_scores(
    model,
    data: scrub.Dataset,
    heads_to_move: list[str],
    features: tuple[str, ...] = tuple(FEATURES),
    roles: dict[str, list[str]] | None = None,
    seed: int = 0,
    n_seeds: int = 1,
) -> pd.DataFrame:
    """Claim 1's fraction of loss recovered with each of ``heads_to_move`` said to carry each feature.

    Returns a frame indexed by head with one column per feature: the score of claim 1 (the other
    nodes in ``roles``, default :data:`~hypotheses.paren.hypotheses.HEADS`) when that head alone
    is moved to the role of that feature (:data:`FEATURES`).
    """
    roles = roles or HEADS
    rows: dict[str, dict[str, float]] = {}
    for head in heads_to_move:
        rows[head] = {}
        for feature in features:
            moved = {r: [m for m in ms if m != head] for r, ms in roles.items()}
            moved[FEATURES[feature]] = moved[FEATURES[feature]] + [head]
            h = _build(f"claim 1, {head} carries {feature}", moved)
            rows[head][feature] = scrub.run(model, h, data, seed=seed, n_seeds=n_seeds).loss_recovered
    return pd.DataFrame.from_dict(rows, orient="index")


def locate_heads(model, data: scrub.Dataset, seed: int = 0) -> dict[str, Any]:
    """The role of each head, found with attention patterns and the engine.

    1. Attention (:func:`failure_attention`): a head of layer 1 or 2 that sends at least
       :data:`ATTENTION_THRESHOLD` of its position-0 attention to failure positions (either side)
       reads the horizon; the others of layers 1-2 carry the count test (``count``), together with
       the MLPs ``m0`` and ``m1``, where the layer-0 proportion is thresholded at position 0.
    2. The engine (:func:`feature_scores`): a horizon reader whose output, in claim 1, agrees
       better with ``balanced`` than with ``horizon_test`` by more than :data:`MARGIN` carries the
       conjunction of both tests (``balance``); the rest carry the horizon test (``horizon``).
    3. The layer-0 heads are the ``proportion`` the count test reads (claim 2).

    Returns the roles as sorted lists of node names (as in
    :data:`hypotheses.paren.hypotheses.HEADS`) plus ``"attention"`` and ``"scores"`` (the frames).
    """
    attention = failure_attention(model, data)
    upper = [f"a{layer}.{h}" for layer in (1, 2) for h in range(model.cfg.n_heads)]
    side = attention[["prefix_negative", "suffix_excess_open"]].max(axis=1)
    readers = [m for m in upper if side[m] >= ATTENTION_THRESHOLD]
    scores = feature_scores(model, data, readers, ("horizon_test", "balanced"), seed=seed)
    both = [m for m in readers if scores.loc[m, "balanced"] - scores.loc[m, "horizon_test"] > MARGIN]
    order = {m: i for i, m in enumerate(["m0", "a1.0", "a1.1", "m1", "a2.0", "a2.1"])}
    roles = {
        "count": ["m0", "m1"] + [m for m in upper if m not in readers],
        "horizon": [m for m in readers if m not in both],
        "balance": both,
        "proportion": [f"a0.{h}" for h in range(model.cfg.n_heads)],
    }
    found: dict[str, Any] = {k: sorted(v, key=lambda m: (order.get(m, -1), m)) for k, v in roles.items()}
    found["attention"] = attention
    found["scores"] = scores
    return found
