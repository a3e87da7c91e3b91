"""A DAS ground truth on a compiled program: where ``sort`` keeps each token's rank.

In ``sort`` (tracr's ``make_sort_unique``), layer 0 computes ``target_pos_2``, each token's rank
(how many tokens are smaller), and writes it one-hot into residual dimensions 12..17; the head
``a1.0`` then puts at position ``q`` the token whose rank is ``q``. So the residual entering layer
1, at the input positions, carries the rank in a known subspace. Each rank is one-hot, so their sum
is the same for every example and no interchange can see it: the subspace an interchange can
recover is spanned by the *differences* of the rank vectors that occur (ranks 0..4 for inputs of
length 5): :func:`true_subspace`, 4-dimensional.

Scored at a random position (``make_data(..., target_pos="random")``) the output at position ``p``
is the token of rank ``p - 1``; with the ranks of a source example swapped in, it is the *base's*
token at the position where the *source* has rank ``p - 1`` (:func:`counterfactual`).

>>> from hypotheses.tracr.das import true_subspace
>>> true_subspace().dim
4
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import scrub
from hypotheses.tracr import load_spec
from hypotheses.tracr.hypotheses import feature

__all__ = ["PROGRAM", "LAYER", "POSITIONS", "K", "variable", "counterfactual", "true_subspace", "sop_subspace",
           "hypothesis"]

PROGRAM = "sort"
#: The site: the residual entering layer 1 ...
LAYER = 1
#: ... at the input positions (0 is BOS).
POSITIONS = [1, 2, 3, 4, 5]
#: The dimension an interchange can recover (ranks 0..4, less their constant sum).
K = 4
_BELOW = ["embed", "pos", "a0.0", "m0"]


def variable(data: scrub.Dataset) -> list[tuple[Any, ...]]:
    """The high-level variable: each example's ranks at its input positions (a tuple)."""
    return list(data.columns["target_pos_2"])


def counterfactual(data: scrub.Dataset, base: np.ndarray, values: np.ndarray) -> torch.Tensor:
    """The base's token at the position whose rank, in ``values``, is the scored position's (output index)."""
    spec = load_spec(PROGRAM)
    index = {v: i for i, v in enumerate(spec["output_values"])}
    tp = data.target_pos.numpy()[base] - 1
    tokens = data.columns["tokens"].to_numpy()[base]
    return torch.tensor([index[t[list(v).index(p)]] for t, v, p in zip(tokens, values, tp, strict=True)])


def sop_subspace(label: str) -> scrub.Subspace:
    """All residual dimensions tracr gave SOp ``label`` (e.g. ``"tokens"``: a wrong subspace for the ranks)."""
    spec = load_spec(PROGRAM)
    d = spec["config"]["d_model"]
    return scrub.Subspace(torch.eye(d, dtype=torch.float64)[:, spec["sops"][label]["dims"]], name=label)


def true_subspace() -> scrub.Subspace:
    """The span of the differences of the one-hot rank vectors 0..4: what an interchange can recover."""
    spec = load_spec(PROGRAM)
    onehot = torch.eye(spec["config"]["d_model"], dtype=torch.float64)[:, spec["sops"]["target_pos_2"]["dims"][:K + 1]]
    return scrub.Subspace.span(onehot[:, 1:] - onehot[:, :1], name="target_pos_2 (tracr)")


def hypothesis(subspace: scrub.Subspace, name: str | None = None) -> scrub.Hypothesis:
    """``a1.0`` reads the ranks at its keys through ``subspace`` of everything below layer 1.

    Its queries (the positions) and values (the tokens) are claimed exactly; at its keys, only the
    projection onto ``subspace`` of the layer-0 residual is claimed, per position, to carry the rank
    (the residual-site claim "the ranks live in ``subspace``").
    """
    h = scrub.Hypothesis(name or f"sort ranks in {subspace!r}")
    head = h.output().add("sort head", model="a1.0")
    head.add("ranks", model=_BELOW, port="k", agree=feature(["target_pos_2"]), subspace=subspace)
    head.add("positions and tokens", model=_BELOW, port=["q", "v"])
    return h
