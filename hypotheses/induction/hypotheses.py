"""Hypotheses about the induction demo model: the ladder from single paths to a refined circuit.

Head names come from :func:`hypotheses.induction.locate_heads` on the committed weights
(previous-token heads a0.2, a0.3; induction heads a1.0-a1.3); pass ``heads=`` to use others.
The two remaining layer-0 heads, a0.0 and a0.1, attend mostly to their own position
(:data:`SELF_HEADS`); the refined hypothesis says what they contribute.

Every hypothesis maps one node, ``"induction heads"`` (all four induction heads, agreeing on the
label), under the output, and claims some of the paths into its q, k and v ports:

- true: :func:`naive` (the three textbook paths) and :func:`refined` (what the model also uses);
- single paths: :func:`path_q`, :func:`path_k`, :func:`path_v`;
- false: :func:`false_wrong_prev_head`, :func:`false_qk_swapped`.

On data whose target position varies (:func:`hypotheses.induction.make_varying_data`), a
per-example feature such as ``agree="label"`` is read at the reference's target position, where an
agreeing example holds something else (:class:`scrub.AlignmentWarning`). ``at_target=True`` writes
the per-example features of :func:`naive`, :func:`refined` and the false hypotheses with
:func:`scrub.at_target` instead (the claim is made at the scored position, on examples that share
it); :func:`per_position` states the induction heads' output per position (:func:`induction_answers`)
so that agreeing examples need not share the target position. On fixed-target data both forms
give the same scores as the plain ones.

The positional embedding (``pos``) is the same on every example at a given position (the data has
no padding), so claiming it or not changes nothing; none of these hypotheses mentions it.
"""

from __future__ import annotations

from typing import Literal

import torch

import scrub
from hypotheses.induction.data import CONFIG

__all__ = [
    "HEADS", "SELF_HEADS", "tokens", "previous_tokens", "induction_answers",
    "naive", "refined", "per_position", "per_position_at_targets", "path_q", "path_k", "path_v", "false_wrong_prev_head", "false_qk_swapped",
]

#: Located on the committed weights by ``locate_heads(load_model())`` (a test checks it still holds).
HEADS: dict[str, list[str]] = {"prev_token": ["a0.2", "a0.3"], "induction": ["a1.0", "a1.1", "a1.2", "a1.3"]}

#: Layer-0 heads that attend mostly to their own position (mean attention to self 0.44 and 0.40 on
#: ``make_data``; to the previous position 0.19 and 0.21). A test checks it still holds.
SELF_HEADS: list[str] = ["a0.0", "a0.1"]

Rest = Literal["random", "exact"]


def tokens(d: scrub.Dataset) -> torch.Tensor:
    """The token at each position ([N, T]): what an embedding feeds a head's V."""
    return d.tokens


def previous_tokens(d: scrub.Dataset) -> torch.Tensor:
    """The token before each position ([N, T]; -1 at position 0): what a previous-token head writes."""
    return torch.cat([torch.full_like(d.tokens[:, :1], -1), d.tokens[:, :-1]], dim=1)


def induction_answers(d: scrub.Dataset) -> torch.Tensor:
    """At each position, the token that followed the latest earlier occurrence of that position's token
    ([N, T]; -1 where the token has not occurred before): what induction heads write at every position."""
    toks = d.tokens
    n, t = toks.shape
    out = torch.full_like(toks, -1)
    for p in range(1, t):
        earlier = toks[:, : p] == toks[:, p : p + 1]  # [N, p]: earlier occurrences
        has = earlier.any(1)
        last = (p - 1) - earlier.flip(1).int().argmax(1)  # latest earlier occurrence
        nxt = toks[torch.arange(n), torch.clamp(last + 1, max=t - 1)]
        out[:, p] = torch.where(has & (last + 1 <= p), nxt, torch.full_like(nxt, -1))
    return out


def _feature(column: str, at_target: bool):
    return scrub.at_target(column) if at_target else column


def _layer0(heads: dict[str, list[str]], n_heads: int = CONFIG["n_heads"]) -> list[str]:
    """Every layer-0 head other than the previous-token heads."""
    return [f"a0.{i}" for i in range(n_heads) if f"a0.{i}" not in heads["prev_token"]]


def _induction(name: str, heads: dict[str, list[str]], at_target: bool = False) -> tuple[scrub.Hypothesis, scrub.Node]:
    h = scrub.Hypothesis(name + (" (at target)" if at_target else ""))
    return h, h.output().add("induction heads", model=heads["induction"], agree=_feature("label", at_target))


def naive(
    heads: dict[str, list[str]] | None = None, *, name: str = "induction: naive", at_target: bool = False
) -> scrub.Hypothesis:
    """The naive induction hypothesis: the induction heads' output is the answer, computed from
    the current token (embeddings into Q), the previous token at each key position
    (previous-token heads into K) and the token at each key position (embeddings into V).

    ``at_target=True``: the label and the current token are claimed at the scored position
    (:func:`scrub.at_target`), for data whose target position varies."""
    heads = heads or HEADS
    h, ind = _induction(name, heads, at_target)
    ind.add("current token", model="embed", port="q", agree=_feature("current_token", at_target))
    ind.add("previous tokens", model=heads["prev_token"], port="k", agree=previous_tokens)
    ind.add("token values", model="embed", port="v", agree=tokens)
    return h


def refined(
    heads: dict[str, list[str]] | None = None, *, name: str = "induction: refined", n_heads: int = CONFIG["n_heads"],
    at_target: bool = False,
) -> scrub.Hypothesis:
    """The naive hypothesis plus what the trained model also uses (N=2000, 4 seeds: 97.4%, naive 88.2%):

    - V: the token at each key position reaches V through the embedding **and** through the
      self-attending layer-0 heads (a0.0, a0.1), which re-write the token at their own position.
      This is most of the naive hypothesis's gap (naive plus this claim alone: 96.8%; the refined
      hypothesis with V from the embedding only: 89.1%).
    - Q: every layer-0 head at the query position feeds Q nothing but what the current token
      fixes (+0.3 points over Q from the embedding only).
    - K: besides the previous token (previous-token heads), the key position's own token
      (embedding and self-attending heads) shapes K (+0.2 points).

    Unclaimed (resampled): the direct paths (embeddings and layer-0 heads to the output; claiming
    them exactly adds 0.2 points) and the previous-token heads into V.

    ``at_target`` as in :func:`naive`.
    """
    heads = heads or HEADS
    own = _layer0(heads, n_heads)
    h, ind = _induction(name, heads, at_target)
    ind.add("current token", model=["embed", *own, *heads["prev_token"]], port="q",
            agree=_feature("current_token", at_target))
    ind.add("previous tokens", model=heads["prev_token"], port="k", agree=previous_tokens)
    ind.add("key tokens", model=["embed", *own], port="k", agree=tokens)
    ind.add("token values", model=["embed", *own], port="v", agree=tokens)
    return h


def _path(node: str, port: str, model: list[str] | str, agree, heads: dict[str, list[str]], rest: Rest) -> scrub.Hypothesis:
    h, ind = _induction(f"induction, path {port.upper()}: {node}" + (", rest exact" if rest == "exact" else ""), heads)
    ind.add(node, model=model, port=port, agree=agree)
    if rest == "exact":
        everything = ["embed", *[f"a0.{i}" for i in range(CONFIG["n_heads"])]]
        ind.add("other ports", model=everything, port=[p for p in ("q", "k", "v") if p != port], agree=scrub.Exact())
        h.output().add("direct paths", model=everything, agree=scrub.Exact())
    elif rest != "random":
        raise ValueError(f"rest must be 'random' or 'exact', got {rest!r}")
    return h


def path_q(heads: dict[str, list[str]] | None = None, *, rest: Rest = "random") -> scrub.Hypothesis:
    """One path: the embeddings feed the induction heads' Q the current token.

    ``rest="random"`` (default): nothing else is claimed (K, V and the rest of Q come from a random
    example): how much this path alone recovers. ``rest="exact"``: Redwood's per-path test: only
    Q's input is scrubbed down to this path; K, V and the direct paths to the output stay as on the
    reference example."""
    heads = heads or HEADS
    return _path("current token", "q", "embed", "current_token", heads, rest)


def path_k(heads: dict[str, list[str]] | None = None, *, rest: Rest = "random") -> scrub.Hypothesis:
    """One path: the previous-token heads feed the induction heads' K the previous token at each
    position. ``rest`` as in :func:`path_q`."""
    heads = heads or HEADS
    return _path("previous tokens", "k", heads["prev_token"], previous_tokens, heads, rest)


def path_v(heads: dict[str, list[str]] | None = None, *, rest: Rest = "random") -> scrub.Hypothesis:
    """One path: the embeddings feed the induction heads' V the token at each position.
    ``rest`` as in :func:`path_q`."""
    heads = heads or HEADS
    return _path("token values", "v", "embed", tokens, heads, rest)


def per_position(heads: dict[str, list[str]] | None = None, *, name: str = "induction: per position") -> scrub.Hypothesis:
    """The naive hypothesis with every feature per position, claimed at the scored position ``p``:
    the induction heads output :func:`induction_answers` at ``p`` (agreeing examples have the same
    answer *at p*, whatever their own target), the embeddings feed Q the token at ``p``; K and V as
    in :func:`naive`. Correct on data whose target position varies, with larger groups than
    ``naive(at_target=True)``."""
    heads = heads or HEADS
    h = scrub.Hypothesis(name)
    ind = h.output().add("induction heads", model=heads["induction"], agree=scrub.at_target(induction_answers))
    ind.add("current token", model="embed", port="q", agree=scrub.at_target(tokens))
    ind.add("previous tokens", model=heads["prev_token"], port="k", agree=previous_tokens)
    ind.add("token values", model="embed", port="v", agree=tokens)
    return h


def per_position_at_targets(heads: dict[str, list[str]] | None = None, *,
                            name: str = "induction: per position, positions=target") -> scrub.Hypothesis:
    """:func:`per_position` as a user writes it without :func:`scrub.at_target`: per-position features
    and ``positions=`` the target. The same claims; the plan keeps only the copies at the targets."""
    heads = heads or HEADS
    h = scrub.Hypothesis(name)
    ind = h.output().add("induction heads", model=heads["induction"], agree=induction_answers,
                         positions=lambda d: d.target_pos)
    ind.add("current token", model="embed", port="q", agree=tokens)
    ind.add("previous tokens", model=heads["prev_token"], port="k", agree=previous_tokens)
    ind.add("token values", model="embed", port="v", agree=tokens)
    return h


def false_wrong_prev_head(
    heads: dict[str, list[str]] | None = None, wrong: str = "a0.0", *, at_target: bool = False
) -> scrub.Hypothesis:
    """False: the naive hypothesis with ``wrong`` (default a0.0, a self-attending layer-0 head, not a
    previous-token head) named as the head that feeds K the previous token. The real previous-token
    heads' K input is then resampled."""
    heads = heads or HEADS
    if wrong in heads["prev_token"]:
        raise ValueError(f"{wrong!r} is a previous-token head; name another head for a false hypothesis")
    h = naive({**heads, "prev_token": [wrong]}, at_target=at_target)
    h.name = f"induction, false: {wrong} as previous-token head" + (" (at target)" if at_target else "")
    return h


def false_qk_swapped(heads: dict[str, list[str]] | None = None, *, at_target: bool = False) -> scrub.Hypothesis:
    """False: Q and K roles swapped: the previous-token heads feed Q the token before the current one
    (``prev_token``), and the embeddings feed K the token at each key position; V as in the naive
    hypothesis. ``at_target`` as in :func:`naive`."""
    heads = heads or HEADS
    h, ind = _induction("induction, false: Q and K swapped", heads, at_target)
    ind.add("previous token", model=heads["prev_token"], port="q", agree=_feature("prev_token", at_target))
    ind.add("key tokens", model="embed", port="k", agree=tokens)
    ind.add("token values", model="embed", port="v", agree=tokens)
    return h
