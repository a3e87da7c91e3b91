"""Negative controls: is a hypothesis's score better than chance, can the data tell its features apart,
and does its mean hide per-example errors that cancel?

``scrub.controls(model, h, data)`` runs three checks and returns a :class:`Controls`:

1. **Random hypotheses of the same shape.** Each keeps ``h``'s tree (every node's parents, children,
   ports and positions, and how many heads and MLPs it maps to) but maps its nodes to random model
   nodes that still feed their parents, and gives them features drawn from ``h``'s own (permuted
   among its nodes) or random ones (each node's own feature read on a random permutation of the
   examples: the same classes and class sizes, no relation to the example). All are scored with
   ``h`` in one :func:`~scrub.run_many` call (the same samples), and ``h``'s score is placed among
   theirs: its percentile and an exact binomial interval on it.
2. **Identifiability** (:func:`identifiability`): for each pair of ``h``'s features, and each feature
   against the dataset's other columns, how often a resample that agrees on one agrees on the other.
3. **Cancellation** (:func:`cancellation`): the share of examples whose scrubbed loss is far above
   *or* far below the model's, relative to the loss gap ``baseline - model``.

>>> c = scrub.controls(model, h, data, n_random=20, seed=0)    # doctest: +SKIP
>>> print(c)                                                   # doctest: +SKIP
>>> c.table()                                                  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from scrub._alignment import AtTarget
from scrub._dataset import Dataset
from scrub._graph import INPUTS, ModelGraph
from scrub._hypothesis import Hypothesis, Node
from scrub._metrics import Metric
from scrub._options import RunOptions, resolve_options
from scrub._result import Result, per_example_losses
from scrub._sampling import Exact, Random, evaluate_feature
from scrub.errors import FeatureError, HypothesisError, RunOptionsError

__all__ = [
    "controls", "Controls", "identifiability", "cancellation", "Cancellation", "random_hypothesis",
    "percentile_interval_binomial", "KINDS",
]

#: The kinds of random hypothesis :func:`controls` draws (``kinds=``).
KINDS: dict[str, str] = {
    "nodes": "random model nodes, each node keeping its own feature",
    "permuted": "random model nodes, the hypothesis's features permuted among its nodes",
    "random": "random model nodes, each feature read on a random permutation of the examples",
}


# -- random features and hypotheses ---------------------------------------------------------
class ShuffledFeature:
    """A feature read on a fixed random permutation of the examples: ``g(x) = f(pi(x))``.

    It has as many classes as ``f``, of the same sizes, but no relation to the example itself.
    """

    def __init__(self, feature: Any, n: int, seed: int) -> None:
        self.feature = feature
        self.n = n
        self.seed = seed
        self.perm = np.random.default_rng(seed).permutation(n)
        self.__name__ = f"shuffled({_feature_label(feature)})"

    def __call__(self, data: Dataset) -> Any:
        if len(data) != self.n:
            raise FeatureError(f"{self.__name__}: made for {self.n} examples, the data has {len(data)}")
        if isinstance(self.feature, str):
            values = data.columns[self.feature].to_numpy()
        else:
            values = self.feature(data)
            if isinstance(values, torch.Tensor):
                values = values.detach().cpu().numpy()
            elif isinstance(values, (pd.Series, pd.DataFrame)):
                values = values.to_numpy()
            else:
                values = np.asarray(values)
        return values[self.perm]

    def __repr__(self) -> str:
        return self.__name__


def _shuffled(agree: Any, n: int, seed: int) -> Any:
    if isinstance(agree, (Exact, Random)) or agree is Exact or agree is Random:
        return agree
    if isinstance(agree, AtTarget):
        return AtTarget(ShuffledFeature(agree.feature, n, seed))
    return ShuffledFeature(agree, n, seed)


def _kind(graph: ModelGraph, m: str) -> str:
    return graph.kind(m)


def _need(node: Node, memo: dict[int, int]) -> int:
    """The lowest stage a model node of ``node`` can sit at so that its subtree fits below it."""
    if id(node) in memo:
        return memo[id(node)]
    if all(m in INPUTS for m in node.model):
        out = 0
    elif not node.children:
        out = 1  # a head at layer 0 sits at stage 1
    else:
        out = 1 + max(_need(c, memo) for c in node.children)
    memo[id(node)] = out
    return out


def random_hypothesis(
    hypothesis: Hypothesis, graph: ModelGraph, rng: np.random.Generator, *, name: str, features: str = "nodes",
    n_examples: int | None = None, tries: int = 200,
) -> Hypothesis:
    """A random hypothesis of the same shape as ``hypothesis`` on ``graph``.

    Every node keeps its parents and children, ports, positions and subspace; each of its heads is
    replaced by a random head and each MLP by a random MLP (embeddings stay), chosen so that it
    feeds every parent on the claimed ports and differs from the nodes of siblings claiming a common
    port (two claims of one treeified path are an error). ``features`` is one
    of :data:`KINDS`. Raises :class:`HypothesisError` when no placement is found in ``tries`` draws.
    """
    if features not in KINDS:
        raise RunOptionsError(f"kinds: {features!r} is not a kind of random hypothesis; choose from {list(KINDS)}")
    hypothesis.validate(graph)  # the hypothesis itself must fit the graph (a GraphError names the node)
    nodes = hypothesis.nodes()
    root = hypothesis.root
    parents: dict[int, list[Node]] = {id(n): [] for n in nodes}
    for n in nodes:
        for c in n.children:
            parents[id(c)].append(n)
    memo: dict[int, int] = {}
    pool = {k: [c for c in graph.components if graph.kind(c) == k] for k in ("attn", "mlp")}
    inner = [n for n in nodes if n is not root]
    agrees = [n.agree for n in inner]
    if features == "permuted":
        agrees = [agrees[i] for i in rng.permutation(len(agrees))]
    elif features == "random":
        if n_examples is None:
            raise RunOptionsError("random features need n_examples (the dataset's size)")
        agrees = [_shuffled(a, n_examples, int(rng.integers(2**31))) for a in agrees]
    feature_of = {id(n): a for n, a in zip(inner, agrees, strict=True)}
    last: Exception | None = None
    for _ in range(tries):
        chosen: dict[int, tuple[str, ...]] = {id(root): root.model}
        used_under: dict[int, list[tuple[tuple[str, ...] | None, set[str]]]] = {}
        ok = True
        for n in inner:
            ports = n.port
            need = _need(n, memo)
            picks: list[str] = []
            # a sibling's model node is taken where the two claim a common port (the same treeified path)
            taken = {m for p in parents[id(n)] for sib_ports, used in used_under.get(id(p), [])
                     if ports is None or sib_ports is None or set(ports) & set(sib_ports) for m in used}
            for kind in ("attn", "mlp"):
                k = sum(1 for m in n.model if m not in INPUTS and _kind(graph, m) == kind)
                if not k:
                    continue
                cands = [
                    c for c in pool[kind]
                    if c not in taken and graph.stage(c) >= need and all(
                        any(graph.feeds(c, pm, port) for pm in chosen[id(p)] for port in graph.ports(pm)
                            if ports is None or port in ports)
                        for p in parents[id(n)]
                    )
                ]
                if len(cands) < k:
                    ok = False
                    break
                picks += [cands[i] for i in rng.choice(len(cands), size=k, replace=False)]
            if not ok:
                break
            model = tuple(m for m in n.model if m in INPUTS) + tuple(sorted(picks, key=graph.components.index))
            chosen[id(n)] = model
            for p in parents[id(n)]:
                used_under.setdefault(id(p), []).append((ports, set(model)))
        if not ok:
            continue
        new = _rebuild(hypothesis, chosen, feature_of, name)
        try:
            new.validate(graph)
        except HypothesisError as exc:
            last = exc
            continue
        return new
    raise HypothesisError(
        f"hypothesis {hypothesis.name!r}: found no random placement of its shape on this model in {tries} draws"
        + (f" (last problem: {last})" if last else "") + "; its nodes may sit as low as the graph allows"
    )


def _rebuild(h: Hypothesis, chosen: dict[int, tuple[str, ...]], feature_of: dict[int, Any], name: str) -> Hypothesis:
    new = Hypothesis(name)
    made: dict[int, Node] = {}

    def clone(n: Node) -> Node:
        if id(n) in made:
            return made[id(n)]
        c = new.output() if n is h.root else Node(new, n.name, chosen[id(n)], n.port, n.positions, feature_of[id(n)])
        c.open, c.subspace = n.open, n.subspace
        made[id(n)] = c
        new._names[n.name] = c
        c.children = [clone(k) for k in n.children]
        return c

    clone(h.root)
    return new


# -- the percentile and its interval --------------------------------------------------------------
def percentile_interval_binomial(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval for a proportion: ``k`` successes out of ``n``."""
    alpha = (1 - level) / 2

    def tail_ge(p: float) -> float:  # P(X >= k)
        return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))

    def tail_le(p: float) -> float:  # P(X <= k)
        return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(0, k + 1))

    def solve(f, target: float, increasing: bool) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if (f(mid) < target) == increasing:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    lower = 0.0 if k == 0 else solve(tail_ge, alpha, True)
    upper = 1.0 if k == n else solve(tail_le, alpha, False)
    return lower, upper


# -- identifiability -----------------------------------------------------------------------------
def _feature_label(agree: Any) -> str:
    if isinstance(agree, str):
        return agree
    if isinstance(agree, AtTarget):
        return f"at_target({_feature_label(agree.feature)})"
    return getattr(agree, "__name__", type(agree).__name__)


def _units(codes: np.ndarray, t: int) -> np.ndarray:
    """Codes as ``[N, T]`` (a per-example feature repeated at every position)."""
    return codes if codes.ndim == 2 else np.repeat(codes[:, None], t, axis=1)


def _agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``P(b agrees | a agrees)`` for a resample drawn uniformly among the examples agreeing on ``a``
    (the reference itself included, as the sampler does), and the base rate ``P(b agrees)``.
    ``a`` and ``b`` are ``[N]`` codes of one position."""
    n = len(a)
    _, ia, na = np.unique(a, return_inverse=True, return_counts=True)
    _, ib, nb = np.unique(b, return_inverse=True, return_counts=True)
    joint = ia.astype(np.int64) * (int(ib.max()) + 1) + ib
    _, ij, nj = np.unique(joint, return_inverse=True, return_counts=True)
    cond = float(np.mean(nj[ij] / na[ia]))
    base = float(np.mean(nb[ib] / n))
    return cond, base


def _cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    """Cramér's V with Bergsma's (2013) bias correction: sparse tables of many-valued features
    (tokens, lengths) would otherwise look associated by chance alone."""
    table = pd.crosstab(a, b).to_numpy().astype(float)
    r, k = table.shape
    n = table.sum()
    if min(r, k) < 2 or n < 2:
        return 0.0
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    phi2 = float(((table - expected) ** 2 / expected).sum()) / n
    phi2 = max(0.0, phi2 - (k - 1) * (r - 1) / (n - 1))
    rc, kc = r - (r - 1) ** 2 / (n - 1), k - (k - 1) ** 2 / (n - 1)
    den = min(rc - 1, kc - 1)
    return math.sqrt(min(1.0, phi2 / den)) if den > 0 else 0.0


def _separating(av: np.ndarray, bv: np.ndarray, a_name: str, b_name: str, max_cells: int = 3) -> tuple[int, str]:
    """The examples whose ``a`` class holds more than one ``b`` value (a resample agreeing on ``a``
    can then differ on ``b``), and the rarest ``(a, b)`` cells of those classes, in words."""
    frame = pd.DataFrame({"a": av, "b": bv})
    counts = frame.value_counts().rename("n").reset_index()
    mixed = counts.groupby("a")["b"].transform("size").to_numpy() > 1
    n_sep = int(counts.loc[mixed, "n"].sum())
    if not n_sep:
        return 0, "none: every value of the first feature fixes the second"
    cells = counts.loc[mixed].sort_values(["n", "a"]).head(max_cells)
    text = ", ".join(f"{a_name}={r.a!r} with {b_name}={r.b!r} ({int(r.n)})" for r in cells.itertuples())
    return n_sep, text


def _values(agree: Any, data: Dataset, label: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Codes ``[N, T]`` and raw values (for words; per-example features only, else codes) of a feature."""
    fv = evaluate_feature(agree, data, label)
    if fv.kind in ("exact", "random") or fv.codes is None:
        return None
    codes = _units(fv.codes, data.seq_len)
    raw: np.ndarray = fv.codes
    if fv.kind == "example":
        if isinstance(agree, str):
            raw = data.columns[agree].to_numpy()
        elif callable(agree) and not isinstance(agree, AtTarget):
            v: Any = agree(data)
            raw = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    return codes, raw


def identifiability(
    hypothesis: Hypothesis, data: Dataset, *, columns: bool | Sequence[str] = True, threshold: float = 0.9,
    association: float = 0.3,
) -> pd.DataFrame:
    """Can ``data`` tell the hypothesis's features apart from each other and from the data's columns?

    For features ``A`` and ``B`` (each pair of the hypothesis's features, and each of them against
    every other column of ``data.columns``; ``Exact``/``Random`` are skipped) and a reference ``x``
    drawn uniformly, with ``x'`` drawn uniformly among the examples agreeing with ``x`` on ``A`` (as
    the sampler draws, ``x`` itself included):

    - ``p_b_given_a = P(B(x') = B(x))``, against the base rate ``p_b = P(B(x'') = B(x))`` for ``x''``
      uniform; ``p_a_given_b`` and ``p_a`` the other way round;
    - ``cramers_v``: Cramér's V of the two features' joint table (0 independent, 1 one determines the other);
    - ``separating``: the examples whose ``A`` class holds more than one ``B`` value (a resample agreeing
      on ``A`` can differ on ``B`` only there), and ``cells``: the rarest such ``(A, B)`` combinations.

    Per-position features are compared position by position (a per-example feature counts as the same
    value at every position) and the probabilities averaged over positions.

    Flags (``flag`` column): ``"indistinguishable"`` when ``p_b_given_a >= threshold`` and
    ``p_a_given_b >= threshold`` (the data almost never separates them: a hypothesis naming one is
    scored as if it named the other); for two of the hypothesis's own features, ``"correlated"``
    when Cramér's V is at least ``association`` (0.3, Cohen's "medium"): swapping them between
    their nodes costs less than it would on data where they are independent; ``""`` otherwise. ``advice`` says in words what data would separate a flagged pair.
    """
    if not isinstance(hypothesis, Hypothesis):
        raise HypothesisError(f"identifiability takes a scrub.Hypothesis, got {type(hypothesis).__name__}")
    if not 0 < threshold <= 1:
        raise RunOptionsError(f"threshold must be in (0, 1], got {threshold!r}")
    feats: dict[str, Any] = {}
    for n in hypothesis.nodes():
        if n is hypothesis.root:
            continue
        label = _feature_label(n.agree)
        if label not in feats and not isinstance(n.agree, (Exact, Random)) and n.agree not in (Exact, Random):
            feats[label] = n.agree
    mine = list(feats)
    if columns is True:
        others = [str(c) for c in data.columns.columns if str(c) not in feats]
    elif columns is False:
        others = []
    else:
        others = [c for c in columns if c not in feats]
    values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label in mine + others:
        try:
            v = _values(feats.get(label, label), data, label)
        except FeatureError:
            if label in feats:
                raise
            continue  # a column that is no feature (unhashable, NaN): skipped
        if v is not None:
            values[label] = v
    pairs = [(a, b) for i, a in enumerate(mine) for b in mine[i + 1:]] + [(a, c) for a in mine for c in others]
    rows = []
    t = data.seq_len
    for a, b in pairs:
        if a not in values or b not in values:
            continue
        (ca, ra), (cb, rb) = values[a], values[b]
        per_pos = ca.ndim == 2 and (ra.ndim == 2 or rb.ndim == 2 or not np.array_equal(ca[:, 0], ca[:, -1])
                                     or not np.array_equal(cb[:, 0], cb[:, -1]))
        positions = range(t) if per_pos else [0]
        stats = np.array([[*_agreement(ca[:, p], cb[:, p]), *_agreement(cb[:, p], ca[:, p])] for p in positions])
        bga, pb, agb, pa = stats.mean(0)
        if per_pos:
            va = float(np.mean([_cramers_v(ca[:, p], cb[:, p]) for p in positions]))
            n_sep = int(np.max([_separating(ca[:, p], cb[:, p], a, b)[0] for p in positions]))
            cells = "per position: see the per-position values"
        else:
            va = _cramers_v(ca[:, 0], cb[:, 0])
            n_sep, cells = _separating(ra if ra.ndim == 1 else ca[:, 0], rb if rb.ndim == 1 else cb[:, 0], a, b)
        flag = ("indistinguishable" if bga >= threshold and agb >= threshold
                else "correlated" if va >= association and b not in others else "")
        rows.append({
            "a": a, "b": b, "b_is_column": b in others, "p_b_given_a": bga, "p_b": pb, "p_a_given_b": agb, "p_a": pa,
            "cramers_v": va, "separating": n_sep, "cells": cells, "flag": flag,
            "advice": _advice(a, b, flag, n_sep, len(data), cells, 1 - bga),
        })
    cols = ["a", "b", "b_is_column", "p_b_given_a", "p_b", "p_a_given_b", "p_a", "cramers_v", "separating", "cells",
            "flag", "advice"]
    frame = pd.DataFrame(rows, columns=cols)
    frame.attrs.update(threshold=threshold, association=association, n_examples=len(data))
    return frame


def _advice(a: str, b: str, flag: str, n_sep: int, n: int, cells: str, p_sep: float) -> str:
    if not flag:
        return ""
    if n_sep == 0:
        return (f"no example of this data separates {a} from {b} (each {a} value fixes {b}): only data where "
                f"examples share {a} but differ on {b} can tell a hypothesis naming one from one naming the other")
    return (f"a resample agreeing on {a} differs on {b} in {p_sep:.0%} of draws; the separating examples are the "
            f"{n_sep} of {n} in {a} classes holding more than one {b} value, the rarest cells {cells}. Data with "
            f"every ({a}, {b}) combination about as common as independence predicts would separate them")


# -- cancellation ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cancellation:
    """Per-example errors of both signs hidden by the mean (:func:`cancellation`).

    Attributes:
        gap: ``mean(L_baseline) - mean(L_model)``, the loss gap the score divides by.
        large: the threshold as a multiple of ``gap``: an example is *far* when ``|d_i| > large * gap``.
        fraction_worse: share of examples with ``d_i > large * gap`` (scrubbed far worse than the model).
        fraction_better: share with ``d_i < -large * gap`` (scrubbed far better).
        fraction_affected: their sum.
        hidden: ``(mean|d_i| - |mean d_i|) / gap``: the share of the gap that errors of opposite
            signs cancel (0 when every ``d_i`` has one sign).
        flag: both shares are at least ``min_fraction``.
        min_fraction: the share of examples each sign needs to flag.
    """

    gap: float
    large: float
    min_fraction: float
    fraction_worse: float
    fraction_better: float
    fraction_affected: float
    hidden: float
    flag: bool

    def describe(self) -> str:
        """One line in words."""
        head = "CANCELLATION" if self.flag else "no cancellation"
        return (
            f"{head}: {self.fraction_worse:.1%} of examples scrub far worse and {self.fraction_better:.1%} far better "
            f"than the model (|scrubbed - model| > {self.large:g} x the loss gap {self.gap:.4g}); errors of opposite "
            f"signs cancel {self.hidden:.1%} of the gap (flag when both shares >= {self.min_fraction:.0%})"
        )


def cancellation(result: Result, *, large: float = 0.5, min_fraction: float = 0.05) -> Cancellation:
    """Does ``result``'s score hide large per-example errors of both signs?

    With ``d_i`` example ``i``'s scrubbed loss minus the model's (averaged over seeds) and the gap
    ``G = mean(L_baseline) - mean(L_model)``, an example is *far worse* when ``d_i > large * G`` and
    *far better* when ``d_i < -large * G``. The result is flagged when each of the two shares is at
    least ``min_fraction``: the mean of ``d`` (and so the score) then nets large gains against large
    losses. ``hidden = (mean|d| - |mean d|) / G`` is the share of the gap so cancelled.
    """
    if not isinstance(result, Result):
        raise RunOptionsError(f"cancellation takes a scrub.Result, got {type(result).__name__}")
    if not (isinstance(large, (int, float)) and large > 0):
        raise RunOptionsError(f"large must be a positive number (a multiple of the loss gap), got {large!r}")
    if not (isinstance(min_fraction, (int, float)) and 0 < min_fraction <= 0.5):
        raise RunOptionsError(f"min_fraction must be in (0, 0.5], got {min_fraction!r}")
    m, s, b = per_example_losses(result.per_example).T
    gap = float(b.mean() - m.mean())
    d = s - m
    scale = large * abs(gap)
    worse, better = float(np.mean(d > scale)), float(np.mean(d < -scale))
    hidden = float((np.abs(d).mean() - abs(d.mean())) / abs(gap)) if gap else float("nan")
    return Cancellation(gap=gap, large=float(large), min_fraction=float(min_fraction), fraction_worse=worse,
                        fraction_better=better, fraction_affected=worse + better, hidden=hidden,
                        flag=worse >= min_fraction and better >= min_fraction)


# -- the controls ---------------------------------------------------------------------------------
@dataclass
class Controls:
    """What :func:`controls` returns.

    Attributes:
        result: the hypothesis's own :class:`~scrub.Result` (scored with the random ones).
        random: one row per random hypothesis: ``hypothesis``, ``kind``, ``score``, ``loss_scrubbed``.
        percentile: share of random hypotheses scoring below the hypothesis (ties count half).
        percentile_ci: 95% Clopper-Pearson interval of the chance that a random hypothesis of the
            same shape scores below it (from the count strictly below).
        p_value: ``(1 + #random scoring at least as high) / (1 + n_random)``.
        identifiability: :func:`identifiability`'s table.
        cancellation: :func:`cancellation`'s figures.
        hypotheses: the random hypotheses themselves, in the order of ``random``.
    """

    result: Result
    random: pd.DataFrame
    percentile: float
    percentile_ci: tuple[float, float]
    p_value: float
    identifiability: pd.DataFrame
    cancellation: Cancellation
    seed: int
    hypotheses: list[Hypothesis] = field(default_factory=list, repr=False)

    @property
    def flags(self) -> list[str]:
        """Every warning the controls raise, in words (empty when none)."""
        out = []
        if self.percentile_ci[0] < 0.5:
            out.append(f"chance: the score's percentile among random hypotheses of the same shape is "
                       f"{self.percentile:.0%} (95% CI {self.percentile_ci[0]:.0%} .. {self.percentile_ci[1]:.0%}); "
                       "it is not clearly above them")
        for r in self.identifiability.to_dict("records"):
            if r["flag"]:
                a, b = r["a"], r["b"]
                out.append(f"{r['flag']}: {a} vs {b}{' (column)' if r['b_is_column'] else ''}: "
                           f"P(agree on {b} | agree on {a}) = {r['p_b_given_a']:.2f} (base {r['p_b']:.2f}), "
                           f"P(agree on {a} | agree on {b}) = {r['p_a_given_b']:.2f} (base {r['p_a']:.2f}), "
                           f"Cramér's V {r['cramers_v']:.2f}. {r['advice']}")
        if self.cancellation.flag:
            out.append(self.cancellation.describe())
        return out

    def table(self) -> pd.DataFrame:
        """The scores as a DataFrame: the hypothesis (kind ``"hypothesis"``) then the random ones."""
        r = self.result
        own = pd.DataFrame([{"hypothesis": r.hypothesis, "kind": "hypothesis", "score": r.loss_recovered,
                             "loss_scrubbed": r.loss_scrubbed}])
        return pd.concat([own, self.random], ignore_index=True)

    def summary(self) -> str:
        """The controls in a few lines (``str(controls)``)."""
        r, rnd = self.result, self.random
        lo, hi = self.percentile_ci
        by_kind = ", ".join(
            f"{k} median {g['score'].median():.1%} (max {g['score'].max():.1%}, n={len(g)})"
            for k, g in rnd.groupby("kind", sort=False)
        )
        lines = [
            f"negative controls for {r.hypothesis!r} (seed {self.seed})",
            f"  score {r.loss_recovered:.1%}; random hypotheses of the same shape: {by_kind}",
            f"  percentile among them {self.percentile:.1%} (95% CI {lo:.1%} .. {hi:.1%}); p = {self.p_value:.3g}",
            f"  {self.cancellation.describe()}",
        ]
        flagged = self.identifiability[self.identifiability["flag"] != ""]
        lines.append(f"  identifiability: {len(self.identifiability)} pairs compared, {len(flagged)} flagged")
        lines += [f"  ! {f}" for f in self.flags]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def controls(
    model,
    hypothesis: Hypothesis,
    data: Dataset,
    *,
    n_random: int = 20,
    kinds: Sequence[str] = ("permuted", "random"),
    seed: int | None = None,
    options: RunOptions | None = None,
    baseline: Hypothesis | None = None,
    metric: Metric | None = None,
    n_seeds: int | None = None,
    batch_size: int | None = None,
    progress: bool | None = False,
    columns: bool | Sequence[str] = True,
    threshold: float = 0.9,
    association: float = 0.3,
    large: float = 0.5,
    min_fraction: float = 0.05,
) -> Controls:
    """Negative controls for ``hypothesis``: random hypotheses of its shape, identifiability, cancellation.

    Args:
        model, hypothesis, data, options, seed, baseline, metric, n_seeds, batch_size, progress: as for
            :func:`scrub.run`; the sampling ``seed`` also seeds the random hypotheses, so the controls
            are deterministic under it.
        n_random: random hypotheses to draw, split evenly (in turn) over ``kinds``.
        kinds: which random hypotheses (see :data:`~scrub._controls.KINDS`): ``"nodes"`` (random model
            nodes, own features in place), ``"permuted"`` (random nodes, the features permuted among
            the nodes), ``"random"`` (random nodes, each feature read on a random permutation of the
            examples).
        columns, threshold, association: passed to :func:`identifiability`.
        large, min_fraction: passed to :func:`cancellation`.

    Returns:
        a :class:`Controls`: ``print`` it, or read ``.table()``, ``.identifiability`` and ``.cancellation``.
    """
    if isinstance(n_random, bool) or not isinstance(n_random, (int, np.integer)) or n_random < 1:
        raise RunOptionsError(f"n_random must be a positive int, got {n_random!r}")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if not kinds or bad:
        raise RunOptionsError(f"kinds must name kinds of random hypothesis from {list(KINDS)}, got {kinds!r}")
    if not isinstance(hypothesis, Hypothesis):
        raise HypothesisError(f"controls takes a scrub.Hypothesis, got {type(hypothesis).__name__}")
    opts = resolve_options(options, metric=metric, seed=seed, n_seeds=n_seeds, batch_size=batch_size,
                           progress=progress)
    graph = ModelGraph.from_model(model)
    rng = np.random.default_rng([opts.seed, 0x5C0B])
    randoms: list[Hypothesis] = []
    kind_of: list[str] = []
    for i in range(int(n_random)):
        kind = kinds[i % len(kinds)]
        randoms.append(random_hypothesis(hypothesis, graph, rng, name=f"random {i} ({kind})", features=kind,
                                         n_examples=len(data)))
        kind_of.append(kind)
    import warnings

    from scrub._experiment import run_many

    with warnings.catch_warnings():  # random features often make most examples unique: expected here
        warnings.filterwarnings("ignore", message=r".*have no agreeing example but themselves.*")
        results = run_many(model, [hypothesis, *randoms], data, options=opts, baseline=baseline)
    own, rest = results[0], results[1:]
    scores = np.array([r.loss_recovered for r in rest])
    s = own.loss_recovered
    below = int(np.sum(scores < s))
    ties = int(np.sum(scores == s))
    random_frame = pd.DataFrame({
        "hypothesis": [r.hypothesis for r in rest], "kind": kind_of, "score": scores,
        "loss_scrubbed": [r.loss_scrubbed for r in rest],
    })
    return Controls(
        result=own,
        random=random_frame,
        percentile=(below + 0.5 * ties) / len(scores),
        percentile_ci=percentile_interval_binomial(below, len(scores)),
        p_value=(1 + int(np.sum(scores >= s))) / (1 + len(scores)),
        identifiability=identifiability(hypothesis, data, columns=columns, threshold=threshold,
                                        association=association),
        cancellation=cancellation(own, large=large, min_fraction=min_fraction),
        seed=opts.seed,
        hypotheses=randoms,
    )
