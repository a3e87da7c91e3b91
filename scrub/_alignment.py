"""Features relative to the scored position, and a warning when a hypothesis is not aligned to it.

When every example is scored at the same position (the last token, say), a per-example feature
such as ``agree="label"`` on the heads that write the answer means what it says: the heads are run
on an example with the same label, and their output is read where that example's answer is
computed. When the target position varies from example to example, it does not: the output is
read at the *reference's* target position ``tp(x)``, and an agreeing example ``e`` computes its
label at ``tp(e)``, usually another position. What is patched in is then whatever ``e``'s heads
happen to compute at ``tp(x)``, and the score is meaningless (the induction demo's naive hypothesis
drops from about 90% to 27%, below a false hypothesis).

:func:`at_target` states the claim at the scored position instead. Notation: ``x`` is the reference
(the example scored, at position ``tp(x)``, its ``target_pos``), ``y`` the example the node's
parent runs on (``y = x`` under the output), ``e`` the example the node runs on, and ``M[e, p]``
what the node's model nodes output at position ``p`` when run on ``e``. ``agree=at_target(f)`` on
a node claims, for every reference, only the single position ``p = tp(x)``:

- the node's output enters its parent at position ``p`` only; every other position of that
  path comes from the parent's random context (as for any position a hypothesis leaves
  unclaimed);
- ``e`` is drawn uniformly from the examples that agree with ``y`` *at* ``p``:

  - ``f`` per position (a function of the data giving ``[N, T]``, ``F[e, p]`` the value at
    position ``p`` of example ``e``): ``e ~ U{e : F[e, p] = F[y, p]}``;
  - ``f`` per example (a column name or a function giving ``[N]``, the value at each example's
    own target position): ``e ~ U{e : tp(e) = p and f(e) = f(y)}``. The per-example value
    describes position ``tp(e)``, so only examples whose target is ``p`` can agree at ``p``.

So ``agree=at_target("label")`` on the induction heads says "at the scored position, the heads
output what the label fixes", and it is correct whatever the target positions are. The per-position
form has larger groups (examples agree at ``p`` whatever their own target) and is the one to use
when the feature is defined at every position. A chain of nodes all written with ``at_target``
stays at the scored position: each child claims position ``tp(x)`` of its parent's example. Under
a per-example ``at_target`` parent, ``tp(y) = tp(x)``; under a per-position one, ``y`` may have its
target elsewhere, so its children should use per-position features.

In the plan, such a node is one instance (not one per position): for reference ``x`` it is the
per-position copy at ``tp(x)``, and the copies at other positions, which nothing reads for ``x``,
are not computed (see :func:`scrub.internal.make_plan`).

:class:`AlignmentWarning` is raised by :func:`scrub.internal.make_plan` (``warn=True``) when the targets vary
and, on the sampled plan: a node with a plain per-example feature is read at the scored position
(counting the references whose agreeing example is scored elsewhere); a per-example ``at_target``
feature sits under a parent whose example is scored elsewhere; or a ``positions=`` function is read
on parent examples whose positions differ from the reference's.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from scrub.errors import FeatureError

__all__ = ["AlignmentWarning", "AtTarget", "at_target"]


class AlignmentWarning(UserWarning):
    """A hypothesis reads a feature at a position other than the one it describes (targets vary)."""


class AtTarget:
    """A feature claimed at the scored position only; create it with :func:`at_target`.

    Called on a :class:`~scrub.Dataset` it gives the per-position feature ``G [N, T]`` the sampler
    groups by: ``G = F`` for a per-position feature, and for a per-example one ``G[e, p] = f(e)``
    where ``p = tp(e)`` and a value that agrees with no per-example value elsewhere.
    """

    def __init__(self, feature: Any) -> None:
        from scrub._sampling import Exact, Random

        if isinstance(feature, AtTarget):
            feature = feature.feature
        if isinstance(feature, (Exact, Random)) or feature is Exact or feature is Random:
            raise FeatureError(
                f"at_target({feature!r}): Exact and Random need no alignment (Exact is the reference itself, "
                "Random any example); pass a column name or a function of the data"
            )
        if not (isinstance(feature, str) and feature) and not callable(feature):
            raise FeatureError(
                f"at_target: the feature must be a column name or a function of the data returning [N] or [N, T] "
                f"values; got {type(feature).__name__} {feature!r}"
            )
        self.feature = feature
        self.__name__ = f"at_target({getattr(feature, '__name__', feature)!s})"
        #: ``"example"`` or ``"position"``: the wrapped feature's shape on the data last seen
        self.inner_kind: str | None = None

    def __call__(self, data) -> np.ndarray:
        from scrub._sampling import evaluate_feature

        values = evaluate_feature(self.feature, data, self.__name__)
        n, t = len(data), data.seq_len
        codes = values.codes
        assert codes is not None  # a column or a function: per example or per position
        self.inner_kind = values.kind
        if values.kind == "position":
            return codes
        tp = data.target_pos.numpy() % t
        out = np.full((n, t), -1, dtype=np.int64)  # -1: "not this example's target"
        out[np.arange(n), tp] = codes
        return out

    def kind(self, data) -> str:
        """``"example"`` or ``"position"``: the shape of the wrapped feature on ``data``."""
        from scrub._sampling import evaluate_feature

        return evaluate_feature(self.feature, data, self.__name__).kind

    def __repr__(self) -> str:
        return self.__name__


def at_target(feature: Any) -> AtTarget:
    """``agree=`` a feature claimed at the scored position only (targets may vary per example).

    Args:
        feature: a column name or a function of the data returning one value per example
            (``[N]``: the value at the example's own target position) or per position
            (``[N, T]``).

    Returns:
        A feature for ``Node.add(agree=...)``. With ``x`` the reference, ``p = tp(x)`` its target
        position and ``y`` the parent's example, the node claims position ``p`` only, run on
        ``e ~ U{e : F[e, p] = F[y, p]}`` for a per-position ``F``, or
        ``e ~ U{e : tp(e) = p, f(e) = f(y)}`` for a per-example ``f``. See :mod:`scrub._alignment`.

    Example::

        ind = h.output().add("induction heads", model=["a1.0", "a1.1"], agree=scrub.at_target("label"))
        ind.add("current token", model="embed", port="q", agree=scrub.at_target(lambda d: d.tokens))
    """
    return AtTarget(feature)


def _warn(message: str) -> None:
    warnings.warn(message, AlignmentWarning, stacklevel=5)


def misaligned_example_feature(node: str, feature: Any, n_bad: int, n: int) -> None:
    """Warn that a per-example feature is read at the reference's target, not the agreeing example's."""
    what = f"{feature!r}" if isinstance(feature, str) else getattr(feature, "__name__", "a function")
    _warn(
        f"node {node!r}: agree={what} gives one value per example, but the target positions vary and the node is "
        f"read at the reference's target position: for {n_bad} of {n} references the agreeing example has its "
        f"target elsewhere, so its value there is not the feature's. Write agree=scrub.at_target({what}) "
        "(agreeing examples then share the target position), or a per-position feature [N, T] wrapped in "
        "scrub.at_target. If the feature is really the same at every position, pass warn=False."
    )


def misaligned_at_target(node: str, feature: Any, n_bad: int, n: int) -> None:
    """Warn that a per-example ``at_target`` feature sits under a parent whose examples are scored elsewhere."""
    _warn(
        f"node {node!r}: agree={feature!r} is a per-example value claimed at the reference's target position, "
        f"but for {n_bad} of {n} references its parent's example has its target elsewhere, so no example agrees "
        "with it there. Give this node a per-position feature [N, T] (scrub.at_target accepts one), or claim the "
        "parent with a per-example scrub.at_target feature too."
    )


def misaligned_positions(node: str, n_bad: int, n: int) -> None:
    """Warn that a positions= function is read on parent examples whose positions differ from the reference's."""
    _warn(
        f"node {node!r}: its positions= function is read on its parent's example, and for {n_bad} of {n} references "
        "that example's positions differ from the reference's, so the claim lands on positions the scored "
        "example does not have there. Claim the scored position with agree=scrub.at_target(feature), or give "
        "the parent a feature its examples share these positions on. If this is intended, pass warn=False."
    )
