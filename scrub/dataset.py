"""The dataset a hypothesis is scrubbed on: tokens, labels, target positions and feature columns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

__all__ = ["Dataset"]


def _as_long_tensor(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if isinstance(x, (pd.Series, pd.DataFrame)) else x)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"Dataset: {name} must hold integers, got dtype {t.dtype}")
    return t.long()


class Dataset:
    """Examples to scrub on.

    Args:
        tokens: integer tensor ``[N, T]``; every example has the same length ``T``
            (pad and pass ``attention_mask`` for ragged data).
        labels: the target token (or class) per example, ``[N]``. Needed by the
            default ``"loss"`` metric; a custom metric may ignore it.
        columns: a :class:`pandas.DataFrame` with one row per example, for features
            (``agree="column_name"`` or ``agree=lambda d: d.columns["x"]``).
        target_pos: the position whose logits are scored, one per example
            (an int for all, or ``[N]``). Default: the last position, ``T - 1``.
        attention_mask: optional ``[N, T]`` 0/1 mask (1 = attend), passed to the model.
    """

    def __init__(
        self,
        tokens,
        labels=None,
        *,
        columns: pd.DataFrame | None = None,
        target_pos: int | Sequence[int] | torch.Tensor | None = None,
        attention_mask=None,
    ) -> None:
        tokens = _as_long_tensor(tokens, "tokens")
        if tokens.ndim != 2:
            raise ValueError(f"Dataset: tokens must be [N, T], got shape {tuple(tokens.shape)}")
        n, t = tokens.shape
        if n == 0:
            raise ValueError("Dataset: no examples (tokens has 0 rows); scrubbing needs at least 2")
        if t == 0:
            raise ValueError("Dataset: tokens have length 0")
        self.tokens: torch.Tensor = tokens

        if labels is not None:
            labels = _as_long_tensor(labels, "labels")
            if labels.ndim != 1 or labels.shape[0] != n:
                raise ValueError(
                    f"Dataset: labels must be [N] = [{n}] to match tokens, got shape {tuple(labels.shape)}"
                )
        self.labels: torch.Tensor | None = labels

        if columns is None:
            columns = pd.DataFrame(index=range(n))
        if not isinstance(columns, pd.DataFrame):
            columns = pd.DataFrame(columns)
        if len(columns) != n:
            raise ValueError(f"Dataset: columns has {len(columns)} rows but tokens has {n} examples")
        self.columns: pd.DataFrame = columns.reset_index(drop=True)

        if target_pos is None:
            target_pos = torch.full((n,), t - 1, dtype=torch.long)
        elif isinstance(target_pos, int):
            target_pos = torch.full((n,), target_pos, dtype=torch.long)
        else:
            target_pos = _as_long_tensor(target_pos, "target_pos")
        if target_pos.shape != (n,):
            raise ValueError(f"Dataset: target_pos must be an int or [N] = [{n}], got {tuple(target_pos.shape)}")
        if (target_pos < 0).any() or (target_pos >= t).any():
            bad = int(torch.nonzero((target_pos < 0) | (target_pos >= t))[0])
            raise ValueError(
                f"Dataset: target_pos[{bad}] = {int(target_pos[bad])} is outside the sequence (0..{t - 1})"
            )
        self.target_pos: torch.Tensor = target_pos

        if attention_mask is not None:
            attention_mask = torch.as_tensor(attention_mask).long()
            if attention_mask.shape != tokens.shape:
                raise ValueError(
                    f"Dataset: attention_mask must match tokens {tuple(tokens.shape)}, "
                    f"got {tuple(attention_mask.shape)}"
                )
        self.attention_mask: torch.Tensor | None = attention_mask

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def seq_len(self) -> int:
        """``T``, the length of every example."""
        return self.tokens.shape[1]

    def subset(self, index) -> "Dataset":
        """The examples at ``index`` (a slice, list or tensor of row numbers), in that order."""
        idx = torch.as_tensor(np.arange(len(self))[index] if isinstance(index, slice) else index).long()
        return Dataset(
            self.tokens[idx],
            None if self.labels is None else self.labels[idx],
            columns=self.columns.iloc[idx.numpy()],
            target_pos=self.target_pos[idx],
            attention_mask=None if self.attention_mask is None else self.attention_mask[idx],
        )

    def __repr__(self) -> str:
        cols = ", ".join(map(str, self.columns.columns)) or "none"
        return f"Dataset(N={len(self)}, T={self.seq_len}, labels={'yes' if self.labels is not None else 'no'}, columns=[{cols}])"
