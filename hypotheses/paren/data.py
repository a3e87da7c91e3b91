"""Data for the paren-balancer classifier (Redwood's causal scrubbing paren balancer).

A string of up to :data:`MAX_LEN` parentheses is written as
``[start] p_1 ... p_L [end] [pad] ...`` in a row of :data:`N_CTX` tokens; the
attention mask is 1 on the start, parens and end tokens and 0 on pads. The label
(1 balanced, 0 not) is read from the logits at the start position, 0.

The mix :func:`make_data` draws (each example's generator is its ``kind``):

=============  ======  ==========================================================
kind           share   what it is
=============  ======  ==========================================================
``balanced``   50 %    a uniformly random balanced string of 2k parens, k uniform
                       in 1..max_len//2 (cycle lemma, so every Dyck word of that
                       length is equally likely)
``dip``        20 %    hard negative: a balanced string (two random balanced
                       pieces back to back, of 2k parens in all) with one ``)``
                       moved left to a point where the running depth is 0, so
                       the counts stay equal but the depth really goes to -1
                       there (:func:`make_dip`). 90 % of the time that point is
                       a return to 0 inside the string, so the result starts
                       with ( and (mostly) ends with ) ; half are built on the mirror image (reverse and
                       swap), so the dip is as often seen from the right.
``unequal``    15 %    hard negative: a balanced string with one edit that breaks
                       the count: flip one paren (50 %), delete one (25 %) or
                       insert one (25 %; a delete when the string is full)
``random``     15 %    easy: length uniform in 1..max_len, each paren ( or ) with
                       probability 1/2 (a few come out balanced and are labelled 1)
=============  ======  ==========================================================

So about 51 % of the examples are balanced. Labels and every feature column are
computed from the final string, never assumed from the kind.

:func:`make_decorrelated_data` draws from the same mix but keeps a quarter of the examples in
each cell of (count test, horizon test), so that the two tests are independent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

import scrub

__all__ = [
    "PAD", "START", "END", "OPEN", "CLOSE", "VOCAB", "MAX_LEN", "N_CTX", "KIND_SHARES",
    "random_balanced", "make_dip", "make_unequal", "random_string", "is_balanced",
    "encode", "features", "generate_strings", "make_data", "make_decorrelated_data",
]

PAD: int = 0
START: int = 1
END: int = 2
OPEN: int = 3
CLOSE: int = 4
VOCAB: tuple[str, ...] = ("[pad]", "[start]", "[end]", "(", ")")
MAX_LEN: int = 40
"""The longest paren string the model reads."""
N_CTX: int = MAX_LEN + 2
"""Tokens per row: start, up to :data:`MAX_LEN` parens, end, pads."""

KIND_SHARES: dict[str, float] = {"balanced": 0.50, "dip": 0.20, "unequal": 0.15, "random": 0.15}
"""The share of each generator in :func:`make_data`."""


def _mirror(s: str) -> str:
    """Reverse ``s`` and swap ( and ): balanced strings map to balanced strings."""
    return s[::-1].translate(str.maketrans("()", ")("))


def random_balanced(rng: np.random.Generator, n_pairs: int) -> str:
    """A uniformly random balanced string of ``n_pairs`` pairs (cycle lemma).

    Shuffle ``n_pairs`` opens and ``n_pairs + 1`` closes, rotate the sequence to
    start just after the first minimum of its running depth, and drop the final
    ``)``: each Dyck word of length ``2 * n_pairs`` comes out equally often.
    """
    if n_pairs < 0:
        raise ValueError(f"n_pairs must be >= 0, got {n_pairs}")
    steps = np.array([1] * n_pairs + [-1] * (n_pairs + 1), dtype=np.int64)
    rng.shuffle(steps)
    depth = np.cumsum(steps)
    cut = int(np.argmin(depth)) + 1  # first index of the minimum, as a prefix length
    rotated = np.concatenate([steps[cut:], steps[:cut]])[:-1]
    return "".join("(" if x > 0 else ")" for x in rotated)


def make_dip(rng: np.random.Generator, balanced: str, interior: float = 0.9) -> str:
    """A hard negative from a balanced string: equal counts, but the depth dips to -1.

    One ``)`` is moved left to a point where the running depth is 0, so the prefix
    ending there has one more ``)`` than ``(``. With probability ``interior`` that
    point is a return to depth 0 inside the string (not its start), when the string
    has one, so the result still starts with ``(`` and, where it can, ends with ``)``
    (these are the hard ones); else the ``)`` goes to the front. With probability 1/2 all this is done on the mirror
    image (reverse and swap), so the dip is as often seen from the right.
    """
    if not balanced or not is_balanced(balanced):
        raise ValueError(f"make_dip needs a non-empty balanced string, got {balanced!r}")
    flip = bool(rng.random() < 0.5)
    s = _mirror(balanced) if flip else balanced
    depth = np.concatenate([[0], np.cumsum([1 if c == "(" else -1 for c in s])])
    returns = [j for j in range(1, len(s)) if depth[j] == 0]
    # a return just before a final "()" leaves only that final ) to move: the result would end in (
    returns = [j for j in returns if j < len(s) - 2] or returns
    j = returns[int(rng.integers(len(returns)))] if returns and rng.random() < interior else 0
    closes = [i for i in range(j, len(s)) if s[i] == ")"]
    # taking the final ) of a final "()" would leave the string ending in ( : avoid when possible
    keep_end = [i for i in closes if not (i == len(s) - 1 and s[i - 1] == "(")]
    closes = keep_end or closes
    r = closes[int(rng.integers(len(closes)))]
    t = s[:r] + s[r + 1:]
    u = t[:j] + ")" + t[j:]  # j <= r: the depth before j is unchanged, 0, so u dips to -1 at j
    return _mirror(u) if flip else u


def make_unequal(rng: np.random.Generator, balanced: str, max_len: int = MAX_LEN) -> str:
    """A hard negative from a balanced string: one edit that makes the counts unequal.

    Flip one paren (probability 1/2), delete one (1/4) or insert one at a random
    place (1/4; a delete instead when the string already has ``max_len`` parens).
    """
    if not balanced:
        raise ValueError("make_unequal needs a non-empty string")
    u = rng.random()
    n = len(balanced)
    if u < 0.5:
        i = int(rng.integers(n))
        return balanced[:i] + ("(" if balanced[i] == ")" else ")") + balanced[i + 1:]
    if u < 0.75 or n >= max_len:
        i = int(rng.integers(n))
        return balanced[:i] + balanced[i + 1:]
    i = int(rng.integers(n + 1))
    return balanced[:i] + ("(" if rng.random() < 0.5 else ")") + balanced[i:]


def random_string(rng: np.random.Generator, max_len: int = MAX_LEN) -> str:
    """A string of length uniform in 1..``max_len``, each paren ( or ) with probability 1/2."""
    n = int(rng.integers(1, max_len + 1))
    return "".join(np.where(rng.random(n) < 0.5, "(", ")"))


def is_balanced(s: str) -> bool:
    """Whether ``s`` is a balanced paren string (the empty string is)."""
    depth = 0
    for c in s:
        depth += 1 if c == "(" else -1
        if depth < 0:
            return False
    return depth == 0


def encode(strings: list[str], n_ctx: int = N_CTX) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens ``[n, n_ctx]`` (start, parens, end, pads) and the 0/1 attention mask."""
    tokens = np.full((len(strings), n_ctx), PAD, dtype=np.int64)
    for i, s in enumerate(strings):
        if len(s) + 2 > n_ctx:
            raise ValueError(f"string {i} has {len(s)} parens; at most {n_ctx - 2} fit in {n_ctx} tokens")
        if set(s) - {"(", ")"}:
            raise ValueError(f"string {i} holds characters other than ( and ): {s!r}")
        tokens[i, 0] = START
        tokens[i, 1:1 + len(s)] = [OPEN if c == "(" else CLOSE for c in s]
        tokens[i, 1 + len(s)] = END
    tokens_t = torch.from_numpy(tokens)
    return tokens_t, (tokens_t != PAD).long()


def features(strings: list[str]) -> pd.DataFrame:
    """Per-example features of paren strings, one row per string.

    Columns:
        text: the string itself.
        balanced: the label (every prefix has at least as many ( as ), and the counts are equal).
        count_test: equal numbers of ( and ).
        horizon_test: no prefix (read left to right) has more ) than (.
        horizon_test_rtl: no suffix (read right to left) has more ( than ); Redwood's
            model read the string from the right, so its "horizon" is this one. With
            equal counts the two tests agree; they differ only when counts differ.
        length: number of parens.
        n_open: number of ( ; open_proportion: ``n_open / length``.
        first_char_open: the first paren is ( ; last_char_close: the last paren is ).
        min_depth: the lowest running depth over all prefixes (the empty one counts, so <= 0).
        final_depth: ``#( - #)``.
    """
    n = len(strings)
    width = max((len(s) for s in strings), default=0)
    steps = np.zeros((n, width), dtype=np.int64)
    length = np.zeros(n, dtype=np.int64)
    for i, s in enumerate(strings):
        length[i] = len(s)
        steps[i, : len(s)] = [1 if c == "(" else -1 for c in s]
    depth = np.cumsum(steps, axis=1)  # padded tail repeats the final depth
    final = steps.sum(axis=1)
    min_depth = np.minimum(depth.min(axis=1, initial=0), 0)
    # suffix depth from the right, with ) = +1: every suffix must be >= 0
    rev = np.cumsum(-steps[:, ::-1], axis=1)
    n_open = (steps > 0).sum(axis=1)
    count_test = final == 0
    horizon = min_depth >= 0
    horizon_rtl = rev.min(axis=1, initial=0) >= 0
    first = np.array([len(s) > 0 and s[0] == "(" for s in strings], dtype=bool)
    last = np.array([len(s) > 0 and s[-1] == ")" for s in strings], dtype=bool)
    return pd.DataFrame(
        {
            "text": strings,
            "balanced": count_test & horizon,
            "count_test": count_test,
            "horizon_test": horizon,
            "horizon_test_rtl": horizon_rtl,
            "length": length,
            "n_open": n_open,
            "open_proportion": np.where(length > 0, n_open / np.maximum(length, 1), 0.0),
            "first_char_open": first,
            "last_char_close": last,
            "min_depth": min_depth,
            "final_depth": final,
        }
    )


def generate_strings(
    n: int, seed: int | Sequence[int] = 0, max_len: int = MAX_LEN
) -> tuple[list[str], list[str]]:
    """``n`` paren strings from the mix in :data:`KIND_SHARES`, and the kind of each.

    Deterministic in ``seed`` (an int, or a sequence of ints such as ``[seed, chunk]``,
    given to :func:`numpy.random.default_rng`).
    """
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2, got {max_len}")
    rng = np.random.default_rng(seed)
    names = list(KIND_SHARES)
    kinds = rng.choice(len(names), size=n, p=np.array([KIND_SHARES[k] for k in names]))
    strings: list[str] = []
    for k in kinds:
        kind = names[k]
        if kind == "random":
            strings.append(random_string(rng, max_len))
            continue
        n_pairs = int(rng.integers(1, max_len // 2 + 1))
        if kind == "dip" and n_pairs >= 2:
            # two top-level pieces, so there is a return to depth 0 inside to dip at
            k1 = int(rng.integers(1, n_pairs))
            base = random_balanced(rng, k1) + random_balanced(rng, n_pairs - k1)
        else:
            base = random_balanced(rng, n_pairs)
        if kind == "balanced":
            strings.append(base)
        elif kind == "dip":
            strings.append(make_dip(rng, base))
        else:
            strings.append(make_unequal(rng, base, max_len))
    return strings, [names[k] for k in kinds]


def make_data(n: int, seed: int | Sequence[int] = 0, max_len: int = MAX_LEN) -> scrub.Dataset:
    """A :class:`scrub.Dataset` of ``n`` paren strings (see the module docstring for the mix).

    Tokens are ``[n, 42]`` (start, parens, end, pads), labels 1 for balanced and 0
    otherwise, ``target_pos`` 0 for every example, the attention mask 1 on real
    tokens, and ``columns`` the :func:`features` of each string plus its ``kind``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if max_len > MAX_LEN:
        raise ValueError(f"max_len {max_len} is more than the model reads ({MAX_LEN})")
    strings, kinds = generate_strings(n, seed, max_len)
    tokens, mask = encode(strings)
    columns = features(strings)
    columns["kind"] = kinds
    labels = torch.tensor(columns["balanced"].to_numpy(), dtype=torch.long)
    return scrub.Dataset(tokens, labels, columns=columns, target_pos=0, attention_mask=mask)


def make_decorrelated_data(n: int, seed: int | Sequence[int] = 0, max_len: int = MAX_LEN) -> scrub.Dataset:
    """Like :func:`make_data`, but the count and horizon tests are independent and balanced.

    Strings are drawn from the usual mix (chunks of ``generate_strings(4 * n, [seed, chunk])``) and
    kept until each of the four cells (``count_test``, ``horizon_test``) = (True, True), (True, False),
    (False, True), (False, False) holds a quarter of ``n`` (the first cells get one more when 4 does
    not divide ``n``), then shuffled. So a resample agreeing on one test agrees on the other no more
    often than chance (Cramér's V 0), and a quarter of the examples are balanced. The columns are
    those of :func:`make_data`; ``kind`` is the generator each string came from.
    """
    if n < 4:
        raise ValueError(f"n must be >= 4 (one example per cell), got {n}")
    if max_len > MAX_LEN:
        raise ValueError(f"max_len {max_len} is more than the model reads ({MAX_LEN})")
    base = [seed] if isinstance(seed, (int, np.integer)) else list(seed)
    want = [n // 4 + (1 if i < n % 4 else 0) for i in range(4)]
    cells: list[list[tuple[str, str]]] = [[] for _ in range(4)]
    chunk = 0
    while any(len(c) < w for c, w in zip(cells, want, strict=True)):
        if chunk > 1000:
            raise RuntimeError("make_decorrelated_data: the mix gives too few strings of some cell")
        strings, kinds = generate_strings(4 * n, [*base, chunk], max_len)
        f = features(strings)
        cell = 2 * (~f["count_test"].to_numpy()).astype(int) + (~f["horizon_test"].to_numpy()).astype(int)
        for s, k, c in zip(strings, kinds, cell, strict=True):
            if len(cells[c]) < want[c]:
                cells[c].append((s, k))
        chunk += 1
    rows = [r for c in cells for r in c]
    order = np.random.default_rng([*base, 0xDEC]).permutation(len(rows))
    strings = [rows[i][0] for i in order]
    tokens, mask = encode(strings)
    columns = features(strings)
    columns["kind"] = [rows[i][1] for i in order]
    labels = torch.tensor(columns["balanced"].to_numpy(), dtype=torch.long)
    return scrub.Dataset(tokens, labels, columns=columns, target_pos=0, attention_mask=mask)
