"""Hypotheses about the paren balancer (Redwood's claims 1, 2 and 3, as they hold in our model).

Our model was trained independently of Redwood's, and its circuit is laid out differently; the
roles below were located with the engine by :func:`hypotheses.paren.heads.locate_heads` (a test
checks they still hold). Everything the output reads is at the start position, 0:

- the final MLP ``m2`` computes the label from the **count test** (carried by ``m0``, ``a1.1``
  and ``m1``), the **horizon test** (carried by ``a1.0`` and ``a2.0``) and their conjunction
  (``a2.1``, which agrees with ``balanced``); each of these also reaches the logits directly;
- claim 2: the count test is computed from the **proportion of open parens**, read by the two
  layer-0 heads (``a0.0``, ``a0.1``) and thresholded by ``m0``, ``a1.1`` and ``m1``;
- claim 3: the horizon heads read **per-position** information through their keys and values:
  ``a1.0`` whether the prefix ending at each position is negative (it attends to such
  positions), from the layer-0 heads and ``m0``; ``a2.0`` whether the suffix starting there holds
  more ( than ), from ``m1`` at each position.

Redwood's claim 1 as they state it (the output computed from 2.0 and 2.1 alone) is shipped
as :func:`redwood_claim_1`: in our model the count test also reaches ``m2`` around the layer-2
heads, so it recovers much less.
"""

from __future__ import annotations

from typing import Any

import torch

import scrub

__all__ = [
    "HEADS", "prefix_negative", "suffix_excess_open",
    "claim_1", "claim_1_2", "claim_1_3", "claim_1_2_3", "redwood_claim_1",
    "false_swapped", "false_first_char", "false_count_only", "false_count_in_layer_2", "false_layer_0",
]

#: The role of each node at position 0, located by ``locate_heads(load_model(), make_data(...))``.
HEADS: dict[str, list[str]] = {
    "count": ["m0", "a1.1", "m1"],
    "horizon": ["a1.0", "a2.0"],
    "balance": ["a2.1"],
    "proportion": ["a0.0", "a0.1"],
}

_OPEN, _CLOSE = 3, 4


def _steps(d: scrub.Dataset) -> torch.Tensor:
    return (d.tokens == _OPEN).long() - (d.tokens == _CLOSE).long()


def _flag_at_parens(d: scrub.Dataset, flag: torch.Tensor) -> torch.Tensor:
    """``[N, T]``: ``10 + flag`` at paren positions, the token itself (start, end, pad) elsewhere."""
    paren = d.tokens >= _OPEN
    return torch.where(paren, 10 + flag.long(), d.tokens)


def prefix_negative(d: scrub.Dataset) -> torch.Tensor:
    """Per position ``[N, T]``: at a paren, whether the prefix ending there has more ) than (;
    elsewhere the token (start, end or pad). What ``a1.0`` reads through its keys and values."""
    return _flag_at_parens(d, _steps(d).cumsum(1) < 0)


def suffix_excess_open(d: scrub.Dataset) -> torch.Tensor:
    """Per position ``[N, T]``: at a paren, whether the suffix starting there has more ( than );
    elsewhere the token. What ``a2.0`` reads through its keys and values (the horizon test read
    from the right)."""
    return _flag_at_parens(d, _steps(d).flip(1).cumsum(1).flip(1) > 0)


def _build(
    name: str,
    heads: dict[str, list[str]] | None,
    *,
    count: bool = False,
    horizon: bool = False,
    features: dict[str, Any] | None = None,
) -> scrub.Hypothesis:
    """Claim 1 on ``heads``, optionally with the claim 2 (``count``) and claim 3 (``horizon``) subtrees.

    ``features`` overrides the feature a role's nodes agree on (``"final"`` for ``m2``, ``"count"``, ``"horizon"``,
    ``"balance"``, ``"proportion"``, ``"prefix"``, ``"suffix"``): the false hypotheses use it.
    """
    heads = heads or HEADS
    f = {
        "final": "balanced", "count": "count_test", "horizon": "horizon_test", "balance": "balanced",
        "proportion": "open_proportion", "prefix": prefix_negative, "suffix": suffix_excess_open,
        **(features or {}),
    }
    h = scrub.Hypothesis(name)
    out = h.output()
    final = out.add("final MLP", model="m2", agree=f["final"])
    nodes: dict[str, scrub.Node] = {}
    for role in ("count", "horizon", "balance"):
        for m in heads[role]:
            nodes[m] = final.add(f"{role} ({m})", model=m, agree=f[role])
            out.add(nodes[m])  # the same claim on the direct path to the logits
    if count:
        counters = [m for m in ("m0", "a1.1", "m1") if m in heads["count"]]
        prop = nodes[counters[0]].add("open proportion", model=heads["proportion"], agree=f["proportion"])
        for i, m in enumerate(counters):
            if i > 0:
                nodes[m].add(prop)
            for earlier in counters[:i]:  # each counter reads the ones below it
                nodes[m].add(nodes[earlier])
    if horizon:
        first, second = heads["horizon"]
        nodes[first].add("prefix signs", model=heads["proportion"] + ["m0"], port=["k", "v"], agree=f["prefix"])
        nodes[second].add("suffix signs", model=["m1"], port=["k", "v"], agree=f["suffix"])
    return h


def claim_1(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """Claim 1: the output is computed by the final MLP (and the direct paths) from the count test
    (``m0``, ``a1.1``, ``m1`` at position 0), the horizon test (``a1.0``, ``a2.0``) and their
    conjunction (``a2.1``); everything else the output and ``m2`` read is unimportant."""
    return _build("paren: claim 1", heads)


def claim_1_2(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """Claims 1 and 2: as :func:`claim_1`, and the count-test nodes compute it from the proportion of
    open parens (the layer-0 heads agree on ``open_proportion``), each reading the ones below it."""
    return _build("paren: claims 1+2", heads, count=True)


def claim_1_3(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """Claims 1 and 3: as :func:`claim_1`, and the horizon heads read per-position signs through their
    keys and values: ``a1.0`` whether each prefix is negative (:func:`prefix_negative`, from the
    layer-0 heads and ``m0``), ``a2.0`` whether each suffix holds more ( than ) (:func:`suffix_excess_open`,
    from ``m1`` at each position; the other inputs of its keys and values are unimportant)."""
    return _build("paren: claims 1+3", heads, horizon=True)


def claim_1_2_3(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """Claims 1, 2 and 3 together."""
    return _build("paren: claims 1+2+3", heads, count=True, horizon=True)


def redwood_claim_1(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """Redwood's claim 1 read literally on our model: the output (through ``m2`` and directly) is
    computed from head 2.0 (the count test) and head 2.1 (the horizon test) alone. True of their
    model, incomplete for ours: here the count test also reaches ``m2`` from ``m0``/``a1.1``/``m1``."""
    h = scrub.Hypothesis("paren: Redwood's claim 1 (2.0 count, 2.1 horizon)")
    out = h.output()
    final = out.add("final MLP", model="m2", agree="balanced")
    for m, f in (("a2.0", "count_test"), ("a2.1", "horizon_test")):
        out.add(final.add(f"{f} ({m})", model=m, agree=f))
    return h


def false_swapped(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """False: claim 1 with the two features swapped: the count nodes said to carry the horizon test
    and the horizon heads the count test."""
    return _build("paren (false): count and horizon swapped", heads,
                  features={"count": "horizon_test", "horizon": "count_test"})


def false_first_char(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """False: claim 1's structure, but every node, the final MLP included, carries only whether the
    string starts with ( , a feature that does not determine balance."""
    first = "first_char_open"
    return _build("paren (false): first character only", heads,
                  features={"final": first, "count": first, "horizon": first, "balance": first})


def false_count_only(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """False: claim 1's structure, but every node, the final MLP included, carries only the count test:
    "the model ignores the order of the parens" (wrong on every string whose depth dips below 0)."""
    c = "count_test"
    return _build("paren (false): count test only", heads,
                  features={"final": c, "count": c, "horizon": c, "balance": c})


def false_count_in_layer_2(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """False: the count test attributed to the wrong place: both layer-2 heads carry it (as in
    Redwood's 2.0), and the nodes that really carry it (``m0``, ``a1.1``, ``m1``) the horizon test."""
    heads = heads or HEADS
    moved = {"count": ["a2.0", "a2.1"], "horizon": list(heads["count"]) + [heads["horizon"][0]],
             "balance": [], "proportion": heads["proportion"]}
    return _build("paren (false): count test in layer 2", moved)


def false_layer_0(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """False: the balance is read off the layer-0 heads (which see the proportion of open parens) by
    the final MLP and the direct paths: layers 1 and 2 are unimportant."""
    heads = heads or HEADS
    h = scrub.Hypothesis("paren (false): layer 0 decides")
    out = h.output()
    final = out.add("final MLP", model="m2", agree="balanced")
    out.add(final.add("layer 0", model=heads["proportion"], agree="balanced"))
    return h
