"""Hypotheses about the Llama induction model: the ladder from single paths to a refined circuit.

Head names come from :func:`hypotheses.llama_induction.locate_heads` on the committed weights
(:data:`HEADS`: previous-token head a0.3; induction heads a1.0, a1.1, a1.3); pass ``heads=`` to use
others. Query heads a0.0/a0.1 share key/value group 0 and a0.2/a0.3 group 1 (likewise in layer 1);
every claim below is about the named query heads alone (scrub gives grouped-query claims per-head
meaning), so a1.2, unclaimed, is resampled even though it shares its keys and values with a1.3.

**The MLPs.** Every hypothesis here (but :func:`false_mlps_unused`) says the induction heads write
the answer twice: directly into the output, and through the last MLP, ``m1``, which reads it from
them. So the output has two children, the induction heads and ``m1``, both agreeing on the label,
and ``m1`` has the induction heads as its one child, with the same claims about their Q, K and V.
Why:

- An unclaimed node is resampled, so leaving ``m1`` out claims that the last MLP's output does not
  depend on the input. It does: the textbook circuit with both MLPs resampled recovers 34%
  (:func:`false_mlps_unused`, a false hypothesis).
- ``m1`` claimed as a *leaf* agreeing on the label would be evaluated on its own same-label example
  all the way down, its own copy of the whole circuit included; the hypothesis would get most of the
  score whatever it says about Q, K and V (with that leaf, the two false hypotheses score 71-76% and a
  single path 70-74%). Giving ``m1`` the induction heads as its input keeps every claim about the
  heads' inputs load-bearing. Its other inputs (the embedding, layer-0 heads, ``m0``, a1.2) are left
  resampled: claiming them to agree on the current token adds nothing (99.3% either way, N=300).
- ``m0`` is a per-position function of the token and of what the layer-0 heads wrote, so the refined
  hypothesis lists it beside the embedding and the layer-0 heads as a source of Q, K and V.

Every hypothesis maps one node, the induction heads (agreeing on the label), under the output and
under ``m1``, and claims some of the paths into their q, k and v ports:

- true: :func:`naive` (the three textbook paths) and :func:`refined` (what the model also uses);
- single paths: :func:`path_q`, :func:`path_k`, :func:`path_v`;
- false: :func:`false_wrong_prev_head`, :func:`false_qk_swapped`, :func:`false_mlps_unused`.

The model has no ``pos`` node: its positions are rotary, applied inside the heads' query-key products.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import scrub
from hypotheses.induction.hypotheses import previous_tokens, tokens

__all__ = [
    "HEADS", "OTHER_LAYER0", "N_HEADS", "Paths",
    "naive", "refined", "path_q", "path_k", "path_v", "false_wrong_prev_head", "false_qk_swapped", "false_mlps_unused",
]

#: Located on the committed weights by ``locate_heads(load())`` (a test checks it still holds):
#: previous-token scores a0.3 0.93 (next: a0.2 0.20); induction scores a1.0 0.91, a1.3 0.74, a1.1 0.60
#: (next: a1.2 0.19).
HEADS: dict[str, list[str]] = {"prev_token": ["a0.3"], "induction": ["a1.0", "a1.1", "a1.3"]}

#: The layer-0 heads that are not previous-token heads. On ``make_data`` they attend to their own
#: position 0.08, 0.25 and 0.50 of the time, a0.2 also to the previous one (0.20).
OTHER_LAYER0: list[str] = ["a0.0", "a0.1", "a0.2"]

N_HEADS: int = 4

Feature = Any  # a column name or a function of the Dataset


@dataclass
class Paths:
    """The claimed paths into the induction heads: for each port, ``(model nodes, feature)`` pairs."""

    q: list[tuple[list[str], Feature]] = field(default_factory=list)
    k: list[tuple[list[str], Feature]] = field(default_factory=list)
    v: list[tuple[list[str], Feature]] = field(default_factory=list)


_LABELS: dict[Any, str] = {"current_token": "current token", "prev_token": "previous token",
                           previous_tokens: "previous tokens", tokens: "tokens"}


def _layer0(heads: dict[str, list[str]]) -> list[str]:
    """Every layer-0 head other than the previous-token heads."""
    return [f"a0.{i}" for i in range(N_HEADS) if f"a0.{i}" not in heads["prev_token"]]


def _induction(parent: scrub.Node, name: str, heads: dict[str, list[str]], paths: Paths) -> scrub.Node:
    node = parent.add(name, model=heads["induction"], agree="label")
    for port in ("q", "k", "v"):
        for model, feature in getattr(paths, port):
            node.add(f"{name}: {port.upper()} {_LABELS.get(feature, str(feature))}", model=model, port=port, agree=feature)
    return node


def _hypothesis(name: str, heads: dict[str, list[str]], paths: Paths, *, via_m1: bool = True) -> scrub.Hypothesis:
    """The induction heads (with ``paths``) under the output and, if ``via_m1``, under ``m1`` under the output."""
    h = scrub.Hypothesis(name)
    out = h.output()
    _induction(out, "induction heads", heads, paths)
    if via_m1:
        m1 = out.add("m1", model="m1", agree="label")
        _induction(m1, "induction heads (into m1)", heads, paths)
    return h


def _naive_paths(heads: dict[str, list[str]]) -> Paths:
    return Paths(q=[(["embed"], "current_token")], k=[(list(heads["prev_token"]), previous_tokens)],
                 v=[(["embed"], tokens)])


def naive(heads: dict[str, list[str]] | None = None, *, name: str = "llama induction: naive") -> scrub.Hypothesis:
    """The naive induction hypothesis: the induction heads' output is the answer (directly and through
    ``m1``), computed from the current token (embedding into Q), the previous token at each key position
    (previous-token heads into K) and the token at each key position (embedding into V)."""
    heads = heads or HEADS
    return _hypothesis(name, heads, _naive_paths(heads))


def refined(heads: dict[str, list[str]] | None = None, *, name: str = "llama induction: refined") -> scrub.Hypothesis:
    """The naive hypothesis plus what the trained model also uses:

    - Q: every layer-0 component at the query position (embedding, all four heads, ``m0``) feeds Q
      nothing but what the current token fixes;
    - K: besides the previous token (previous-token heads), the key position's own token, through the
      embedding, the other layer-0 heads and ``m0``;
    - V: the token at each key position through the embedding, the other layer-0 heads and ``m0``.

    Unclaimed (resampled): a1.2, the direct paths from the embedding and layer 0 to the output, the
    previous-token heads into V, and every input of ``m1`` but the induction heads.
    """
    heads = heads or HEADS
    own = ["embed", "m0", *_layer0(heads)]
    paths = Paths(
        q=[(["embed", "m0", *_layer0(heads), *heads["prev_token"]], "current_token")],
        k=[(list(heads["prev_token"]), previous_tokens), (own, tokens)],
        v=[(own, tokens)],
    )
    return _hypothesis(name, heads, paths)


def path_q(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """One path: the embedding feeds the induction heads' Q the current token (K and V, and everything
    else, come from random examples): how much this path alone recovers."""
    heads = heads or HEADS
    return _hypothesis("llama induction, path Q: current token", heads, Paths(q=_naive_paths(heads).q))


def path_k(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """One path: the previous-token heads feed the induction heads' K the previous token at each position."""
    heads = heads or HEADS
    return _hypothesis("llama induction, path K: previous tokens", heads, Paths(k=_naive_paths(heads).k))


def path_v(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """One path: the embedding feeds the induction heads' V the token at each position."""
    heads = heads or HEADS
    return _hypothesis("llama induction, path V: tokens", heads, Paths(v=_naive_paths(heads).v))


def false_wrong_prev_head(heads: dict[str, list[str]] | None = None, wrong: str = "a0.0") -> scrub.Hypothesis:
    """False: the naive hypothesis with ``wrong`` (default a0.0, which attends to neither the previous
    nor its own position much) named as the head that feeds K the previous token. The real
    previous-token head's K input is then resampled."""
    heads = heads or HEADS
    if wrong in heads["prev_token"]:
        raise ValueError(f"{wrong!r} is a previous-token head; name another head for a false hypothesis")
    return naive({**heads, "prev_token": [wrong]}, name=f"llama induction, false: {wrong} as previous-token head")


def false_qk_swapped(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """False: Q and K roles swapped: the previous-token heads feed Q the token before the current one
    (``prev_token``), and the embedding feeds K the token at each key position; V as in the naive one."""
    heads = heads or HEADS
    paths = Paths(q=[(list(heads["prev_token"]), "prev_token")], k=[(["embed"], tokens)], v=[(["embed"], tokens)])
    return _hypothesis("llama induction, false: Q and K swapped", heads, paths)


def false_mlps_unused(heads: dict[str, list[str]] | None = None) -> scrub.Hypothesis:
    """False: the attention-only textbook circuit carried over unchanged: the naive paths into the
    induction heads, which write the answer directly, and nothing about the MLPs, so both are resampled
    (a claim that their outputs do not depend on the input)."""
    heads = heads or HEADS
    return _hypothesis("llama induction, false: MLPs unused", heads, _naive_paths(heads), via_m1=False)
