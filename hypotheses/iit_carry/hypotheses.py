"""Subspace hypotheses for the IIT carry model.

The residual-site claim "the carry is the projection onto ``S`` of the residual entering layer 1 at
``=``" written with component nodes: every component below layer 1, restricted to ``S`` at ``=``,
agrees with the reference on the carry, wherever layer 1 and the output read it; the same
components at the digit positions are the reference's own; the rest of the residual at ``=`` (the
orthogonal complement of ``S``) comes from a random example.

>>> import scrub
>>> from hypotheses import iit_carry
>>> h = carry_hypothesis(iit_carry.carry_subspace())
>>> r = scrub.run(iit_carry.load_model(), h, iit_carry.make_data(300, seed=7), seed=0)
>>> r.loss_recovered > 0.95
True
"""

from __future__ import annotations

import torch

import scrub
from hypotheses.iit_carry import CONFIG, POSITION, carry_subspace

__all__ = ["BELOW", "HEADS", "carry_hypothesis", "digits_only", "true_hypothesis", "wrong_hypothesis", "wrong_subspace"]

#: Every component below layer 1 (what the residual entering layer 1 is the sum of).
BELOW = ["embed", "pos"] + [f"a0.{h}" for h in range(CONFIG["n_heads"])] + ["m0"]
#: The heads of layer 1.
HEADS = [f"a1.{h}" for h in range(CONFIG["n_heads"])]


def carry_hypothesis(subspace: scrub.Subspace | None, name: str | None = None) -> scrub.Hypothesis:
    """The carry lives in ``subspace`` of the residual entering layer 1 at ``=`` (see the module).

    Every path from the components below layer 1 to the output (directly, through the layer-1
    heads, through ``m1``, through both) is claimed twice: at ``=`` only the projection onto
    ``subspace``, agreeing on the carry; at the digit positions all of it, the reference's own.
    With ``subspace=None`` the carry is not claimed at all (:func:`digits_only`, the baseline).
    """
    h = scrub.Hypothesis(name or f"carry in {subspace!r}")
    out = h.output()
    count = iter(range(100))

    def below(parent: scrub.Node) -> None:
        i = next(count)
        if subspace is not None:
            parent.add(f"carry {i}", model=BELOW, positions=[POSITION], agree="carry", subspace=subspace)
        parent.add(f"digits {i}", model=BELOW, positions=list(range(POSITION)))

    def heads(parent: scrub.Node, tag: str) -> None:
        node = parent.add(f"layer-1 heads ({tag})", model=HEADS)
        below(node)

    mlp = out.add("m1", model="m1")
    heads(mlp, "into m1")
    below(mlp)
    heads(out, "direct")
    below(out)
    return h


def digits_only() -> scrub.Hypothesis:
    """Only the digits claimed, not the carry: the baseline that makes the carry's share the score."""
    return carry_hypothesis(None, "iit_carry/digits only")


def wrong_subspace() -> scrub.Subspace:
    """The second standard basis direction: orthogonal to the trained carry direction."""
    return scrub.Subspace(torch.eye(CONFIG["d_model"], dtype=torch.float64)[:, 1:2], name="e1 (wrong)")


def true_hypothesis() -> scrub.Hypothesis:
    """The carry in the direction it was trained into."""
    return carry_hypothesis(carry_subspace(), "iit_carry/true: carry in e0")


def wrong_hypothesis() -> scrub.Hypothesis:
    """The carry in an orthogonal direction (:func:`wrong_subspace`)."""
    return carry_hypothesis(wrong_subspace(), "iit_carry/wrong: carry in e1")
