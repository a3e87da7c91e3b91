"""Claims on a linear subspace of a component's output: :class:`Subspace`.

A node added with ``subspace=S`` claims only the projection of its model nodes' outputs onto
``S``. For every treeified edge it claims (model node ``u`` feeding port ``p`` of the parent), the
parent's input at ``p`` receives

    x_ctx(u) + (x_child(u) - x_ctx(u)) P,        P = B Bᵀ,

where ``B`` is ``S``'s ``[d_model, k]`` orthonormal basis, ``x_child(u)`` is ``u``'s output in the
child's instance (run on an example that agrees on the child's feature, recursively) and
``x_ctx(u)`` its output in the parent's random context. So the component of ``u``'s output inside
``S`` follows the hypothesis, and the orthogonal complement is treated as unclaimed: it comes from
the random context like any unimportant node. With ``S`` the whole space this is the ordinary
claim; with a subspace containing all of ``u``'s possible outputs (for a head, the row space of
its ``W_O``) it is too; with the orthogonal complement of that, it claims nothing.

>>> import torch
>>> s = Subspace.span(torch.eye(4)[:, :2] + 1.0)
>>> s.dim, s.d_model
(2, 4)
>>> bool(torch.allclose(s.projection @ s.projection, s.projection, atol=1e-6))
True
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np
import torch

from scrub.errors import HypothesisError

__all__ = ["Subspace"]


class Subspace:
    """A ``k``-dimensional subspace of the residual stream, given by an orthonormal basis ``[d_model, k]``.

    Args:
        basis: a ``[d_model, k]`` array or tensor whose columns are orthonormal (to 1e-4). Use
            :meth:`span` to orthonormalise arbitrary spanning vectors.
        name: shown in descriptions of the hypothesis.
    """

    def __init__(self, basis: Any, *, name: str | None = None) -> None:
        try:
            b = torch.as_tensor(np.asarray(basis) if not isinstance(basis, torch.Tensor) else basis.detach())
        except (TypeError, ValueError, RuntimeError) as exc:
            raise HypothesisError(f"Subspace: the basis must be a [d_model, k] array of floats ({exc})") from None
        if b.ndim != 2 or b.shape[1] < 1 or b.shape[1] > b.shape[0]:
            raise HypothesisError(
                f"Subspace: the basis must be [d_model, k] with 1 <= k <= d_model, got shape {tuple(b.shape)}"
            )
        if not (b.is_floating_point() and torch.isfinite(b).all()):
            raise HypothesisError("Subspace: the basis must hold finite floats")
        b = b.to(torch.float64)
        gram = b.T @ b
        err = float((gram - torch.eye(b.shape[1], dtype=b.dtype)).abs().max())
        if err > 1e-4:
            raise HypothesisError(
                f"Subspace: the basis columns are not orthonormal (|BᵀB - I| = {err:.2g}); "
                "use scrub.Subspace.span(vectors) to build an orthonormal basis of their span"
            )
        self.basis: torch.Tensor = b.cpu()
        self.name = name

    @classmethod
    def span(cls, vectors: Any, *, name: str | None = None) -> Subspace:
        """The subspace spanned by the columns of ``vectors`` ``[d_model, m]`` (orthonormalised; rank-deficient refused)."""
        v = torch.as_tensor(np.asarray(vectors) if not isinstance(vectors, torch.Tensor) else vectors.detach())
        if v.ndim == 1:
            v = v[:, None]
        if v.ndim != 2 or not v.is_floating_point():
            raise HypothesisError(f"Subspace.span: vectors must be a [d_model, m] float array, got shape {tuple(v.shape)}")
        q, r = torch.linalg.qr(v.to(torch.float64))
        rank = int((r.diagonal().abs() > 1e-8 * max(1.0, float(r.abs().max()))).sum())
        if rank < v.shape[1]:
            raise HypothesisError(f"Subspace.span: the {v.shape[1]} vectors span only {rank} dimensions")
        return cls(q, name=name)

    @property
    def dim(self) -> int:
        """``k``, the subspace's dimension."""
        return int(self.basis.shape[1])

    @property
    def d_model(self) -> int:
        return int(self.basis.shape[0])

    @functools.cached_property
    def projection(self) -> torch.Tensor:
        """The orthogonal projection ``B Bᵀ`` ``[d_model, d_model]`` (float64; computed once)."""
        return self.basis @ self.basis.T

    def complement(self, *, name: str | None = None) -> Subspace:
        """The orthogonal complement (refused when this is the whole space)."""
        if self.dim == self.d_model:
            raise HypothesisError("Subspace.complement: the subspace is the whole space; its complement is {0}")
        q, _ = torch.linalg.qr(torch.cat([self.basis, torch.eye(self.d_model, dtype=self.basis.dtype)], 1))
        return Subspace(q[:, self.dim : self.d_model], name=name)

    def orthogonal_to(self, other: Subspace, tol: float = 1e-6) -> bool:
        """Whether every vector of this subspace is orthogonal to every vector of ``other`` (``|B₁ᵀ B₂| <= tol``).

        Sibling nodes may claim mutually orthogonal subspaces of one node's output: their claimed
        parts add up, ``x_ctx + Δ₁ P₁ + Δ₂ P₂``.
        """
        if self.d_model != other.d_model:
            return False
        return float((self.basis.T @ other.basis).abs().max()) <= tol

    def fingerprint(self) -> str:
        """A hash of the basis (for records: two hypotheses with different subspaces differ)."""
        return hashlib.sha256(self.basis.numpy().tobytes()).hexdigest()[:16]

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"Subspace({label}dim {self.dim} of {self.d_model})"
