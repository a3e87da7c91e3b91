"""Features and the sampler: group the dataset by a feature once, then draw agreeing examples vectorised.

A feature is what an interpretation node claims its model nodes compute. Two examples
agree at a node when the feature's values are equal. Samplers (Redwood's names in brackets):

- ``Exact()`` [ExactSampler]: the reference example itself.
- a feature [FuncSampler]: a function of the :class:`~scrub.Dataset` returning one hashable
  value per example (``[N]``) or per position (``[N, T]``), or the name of a column.
- ``Random()`` [UncondSampler]: any example, ignoring the reference.

A feature function may return a list, array, tensor or pandas object. Values are read in example
order; a pandas Series or DataFrame whose index is not the default ``0..N-1`` is put back in
example order by its index when that index is a permutation of ``0..N-1`` (a sorted copy of a
column), and refused otherwise. 0-d tensors and arrays count as their Python values (so equal
values agree). A string, a dict, a set or a single value is refused with a
:class:`~scrub.FeatureError` naming the node.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from scrub._dataset import Dataset
from scrub.errors import FeatureError

__all__ = ["Exact", "Random", "Feature", "FeatureValues", "evaluate_feature", "Sampler", "FeatureError"]



@dataclass(frozen=True)
class Exact:
    """Agree on everything: the node is fed the reference example itself."""

    def __repr__(self) -> str:
        return "Exact()"


@dataclass(frozen=True)
class Random:
    """Agree on nothing: the node is fed a uniformly random example."""

    def __repr__(self) -> str:
        return "Random()"


Feature = Exact | Random | str | Callable[[Dataset], Any]


@dataclass(frozen=True)
class FeatureValues:
    """A feature evaluated on a dataset.

    ``kind`` is ``"exact"``, ``"random"``, ``"example"`` (``codes`` is ``[N]``) or
    ``"position"`` (``codes`` is ``[N, T]``); codes are small integers, equal where the
    feature's values are equal.
    """

    kind: str
    codes: np.ndarray | None = None
    n_values: int = 0


def _aligned(values: pd.Series | pd.DataFrame, n: int, node: str) -> np.ndarray:
    """A Series or DataFrame's values in example order.

    The default index (``0..N-1`` in order) is read by position. Any other index must be a
    permutation of ``0..N-1`` (a sorted or shuffled copy of the dataset's rows): the values are
    then put back in example order by their index. Any other index is refused, since reading it by
    position would silently give values to the wrong examples.
    """
    idx = values.index
    if isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1:
        return values.to_numpy()
    if len(idx) == n and idx.is_unique and pd.api.types.is_integer_dtype(idx.dtype) and (
        idx.min() == 0 and idx.max() == n - 1
    ):
        return values.sort_index().to_numpy()
    raise FeatureError(
        f"node {node!r}: the feature returned a pandas {type(values).__name__} whose index is not the examples "
        f"0..{n - 1} (it starts {list(idx[:3])}); return values in example order (e.g. .to_numpy()) or keep "
        "the dataset's row index"
    )


def _scalar(v: Any) -> Any:
    """A 0-d tensor or array as its Python scalar, so equal values hash and compare equal."""
    if isinstance(v, (torch.Tensor, np.ndarray)) and v.ndim == 0:
        return v.item()
    return v


def _to_array(values: Any, n: int, node: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        if values.ndim == 0:
            raise FeatureError(
                f"node {node!r}: the feature returned a single value ({values.item()!r}); it must return one "
                f"value per example [{n}] or per position [{n}, T]"
            )
        return values.detach().cpu().numpy()
    if isinstance(values, (pd.Series, pd.DataFrame)):
        return _aligned(values, n, node)
    if isinstance(values, pd.Index):
        return values.to_numpy()
    if isinstance(values, np.ndarray):
        if values.ndim == 0:
            raise FeatureError(
                f"node {node!r}: the feature returned a single value ({values.item()!r}); it must return one "
                f"value per example [{n}] or per position [{n}, T]"
            )
        if values.dtype == object:
            return np.vectorize(_scalar, otypes=[object])(values) if values.size else values
        return values
    if isinstance(values, (str, bytes, Mapping, set, frozenset)):
        what = {str: "a string", bytes: "bytes"}.get(type(values), f"a {type(values).__name__}")
        raise FeatureError(
            f"node {node!r}: the feature returned {what}; it must return one value per example [{n}] "
            f"(a list, array, tensor or Series in example order), not {what} of length {len(values)}"
        )
    if not isinstance(values, Iterable):
        raise FeatureError(
            f"node {node!r}: the feature returned a single {type(values).__name__} ({values!r}); it must return "
            f"one value per example [{n}] or per position [{n}, T]"
        )
    values = [_scalar(v) for v in values]
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _factorize(flat: np.ndarray, node: str) -> tuple[np.ndarray, int]:
    if flat.dtype == object:
        for v in flat[: min(len(flat), 1000)]:
            try:
                hash(v)
            except TypeError:
                raise FeatureError(
                    f"node {node!r}: feature values must be hashable (ints, strings, tuples), got {type(v).__name__}"
                ) from None
    if pd.isna(pd.Series(flat, dtype=object if flat.dtype == object else None)).any():
        raise FeatureError(f"node {node!r}: the feature returned NaN/None for some examples; every example needs a value")
    codes, uniques = pd.factorize(flat, use_na_sentinel=False)
    return codes.astype(np.int64), len(uniques)


def _fixed(agree) -> bool:
    from scrub._ablation import Mean, Zero

    return isinstance(agree, (Mean, Zero))


def evaluate_feature(agree: Any, data: Dataset, node: str = "?") -> FeatureValues:
    """Evaluate ``agree`` on ``data`` and encode its values; errors name ``node``.

    A claim fixed to :class:`~scrub.Mean` or :class:`~scrub.Zero` draws like ``Random()`` (its
    example is never used)."""
    if isinstance(agree, Exact) or agree is Exact:
        return FeatureValues("exact")
    if isinstance(agree, Random) or agree is Random or _fixed(agree):
        return FeatureValues("random")  # a claim fixed to a mean or zero is not run on its example
    n, t = len(data), data.seq_len
    if isinstance(agree, str):
        if agree not in data.columns.columns:
            raise FeatureError(
                f"node {node!r}: agree={agree!r} names no column of the dataset; columns are "
                f"{list(map(str, data.columns.columns))}"
            )
        values = data.columns[agree]
    elif callable(agree):
        try:
            values = agree(data)
        except Exception as exc:  # the user's function: say whose it is
            raise FeatureError(f"node {node!r}: the feature function raised {type(exc).__name__}: {exc}") from exc
    else:
        raise FeatureError(
            f"node {node!r}: agree must be a function of the data, a column name, scrub.Exact() or scrub.Random(); "
            f"got {type(agree).__name__}"
        )
    arr = _to_array(values, n, node)
    if arr.ndim == 1 and arr.shape[0] == n:
        codes, k = _factorize(arr, node)
        return FeatureValues("example", codes, k)
    if arr.ndim == 2 and arr.shape == (n, t):
        codes, k = _factorize(arr.reshape(-1), node)
        return FeatureValues("position", codes.reshape(n, t), k)
    raise FeatureError(
        f"node {node!r}: the feature returned shape {tuple(arr.shape)}; expected one value per example "
        f"[{n}] or one per position [{n}, {t}]"
    )


class Sampler:
    """Draws, for each reference, a uniformly random example that agrees with it on a feature.

    The dataset is grouped by the feature's codes once (a stable sort); a draw is then a
    vectorised pick within each reference's group. For a per-position feature, groups
    are formed per position and :meth:`draw` takes the position.
    """

    def __init__(self, values: FeatureValues, n: int, node: str = "?") -> None:
        self.kind = values.kind
        self.n = n
        self.node = node
        if self.kind in ("example", "position"):
            codes = values.codes
            assert codes is not None  # an "example" or "position" feature always has codes
            if self.kind == "position":
                # one group per (position, value): offset codes by position
                t = codes.shape[1]
                codes = codes + values.n_values * np.arange(t)[None, :]
                flat = codes.T.reshape(-1)  # position-major: index = pos * n + example
            else:
                flat = codes
            self._codes = codes
            self._order = np.argsort(flat, kind="stable")
            counts = np.bincount(flat)
            self._counts = counts
            self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            self.n_values = values.n_values
            self.singleton_fraction = float((counts[flat] == 1).mean())
            self.group_sizes = counts

    def warn_if_unique(self) -> None:
        """Warn (naming the node) when most examples agree with no example but themselves."""
        if self.kind in ("example", "position") and self.singleton_fraction > 0.5:
            warnings.warn(
                f"node {self.node!r}: {self.singleton_fraction:.0%} of examples have no agreeing example but "
                f"themselves ({self.n_values} distinct feature values over {self.n} examples); the node is then "
                "effectively fed the reference itself (Exact). Use more data or a coarser feature.",
                stacklevel=3,
            )

    def draw(self, ref: np.ndarray, rng: np.random.Generator, position: int | None = None) -> np.ndarray:
        """An agreeing example index for each reference index in ``ref`` (with replacement)."""
        if self.kind == "exact":
            return ref.copy()
        if self.kind == "random":
            return rng.integers(0, self.n, size=ref.shape[0])
        if self.kind == "position":
            if position is None:
                raise FeatureError(f"node {self.node!r}: a per-position feature needs a position to draw at")
            c = self._codes[ref, position]
        else:
            c = self._codes[ref]
        pick = self._starts[c] + np.floor(rng.random(ref.shape[0]) * self._counts[c]).astype(np.int64)
        out = self._order[pick]
        if position is not None and self.kind == "position":
            out = out - position * self.n
        return out
