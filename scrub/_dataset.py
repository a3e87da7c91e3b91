"""The dataset a hypothesis is scrubbed on: tokens, labels, target positions and feature columns."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from scrub.errors import DatasetError

__all__ = ["Dataset", "DatasetError"]


def _as_long_tensor(x, name: str) -> torch.Tensor:
    """``x`` as a long tensor, refusing anything that is not already integers (floats, bools, strings)."""
    if x is None:
        raise DatasetError(f"Dataset: {name} is None; pass an integer tensor or array")
    if isinstance(x, (str, bytes)):
        raise DatasetError(f"Dataset: {name} must hold integers, got a string {x[:20]!r}")
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        try:
            arr = np.asarray(x.to_numpy() if isinstance(x, (pd.Series, pd.DataFrame)) else x)
        except (ValueError, TypeError) as exc:  # ragged nested lists, odd objects
            raise DatasetError(f"Dataset: {name} is not a rectangular array of integers ({exc})") from None
        if arr.dtype.kind not in "iu":
            what = {"b": "bools", "f": "floats", "c": "complex numbers", "U": "strings", "S": "bytes",
                    "O": "objects (ragged rows, None or mixed types)"}.get(arr.dtype.kind, f"dtype {arr.dtype}")
            raise DatasetError(f"Dataset: {name} must hold integers, got {what}")
        t = torch.from_numpy(arr.astype(np.int64, copy=False))
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise DatasetError(f"Dataset: {name} must hold integers, got dtype {t.dtype}")
    return t.long()


def _scalar_int(x) -> int | None:
    """``x`` as an int when it is one integer (int, numpy integer, 0-d integer tensor or array; not a bool), else None."""
    if isinstance(x, (bool, np.bool_)):
        return None
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, torch.Tensor) and x.ndim == 0:
        integral = not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)
        return int(x.item()) if integral else None
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return int(x.item()) if x.dtype.kind in "iu" else None
    return None


def _mask_tensor(mask, shape: tuple[int, int], target_pos: torch.Tensor) -> torch.Tensor:
    """The attention mask as a long 0/1 tensor: only 0/1 values, no empty row, the target attended."""
    if isinstance(mask, (str, bytes)) or mask is None:
        raise DatasetError(f"Dataset: attention_mask must be an [N, T] array of 0/1, got {mask!r}")
    try:
        m = mask.detach().cpu() if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
    except (ValueError, TypeError, RuntimeError) as exc:
        raise DatasetError(f"Dataset: attention_mask must be an [N, T] array of 0/1 ({exc})") from None
    if m.dtype not in (torch.bool,) and not (m.is_floating_point() or m.dtype in (
            torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise DatasetError(f"Dataset: attention_mask must hold 0/1 (bools, ints or floats), got dtype {m.dtype}")
    if tuple(m.shape) != shape:
        raise DatasetError(f"Dataset: attention_mask must match tokens {shape}, got {tuple(m.shape)}")
    if m.dtype != torch.bool:
        ok = (m == 0) | (m == 1)  # NaN compares unequal to both
        if not bool(ok.all()):
            i, j = (int(v) for v in torch.nonzero(~ok)[0])
            raise DatasetError(
                f"Dataset: attention_mask[{i}, {j}] = {m[i, j].item():g}; a mask holds only 0 (masked) and 1 (attended)"
            )
    m = (m != 0).long()
    empty = torch.nonzero(m.sum(1) == 0)
    if len(empty):
        raise DatasetError(f"Dataset: attention_mask masks every position of example {int(empty[0])}")
    hidden = torch.nonzero(m[torch.arange(shape[0]), target_pos] == 0)
    if len(hidden):
        i = int(hidden[0])
        raise DatasetError(
            f"Dataset: attention_mask masks example {i}'s target position {int(target_pos[i])}; the scored "
            "position must be attended"
        )
    return m


def _columns_frame(columns, n: int) -> pd.DataFrame:
    if columns is None:
        return pd.DataFrame(index=range(n))
    if isinstance(columns, pd.DataFrame):
        frame = columns
    elif isinstance(columns, pd.Series):
        frame = columns.to_frame()
    elif isinstance(columns, Mapping):
        try:
            frame = pd.DataFrame(dict(columns))
        except (ValueError, TypeError) as exc:
            raise DatasetError(f"Dataset: columns could not be made into a table ({exc})") from None
    else:
        raise DatasetError(
            f"Dataset: columns must be a pandas DataFrame or a dict of column name -> N values, "
            f"got {type(columns).__name__}"
        )
    dup = frame.columns[frame.columns.duplicated()]
    if len(dup):
        raise DatasetError(f"Dataset: columns has two columns named {dup[0]!r}; column names must be unique")
    if len(frame) != n:
        raise DatasetError(f"Dataset: columns has {len(frame)} rows but tokens has {n} examples")
    return frame.reset_index(drop=True)


class Dataset:
    """Examples to scrub on.

    Args:
        tokens: integer tensor ``[N, T]``; every example has the same length ``T``
            (pad and pass ``attention_mask`` for ragged data).
        labels: the target token (or class) per example, ``[N]``. Needed by the
            default ``"loss"`` metric; a custom metric may ignore it.
        columns: a :class:`pandas.DataFrame` (or a dict of column name -> values) with one row
            per example, for features (``agree="column_name"`` or
            ``agree=lambda d: d.columns["x"]``). Column names must be unique; the index is dropped
            (row ``i`` is example ``i``).
        target_pos: the position whose logits are scored, one per example
            (an int for all, or ``[N]`` ints). Default: the last position, ``T - 1``.
        attention_mask: optional ``[N, T]`` mask (1 = attend, 0 = masked), passed to the model.
            Bools, ints or floats are accepted if every value is exactly 0 or 1; every example
            must attend at least one position, and its target position.

    Raises:
        DatasetError: naming the argument and what would be valid.
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
            raise DatasetError(f"Dataset: tokens must be [N, T], got shape {tuple(tokens.shape)}")
        n, t = tokens.shape
        if n == 0:
            raise DatasetError("Dataset: no examples (tokens has 0 rows); scrubbing needs at least 2")
        if t == 0:
            raise DatasetError("Dataset: tokens have length 0")
        self.tokens: torch.Tensor = tokens

        if labels is not None:
            labels = _as_long_tensor(labels, "labels")
            if labels.ndim != 1 or labels.shape[0] != n:
                raise DatasetError(
                    f"Dataset: labels must be [N] = [{n}] to match tokens, got shape {tuple(labels.shape)}"
                )
        self.labels: torch.Tensor | None = labels

        self.columns: pd.DataFrame = _columns_frame(columns, n)

        if target_pos is None:
            target_pos = torch.full((n,), t - 1, dtype=torch.long)
        elif (one := _scalar_int(target_pos)) is not None:
            target_pos = torch.full((n,), one, dtype=torch.long)
        elif isinstance(target_pos, (bool, np.bool_, str, bytes, float)):
            raise DatasetError(
                f"Dataset: target_pos must be an int or [N] ints, got {type(target_pos).__name__} {target_pos!r}"
            )
        else:
            target_pos = _as_long_tensor(target_pos, "target_pos")
        if target_pos.shape != (n,):
            raise DatasetError(f"Dataset: target_pos must be an int or [N] = [{n}], got {tuple(target_pos.shape)}")
        if (target_pos < 0).any() or (target_pos >= t).any():
            bad = int(torch.nonzero((target_pos < 0) | (target_pos >= t))[0])
            raise DatasetError(
                f"Dataset: target_pos[{bad}] = {int(target_pos[bad])} is outside the sequence (0..{t - 1})"
            )
        self.target_pos: torch.Tensor = target_pos

        if attention_mask is not None:
            attention_mask = _mask_tensor(attention_mask, (n, t), target_pos)
        self.attention_mask: torch.Tensor | None = attention_mask

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def seq_len(self) -> int:
        """``T``, the length of every example."""
        return self.tokens.shape[1]

    def subset(self, index) -> Dataset:
        """The examples at ``index`` (a slice, a list or tensor of row numbers, or a boolean mask
        of length N), in that order."""
        n = len(self)
        if isinstance(index, slice):
            idx = torch.from_numpy(np.arange(n)[index])
        else:
            try:
                arr = np.asarray(index.detach().cpu() if isinstance(index, torch.Tensor) else index)
            except (ValueError, TypeError) as exc:
                raise DatasetError(f"Dataset.subset: index must be row numbers or a boolean mask ({exc})") from None
            if arr.dtype.kind == "b":
                if arr.shape != (n,):
                    raise DatasetError(f"Dataset.subset: a boolean mask must have length N = {n}, got shape {arr.shape}")
                arr = np.flatnonzero(arr)
            elif arr.size == 0:
                arr = arr.astype(np.int64)
            if arr.dtype.kind not in "iu" or arr.ndim != 1:
                raise DatasetError(
                    f"Dataset.subset: index must be a 1-d list of row numbers, a slice or a boolean mask, "
                    f"got {arr.dtype} of shape {arr.shape}"
                )
            bad = arr[(arr < -n) | (arr >= n)]
            if bad.size:
                raise DatasetError(f"Dataset.subset: row {int(bad[0])} is outside the dataset (0..{n - 1})")
            idx = torch.from_numpy(arr.astype(np.int64) % n)
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
