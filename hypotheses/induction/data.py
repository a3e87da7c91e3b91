"""Synthetic data for the induction demo: random tokens with a repeated segment.

Every sequence (``n_ctx + 1`` tokens for training, ``n_ctx`` for evaluation) is laid out as::

    [prefix: random] [A: segment of length 4-10] [gap: random, length >= 1] [A again ...]

truncated to its length. Training sequences use every position (next-token loss);
evaluation examples (:func:`make_data`) end inside the second copy of ``A`` so that
the next token is fixed by induction: it is the token that followed the earlier
occurrence of the current token.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from scrub._dataset import Dataset

__all__ = [
    "CONFIG", "SEG_MIN", "SEG_MAX", "train_batch", "TrainBatches", "make_data", "make_varying_data", "repeated_tokens",
]

#: The model's TransformerBridgeConfig (passed to ``scrub.build_model``).
CONFIG: dict[str, Any] = dict(
    n_layers=2,
    attn_only=True,
    d_model=64,
    n_heads=4,
    d_head=16,
    normalization_type="LN",
    d_vocab=64,
    n_ctx=24,
    seed=0,
    act_fn="relu",
)

#: Shortest and longest repeated segment ``A``.
SEG_MIN: int = 4
SEG_MAX: int = 10


def _sizes(n_ctx: int | None, d_vocab: int | None) -> tuple[int, int]:
    """``(n_ctx, d_vocab)``, each defaulting to :data:`CONFIG`'s value."""
    return (CONFIG["n_ctx"] if n_ctx is None else n_ctx, CONFIG["d_vocab"] if d_vocab is None else d_vocab)


def _layout(rng: np.random.Generator, length: int) -> tuple[int, int, int]:
    """A random ``(prefix, seg_len, gap)`` whose second copy of ``A`` starts at or before ``length - 2``."""
    seg_len = int(rng.integers(SEG_MIN, SEG_MAX + 1))
    # The second copy starts at prefix + seg_len + gap <= length - 2, so at least two
    # of its tokens are inside the sequence (one induction target).
    room = length - 2 - seg_len  # prefix + gap <= room, gap >= 1
    # Prefix first, uniform: the first copy of A must also appear late in the sequence,
    # or the previous-token head only learns to work at early positions.
    prefix = int(rng.integers(0, room))
    gap = int(rng.integers(1, room - prefix + 1))
    return prefix, seg_len, gap


def train_batch(rng: np.random.Generator, batch: int, n_ctx: int | None = None,
                d_vocab: int | None = None) -> torch.Tensor:
    """One training batch ``[batch, n_ctx + 1]``: random tokens with a segment repeated after a gap.

    The model reads ``tokens[:, :-1]`` (``n_ctx`` positions) and is trained to predict
    ``tokens[:, 1:]`` at every position, the last one included (it is the one
    :func:`make_data` scores). Only the tokens of the second copy of ``A`` (after its
    first) are predictable, and only by induction. ``n_ctx`` and ``d_vocab`` default to
    :data:`CONFIG`'s.
    """
    n_ctx, d_vocab = _sizes(n_ctx, d_vocab)
    length = n_ctx + 1
    tokens = rng.integers(0, d_vocab, size=(batch, length))
    for row in tokens:
        prefix, seg_len, gap = _layout(rng, length)
        second = prefix + seg_len + gap
        copy_len = min(seg_len, length - second)
        row[second:second + copy_len] = row[prefix:prefix + copy_len]
    return torch.from_numpy(tokens).long()


class TrainBatches:
    """An endless, seeded stream of training batches (numpy ``Generator`` seeded once)."""

    def __init__(self, seed: int, batch: int, n_ctx: int | None = None, d_vocab: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.batch = batch
        self.n_ctx, self.d_vocab = _sizes(n_ctx, d_vocab)

    def __iter__(self) -> "TrainBatches":
        return self

    def __next__(self) -> torch.Tensor:
        return train_batch(self.rng, self.batch, self.n_ctx, self.d_vocab)


def _lay_out(rng: np.random.Generator, seg_len: int, k: int, prefix: int, second: int, T: int, d_vocab: int):
    """One row ``[prefix] [A] [gap] [A again, truncated at T] ``: returns ``(row, A, A[k])``.

    ``A[k]`` is unique inside ``A`` (it is read again in the second copy), and the prefix and gap
    do not contain it. The draws are made in a fixed order, so a seed gives the same row.
    """
    seg = rng.integers(0, d_vocab, size=seg_len)
    cur = int(seg[k])
    for j in range(seg_len):
        while j != k and seg[j] == cur:
            seg[j] = rng.integers(0, d_vocab)
    row = rng.integers(0, d_vocab, size=T)
    row[prefix:prefix + seg_len] = seg
    copy = min(seg_len, T - second)
    row[second:second + copy] = seg[:copy]
    for p in list(range(prefix)) + list(range(prefix + seg_len, second)):
        while row[p] == cur:
            row[p] = rng.integers(0, d_vocab)
    return row, seg, cur


def make_data(n: int, seed: int = 0, *, n_ctx: int | None = None, d_vocab: int | None = None) -> Dataset:
    """``n`` evaluation examples whose last token is inside the second copy of ``A``.

    Each example has length ``T = n_ctx``. Its last position holds ``A[k]`` with
    ``1 <= k <= len(A) - 2`` (not the first token of the copy, and never the last, so the
    answer ``A[k+1]`` is defined). The current token occurs exactly once earlier in the
    sequence (colliding tokens of ``A`` and of the random filler are resampled), so the
    induction answer is unambiguous. Fully determined by ``seed``.

    Returns a :class:`scrub.Dataset` with ``labels`` = the next token, ``target_pos`` =
    the last position (``n_ctx`` and ``d_vocab`` default to :data:`CONFIG`'s), and ``columns``:

    - ``label``: the answer, ``A[k+1]``;
    - ``current_token``: ``tokens[:, -1]`` (``A[k]``);
    - ``prev_token``: ``tokens[:, -2]``;
    - ``prev_occurrence``: position of the earlier occurrence of the current token;
    - ``answer_pos``: ``prev_occurrence + 1``, where the answer sits;
    - ``seg_start``, ``seg_len``, ``gap``, ``second_start``: the layout;
    - ``offset``: ``k``, the last token's index inside ``A``.
    """
    if n < 1:
        raise ValueError(f"make_data: n must be >= 1, got {n}")
    n_ctx, d_vocab = _sizes(n_ctx, d_vocab)
    rng = np.random.default_rng(seed)
    T = n_ctx
    tokens = np.empty((n, T), dtype=np.int64)
    rows: list[dict[str, int]] = []
    for i in range(n):
        seg_len = int(rng.integers(SEG_MIN, SEG_MAX + 1))
        k = int(rng.integers(1, seg_len - 1))  # 1 .. seg_len - 2
        second = T - 1 - k  # the second copy starts here and ends (truncated) at T - 1
        room = second - seg_len  # prefix + gap, gap >= 1
        gap = int(rng.integers(1, room + 1))
        prefix = room - gap
        row, seg, cur = _lay_out(rng, seg_len, k, prefix, second, T, d_vocab)
        tokens[i] = row
        prev = prefix + k
        rows.append(dict(
            label=int(seg[k + 1]), current_token=cur, prev_token=int(row[T - 2]),
            prev_occurrence=prev, answer_pos=prev + 1,
            seg_start=prefix, seg_len=seg_len, gap=gap, second_start=second, offset=k,
        ))
    columns = pd.DataFrame(rows)
    # Sanity: the current token occurs exactly once before the last position.
    assert ((tokens[:, :-1] == tokens[:, -1:]).sum(1) == 1).all()
    return Dataset(torch.from_numpy(tokens), torch.tensor(columns["label"].to_numpy()), columns=columns)


def make_varying_data(n: int, seed: int = 0, *, n_ctx: int | None = None, d_vocab: int | None = None) -> Dataset:
    """``n`` evaluation examples scored inside the second copy of ``A``, at a position that varies.

    Each example of length ``T = n_ctx`` is laid out as ``[prefix] [A] [gap] [A again] [filler]``;
    the target position ``tp`` holds ``A[k]`` (``1 <= k <= len(A) - 2``) and is never the last
    position: ``tp`` is drawn uniformly from the positions the layout allows, so it varies from
    ``len(A) + 1 + k`` to ``T - 2``. The answer ``A[k+1]`` is the next token (it is in the sequence,
    at ``tp + 1``). The current token ``A[k]`` occurs exactly once before ``tp`` (in the first copy)
    and nowhere in the prefix, the gap or ``A`` besides; tokens after ``tp`` (the rest of the copy,
    then random filler) cannot matter to the scored position. Fully determined by ``seed``.

    Returns a :class:`scrub.Dataset` with ``target_pos`` = ``tp``, ``labels`` = the answer and the
    columns of :func:`make_data` (``current_token`` and ``prev_token`` are read at ``tp``), plus
    ``target_pos``.
    """
    if n < 1:
        raise ValueError(f"make_varying_data: n must be >= 1, got {n}")
    n_ctx, d_vocab = _sizes(n_ctx, d_vocab)
    rng = np.random.default_rng(seed)
    T = n_ctx
    tokens = np.empty((n, T), dtype=np.int64)
    rows: list[dict[str, int]] = []
    for i in range(n):
        seg_len = int(rng.integers(SEG_MIN, SEG_MAX + 1))
        k = int(rng.integers(1, seg_len - 1))  # 1 .. seg_len - 2
        # second = tp - k >= seg_len + 1 (prefix >= 0, gap >= 1); tp <= T - 2
        tp = int(rng.integers(seg_len + 1 + k, T - 1))
        second = tp - k
        room = second - seg_len
        gap = int(rng.integers(1, room + 1))
        prefix = room - gap
        row, seg, cur = _lay_out(rng, seg_len, k, prefix, second, T, d_vocab)
        tokens[i] = row
        prev = prefix + k
        rows.append(dict(
            label=int(seg[k + 1]), current_token=cur, prev_token=int(row[tp - 1]),
            prev_occurrence=prev, answer_pos=prev + 1,
            seg_start=prefix, seg_len=seg_len, gap=gap, second_start=second, offset=k, target_pos=tp,
        ))
    columns = pd.DataFrame(rows)
    tp = columns["target_pos"].to_numpy()
    before = np.arange(T)[None, :] < tp[:, None]
    assert ((tokens == tokens[np.arange(n), tp][:, None]) & before).sum(1).tolist() == [1] * n
    assert (tokens[np.arange(n), tp + 1] == columns["label"].to_numpy()).all()
    return Dataset(torch.from_numpy(tokens), torch.tensor(columns["label"].to_numpy()),
                   target_pos=torch.from_numpy(tp.copy()), columns=columns)


def repeated_tokens(n: int, seed: int = 0, *, half: int | None = None, n_ctx: int | None = None,
                    d_vocab: int | None = None) -> torch.Tensor:
    """``[n, 2 * half]`` sequences ``x x`` where ``x`` is ``half`` distinct random tokens.

    ``half`` defaults to ``n_ctx // 2``. Used to score previous-token and induction heads.
    """
    n_ctx, d_vocab = _sizes(n_ctx, d_vocab)
    half = n_ctx // 2 if half is None else half
    if 2 * half > n_ctx or half > d_vocab:
        raise ValueError(f"repeated_tokens: half={half} does not fit n_ctx={n_ctx} / d_vocab={d_vocab}")
    rng = np.random.default_rng(seed)
    x = np.stack([rng.permutation(d_vocab)[:half] for _ in range(n)])
    return torch.from_numpy(np.concatenate([x, x], axis=1)).long()
