"""The compiled RASP programs, described and evaluated in plain Python (no jax, no tracr).

Each program here is one that ``hypotheses.tracr.compile`` builds from tracr's own
``tracr.compiler.lib`` and compiles. :func:`evaluate` recomputes every intermediate
SOp of the program on one input, keyed by the SOp's label in the compiled model (the
labels in ``<name>.spec.json``), following RASP's own evaluation rules (``None``
propagates through maps, an aggregate of nothing is its default, a numerical mean of
one value is that value). The tests check these evaluators against tracr's RASP
evaluator on every SOp and every test input when tracr is installed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ProgramInfo", "PROGRAM_INFO", "PROGRAMS", "evaluate", "all_inputs", "sample_inputs"]

Value = Any
Row = list[Value]


@dataclass(frozen=True)
class ProgramInfo:
    """How a program is compiled and what its inputs look like.

    Attributes:
        name: the program's name (the key of :data:`PROGRAM_INFO`).
        description: one line on what the program computes.
        source: the tracr ``lib`` call that builds it.
        vocab: the input vocabulary (without the compiler's BOS and PAD).
        max_seq_len: the longest input (BOS excluded); the model's context is one more.
        causal: whether the model was compiled with a causal attention mask.
        categorical_output: ``False`` for numerical outputs (one logit holding the value).
        distinct_tokens: inputs must not repeat a token (``make_sort_unique``).
        balanced_half: :func:`sample_inputs` draws half of its examples from the
            inputs whose output is ``True`` (the balanced strings), so that the classes
            are not lopsided.
    """

    name: str
    description: str
    source: str
    vocab: tuple[Value, ...]
    max_seq_len: int
    causal: bool = False
    categorical_output: bool = True
    distinct_tokens: bool = False
    balanced_half: bool = False
    output: str = field(default="")


# ----------------------------------------------------------------------------------------
# RASP semantics in plain Python.


def _map(f: Callable[[Value], Value], xs: Row) -> Row:
    return [f(x) if x is not None else None for x in xs]


def _seqmap(f: Callable[[Value, Value], Value], xs: Row, ys: Row) -> Row:
    return [f(x, y) if None not in (x, y) else None for x, y in zip(xs, ys)]


def _select(keys: Row, queries: Row, pred: Callable[[Value, Value], bool]) -> list[list[bool]]:
    """RASP ``Select``: ``sel[q][k] = pred(key_k, query_q)``."""
    return [[bool(pred(k, q)) for k in keys] for q in queries]


def _mean(xs: Row, default: Value) -> Value:
    if not xs:
        return default
    if len(xs) == 1:
        return xs[0]
    if all(isinstance(x, (int, bool, float)) for x in xs):
        return sum(xs) / len(xs)
    raise ValueError(f"cannot aggregate {xs}")


def _aggregate(sel: list[list[bool]], values: Row, default: Value = None) -> Row:
    return [_mean([v for s, v in zip(row, values) if s], default) for row in sel]


def _width(sel: list[list[bool]]) -> Row:
    return [sum(row) for row in sel]


EQ = lambda k, q: k == q  # noqa: E731
LT = lambda k, q: k < q  # noqa: E731
LEQ = lambda k, q: k <= q  # noqa: E731
TRUE = lambda k, q: True  # noqa: E731


def _length(xs: Row) -> Row:
    # lib.make_length: SelectorWidth(Select(tokens, tokens, TRUE))
    return _width(_select(xs, xs, TRUE))


def _frac_prevs(bools: Row) -> Row:
    idx = list(range(len(bools)))
    return _aggregate(_select(idx, idx, LEQ), bools, default=0)


def _pair_balance(xs: Row, open_token: str, close_token: str) -> dict[str, Row]:
    bools_open = _map(lambda x: x == open_token, xs)
    opens = _frac_prevs(bools_open)
    bools_close = _map(lambda x: x == close_token, xs)
    closes = _frac_prevs(bools_close)
    balance = _seqmap(lambda x, y: 1 * x + -1 * y, opens, closes)
    return {"bools_open": bools_open, "opens": opens, "bools_close": bools_close, "closes": closes, "balance": balance}


# Each evaluator returns {sop label: values}; the labels are the ones
# hypotheses.tracr.compile gives (tracr's names with ids numbered in a fixed order).


def _eval_reverse(xs: Row) -> dict[str, Row]:
    idx = list(range(len(xs)))
    length = _length(xs)
    opp_idx = _seqmap(lambda x, y: x - y, length, idx)
    opp_idx_1 = _map(lambda x: x - 1, opp_idx)
    reverse = _aggregate(_select(idx, opp_idx_1, EQ), xs)
    return {"tokens": list(xs), "indices": idx, "length_2": length, "opp_idx_3": opp_idx,
            "opp_idx-1_4": opp_idx_1, "reverse_6": reverse}


def _eval_sort(xs: Row) -> dict[str, Row]:
    idx = list(range(len(xs)))
    target_pos = _width(_select(xs, xs, LT))
    out = _aggregate(_select(target_pos, idx, EQ), xs)
    return {"tokens": list(xs), "indices": idx, "target_pos_2": target_pos, "sort_4": out}


def _eval_hist(xs: Row) -> dict[str, Row]:
    return {"tokens": list(xs), "hist_2": _width(_select(xs, xs, EQ))}


def _eval_frac_prevs(xs: Row) -> dict[str, Row]:
    idx = list(range(len(xs)))
    is_x = _map(lambda x: x == "x", xs)
    return {"tokens": list(xs), "indices": idx, "map_2": is_x, "frac_prevs_3": _frac_prevs(is_x)}


def _eval_pair_balance(xs: Row) -> dict[str, Row]:
    idx = list(range(len(xs)))
    pb = _pair_balance(xs, "(", ")")
    return {"tokens": list(xs), "indices": idx, "bools_open_2": pb["bools_open"], "opens_3": pb["opens"],
            "bools_close_5": pb["bools_close"], "closes_6": pb["closes"], "pair_balance_7": pb["balance"]}


def _eval_shuffle_dyck(xs: Row) -> dict[str, Row]:
    idx = list(range(len(xs)))
    length = _length(xs)
    length_1 = _map(lambda x: x - 1, length)
    pb = _pair_balance(xs, "(", ")")
    balance = pb["balance"]
    all_zero = _map(lambda x: x == 0, balance)
    last_zero = _aggregate(_select(idx, length_1, EQ), all_zero)
    # Map(lambda x: x, balance < 0): tracr's Map composes nested Maps into one
    any_negative = _map(lambda x: x < 0, balance)
    has_neg = _aggregate(_select(idx, idx, TRUE), any_negative, default=0)
    not_has_neg = _map(lambda x: not x, has_neg)
    out = _seqmap(lambda x, y: x and y, last_zero, not_has_neg)
    return {
        "tokens": list(xs), "indices": idx, "length_2": length, "map_3": length_1,
        "bools_open_6": pb["bools_open"], "opens_7": pb["opens"],
        "bools_close_9": pb["bools_close"], "closes_10": pb["closes"], "balance_()_11": balance,
        "map_12": all_zero, "last_zero_13": last_zero, "any_negative_15": any_negative,
        "has_neg_16": has_neg, "not_has_neg_17": not_has_neg, "shuffle_dyck_18": out,
    }


def _eval_shuffle_dyck2(xs: Row) -> dict[str, Row]:
    idx = list(range(len(xs)))
    length = _length(xs)
    length_1 = _map(lambda x: x - 1, length)
    p = _pair_balance(xs, "(", ")")
    c = _pair_balance(xs, "{", "}")
    zero_p = _map(lambda x: x == 0, p["balance"])
    zero_c = _map(lambda x: x == 0, c["balance"])
    all_zero = _seqmap(lambda x, y: x and y, zero_p, zero_c)
    last_zero = _aggregate(_select(idx, length_1, EQ), all_zero)
    neg_p = _map(lambda x: x < 0, p["balance"])
    neg_c = _map(lambda x: x < 0, c["balance"])
    neg_any = _seqmap(lambda x, y: x or y, neg_p, neg_c)
    any_negative = _map(lambda x: x, neg_any)
    has_neg = _aggregate(_select(idx, idx, TRUE), any_negative, default=0)
    not_has_neg = _map(lambda x: not x, has_neg)
    out = _seqmap(lambda x, y: x and y, last_zero, not_has_neg)
    return {
        "tokens": list(xs), "indices": idx, "length_2": length, "map_3": length_1,
        "bools_open_6": p["bools_open"], "opens_7": p["opens"],
        "bools_close_9": p["bools_close"], "closes_10": p["closes"], "balance_()_11": p["balance"],
        "map_12": zero_p,
        "bools_open_14": c["bools_open"], "opens_15": c["opens"],
        "bools_close_17": c["bools_close"], "closes_18": c["closes"], "balance_{}_19": c["balance"],
        "map_20": zero_c, "sequence_map_21": all_zero, "last_zero_22": last_zero,
        "map_24": neg_p, "map_25": neg_c, "sequence_map_26": neg_any, "any_negative_27": any_negative,
        "has_neg_28": has_neg, "not_has_neg_29": not_has_neg, "shuffle_dyck2_30": out,
    }


_EVALUATORS: dict[str, Callable[[Row], dict[str, Row]]] = {
    "reverse": _eval_reverse,
    "sort": _eval_sort,
    "hist": _eval_hist,
    "frac_prevs": _eval_frac_prevs,
    "pair_balance": _eval_pair_balance,
    "shuffle_dyck": _eval_shuffle_dyck,
    "shuffle_dyck2": _eval_shuffle_dyck2,
}

PROGRAM_INFO: dict[str, ProgramInfo] = {
    p.name: p
    for p in [
        ProgramInfo("reverse", "the input reversed", "lib.make_reverse(rasp.tokens)",
                    ("a", "b", "c"), 5, output="reverse_6"),
        ProgramInfo("sort", "the input sorted ascending (tokens must be distinct)",
                    "lib.make_sort_unique(rasp.tokens, rasp.tokens)", (0, 1, 2, 3, 4, 5), 5,
                    distinct_tokens=True, output="sort_4"),
        ProgramInfo("hist", "at each position, how often its token occurs in the input",
                    "lib.make_hist()", ("a", "b", "c"), 5, output="hist_2"),
        ProgramInfo("frac_prevs", "at each position, the fraction of tokens up to it that are 'x' (causal model)",
                    'lib.make_frac_prevs(rasp.tokens == "x")', ("x", "y", "z"), 5, causal=True,
                    categorical_output=False, output="frac_prevs_3"),
        ProgramInfo("pair_balance", "fraction of '(' minus fraction of ')' up to each position",
                    'lib.make_pair_balance(rasp.tokens, "(", ")")', ("(", ")"), 6,
                    categorical_output=False, output="pair_balance_7"),
        ProgramInfo("shuffle_dyck", "whether the parentheses are balanced (every position holds the answer)",
                    'lib.make_shuffle_dyck(["()"])', ("(", ")"), 6, balanced_half=True, output="shuffle_dyck_18"),
        ProgramInfo("shuffle_dyck2", "whether both () and {} are balanced, shuffled (every position holds the answer)",
                    "lib.make_shuffle_dyck2()", ("(", ")", "{", "}"), 4, balanced_half=True, output="shuffle_dyck2_30"),
    ]
}

PROGRAMS: tuple[str, ...] = tuple(PROGRAM_INFO)


def _info(name: str) -> ProgramInfo:
    try:
        return PROGRAM_INFO[name]
    except KeyError:
        raise KeyError(f"unknown tracr program {name!r}; known: {list(PROGRAMS)}") from None


def evaluate(name: str, xs: Sequence[Value]) -> dict[str, Row]:
    """Every SOp of program ``name`` on input ``xs`` (no BOS), keyed by SOp label.

    Includes the primitives ``tokens`` (and ``indices`` when the program uses them)
    and the output SOp (``PROGRAM_INFO[name].output``).
    """
    info = _info(name)
    xs = list(xs)
    if not 1 <= len(xs) <= info.max_seq_len:
        raise ValueError(f"{name}: input length {len(xs)} outside 1..{info.max_seq_len}")
    bad = [x for x in xs if x not in info.vocab]
    if bad:
        raise ValueError(f"{name}: tokens {bad} not in the vocabulary {list(info.vocab)}")
    if info.distinct_tokens and len(set(xs)) != len(xs):
        raise ValueError(f"{name}: tokens must be distinct, got {xs}")
    return _EVALUATORS[name](xs)


def all_inputs(name: str, length: int | None = None) -> list[tuple[Value, ...]]:
    """Every valid input of ``length`` (or of every length 1..max_seq_len), in a fixed order."""
    info = _info(name)
    lengths = [length] if length is not None else list(range(1, info.max_seq_len + 1))
    out: list[tuple[Value, ...]] = []
    for n in lengths:
        if info.distinct_tokens:
            out.extend(itertools.permutations(info.vocab, n))
        else:
            out.extend(itertools.product(info.vocab, repeat=n))
    return out


def sample_inputs(name: str, n: int, length: int, rng: np.random.Generator) -> list[tuple[Value, ...]]:
    """``n`` random inputs of ``length``: i.i.d. tokens (distinct for ``sort``).

    For the Dyck programs half the examples (in expectation) are drawn uniformly from
    the balanced strings of that length, when there are any.
    """
    info = _info(name)
    if not 1 <= length <= info.max_seq_len:
        raise ValueError(f"{name}: length {length} outside 1..{info.max_seq_len}")
    vocab = list(info.vocab)
    if info.balanced_half:
        pool = all_inputs(name, length)
        good = [x for x in pool if evaluate(name, x)[info.output][-1] is True]
        bad = [x for x in pool if evaluate(name, x)[info.output][-1] is not True]
        out = []
        for _ in range(n):
            src = good if (good and rng.random() < 0.5) else bad
            out.append(src[int(rng.integers(len(src)))])
        return out
    if info.distinct_tokens:
        if length > len(vocab):
            raise ValueError(f"{name}: length {length} > vocabulary size {len(vocab)} with distinct tokens")
        return [tuple(vocab[i] for i in rng.permutation(len(vocab))[:length]) for _ in range(n)]
    return [tuple(vocab[i] for i in rng.integers(len(vocab), size=length)) for _ in range(n)]
