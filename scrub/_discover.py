"""``scrub.discover``: find a small hypothesis whose score clears a threshold, by pruning the full one.

The search starts from the full hypothesis (every edge of the model's graph claimed, every
feature :class:`~scrub.Exact`: it recovers 100% of the loss) and removes claims greedily, in the
spirit of ACDC, but every candidate is scored by causal scrubbing (recursive resampling, the
fraction of loss recovered) and many candidates are scored in one :func:`scrub.run_many` call
(one clean run and one baseline, common random numbers). It runs coarse to fine:

1. **components**: each unit is a component with all its outgoing edges;
2. **edges** (``granularity="port"``): each unit is one edge ``up -> node.port`` between the
   components kept by step 1;
3. **positions** (``granularity="position"``): each unit is one kept edge at one sequence
   position of its sender's output (ranked by per-position attribution); an edge keeps the
   positions it is needed at (``positions=`` on its node) and goes when none is left; or
   **neurons** (``"neuron"``): each neuron of each kept MLP, ranked by the variance of what it adds
   to the residual; or **subspaces** (``"subspace"``): each principal direction of each kept
   sender's output, ranked by its variance (the node claims the span of those kept).

At each step the units are pre-ranked (``pre_rank="attribution"``: edge attribution patching, one
gradient pass; ``"order"``: the graph order, output first) and pruned in two phases: *galloping*
removes the longest prefix of the ranking (sizes 1, 2, 4, ... scored in one batch) that keeps the
score at or above ``threshold``; then every unit left is scored once without it (one batch), and
the units that can go are removed least-harmful first (one batch of cumulative removals), until
none can. A good ranking makes the first phase do most of the work.

Then **features** (``features=[...]``): for each node, the coarsest candidate feature (fewest
distinct values on the data) that keeps the score is chosen, the same way (singles, then
cumulative).

The result is a normal :class:`~scrub.Hypothesis` (printable, saveable with :func:`scrub.to_python`
and :func:`scrub.to_json`), scored again on a held-out split, with the faithfulness-versus-size
curve, the cost in forward-pass equivalents and the same search on two **controls** (random
weights; shuffled labels).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch

from scrub._attribution import Edge, PassCounter, edge_attribution, edges_of, one_pass_seconds
from scrub._dataset import Dataset
from scrub._graph import ModelGraph
from scrub._hypothesis import Hypothesis, Node
from scrub._metrics import Metric
from scrub._options import RunOptions, resolve_options
from scrub._result import MIN_BOOT
from scrub._sampling import Exact, evaluate_feature
from scrub._subspace import Subspace
from scrub.errors import BaselineError, DatasetError, RunOptionsError, ScrubError

__all__ = ["discover", "Discovery", "hypothesis_from_edges", "claimed_edges", "roc_auc", "GRANULARITIES"]

#: What a claim can be: a whole component (with all its outgoing edges), one edge into one port, one
#: edge at one sequence position, or (on the kept edges) a sender's neurons or output directions.
GRANULARITIES = ("component", "port", "position", "neuron", "subspace")
PRE_RANKS = ("attribution", "order")
#: Cumulative removals scored per batch in the second pruning phase.
WINDOW = 8


# ----------------------------------------------------------------------------------------
# Hypotheses from edge sets


def hypothesis_from_edges(graph: ModelGraph, kept, *, name: str = "discovered", features=None,
                          positions: Mapping[Edge, Sequence[int]] | None = None,
                          neurons: Mapping[str, Sequence[int]] | None = None,
                          subspaces: Mapping[str, Subspace] | None = None) -> Hypothesis:
    """The hypothesis claiming exactly the edges ``kept`` (``(up, node, port)`` triples) reachable from the output.

    One interpretation node per ``(component, ports it feeds its parent through)``, shared by
    every parent it feeds (the DAG is treeified by :func:`scrub.run`). A component whose every
    input is claimed, recursively down to the embeddings, is a leaf (a leaf is run on its own
    example all the way down, which claims exactly that); one with no claimed input is ``open``
    (every input from the random context). ``features`` maps node names to their ``agree=``
    (default :class:`~scrub.Exact`). ``positions`` restricts edges to the sequence positions
    (of ``up``'s output, where it enters ``node.port``) they are claimed at; an edge not in it is
    claimed at every position. Ports of one component restricted alike share a node, named
    ``"up (ports) @positions"``. ``neurons`` and ``subspaces`` (by sender) claim only those neurons
    of an MLP, or that subspace of a component's output, on every edge it sends.
    """
    kept = frozenset(kept)
    features = features or {}
    where = {e: tuple(sorted(set(int(t) for t in ps))) for e, ps in (positions or {}).items()}
    neuron_sets, spaces = dict(neurons or {}), dict(subspaces or {})
    memo: dict[str, bool] = {}

    def complete(c: str) -> bool:
        if c not in memo:
            memo[c] = c in graph.inputs or all(
                (u, c, p) in kept and (u, c, p) not in where and complete(u)
                for p in graph.ports(c) for u in graph.upstream(c, p)
            )
        return memo[c]

    h = Hypothesis(name)
    made: dict[tuple[str, tuple[str, ...], tuple[int, ...] | None], Node] = {}

    def expand(parent: Node, c: str) -> None:
        by_up: dict[tuple[str, tuple[int, ...] | None], list[str]] = {}
        for p in graph.ports(c):
            for u in graph.upstream(c, p):
                if (u, c, p) in kept and where.get((u, c, p)) != ():
                    by_up.setdefault((u, where.get((u, c, p))), []).append(p)
        for (u, at), ports in by_up.items():
            key = (u, tuple(ports), at)
            if key in made:
                parent.add(made[key])
                continue
            nm = f"{u} ({'|'.join(ports)})" + ("" if at is None else f" @{','.join(map(str, at))}")
            ns, sub = neuron_sets.get(u), spaces.get(u)
            nm += "" if ns is None else f" [{len(ns)} neurons]"
            nm += "" if sub is None else f" [k={sub.dim}]"
            child = parent.add(nm, model=u, port=list(ports), positions=None if at is None else list(at),
                               agree=features.get(nm, Exact()), neurons=ns, subspace=sub)
            made[key] = child
            if not complete(u):
                expand(child, u)
                if not child.children:
                    child.open = True

    root = h.output()
    expand(root, "out")
    if not root.children:
        root.open = True
    return h


def claimed_edges(hypothesis: Hypothesis, graph: ModelGraph) -> set[Edge]:
    """The edges ``(up, node, port)`` a hypothesis claims; a leaf on a non-input claims everything below it."""
    out: set[Edge] = set()
    below: set[str] = set()
    for node in hypothesis.nodes():
        for child in node.children:
            out |= {(c.up, c.node, c.port) for c in hypothesis.claims(node, child, graph)}
        if not node.children and not node.open and node is not hypothesis.root:
            below |= {m for m in node.model if m not in graph.inputs}
    stack = list(below)
    seen: set[str] = set()
    while stack:
        c = stack.pop()
        if c in seen:
            continue
        seen.add(c)
        for p in graph.ports(c):
            for u in graph.upstream(c, p):
                out.add((u, c, p))
                if u not in graph.inputs:
                    stack.append(u)
    return out


_A = TypeVar("_A", bound=tuple)


def _reachable(graph: ModelGraph, kept: frozenset[_A]) -> frozenset[_A]:
    """The edges of ``kept`` on a path to the output."""
    into: dict[str, list[_A]] = {}
    for e in kept:
        into.setdefault(e[1], []).append(e)
    out: set[_A] = set()
    stack, seen = ["out"], set()
    while stack:
        c = stack.pop()
        if c in seen:
            continue
        seen.add(c)
        for e in into.get(c, []):
            out.add(e)
            stack.append(e[0])
    return frozenset(out)


def roc_auc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    """Area under the ROC curve of ``scores`` ranking the ``labels`` (ties count half); NaN without both classes."""
    from scipy.stats import rankdata

    y = np.asarray(labels, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(np.asarray(scores, dtype=float))
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


# ----------------------------------------------------------------------------------------
# The result


@dataclass
class Discovery:
    """What :func:`scrub.discover` returns.

    Attributes:
        hypothesis: the discovered :class:`~scrub.Hypothesis` (a normal one: run it, print it with
            ``describe()``, save it with :func:`scrub.to_python` / :func:`scrub.to_json`).
        edges: the edges ``(up, node, port)`` it claims.
        positions: the edges claimed at some sequence positions only (``granularity="position"``),
            with those positions (of the sender's output); every other edge is claimed at every position.
        neurons: the MLPs claimed through some of their neurons only (``granularity="neuron"``),
            with those neurons.
        subspaces: the components claimed through a subspace of their output only
            (``granularity="subspace"``): spans of their output's principal directions on the search split.
        score, ci: its fraction of loss recovered on the search split, with the 95% interval.
        held_out, held_out_ci: the same on the held-out split (None when there is none).
        threshold: the score it had to clear on the search split.
        curve: the faithfulness-versus-size curve, one row per accepted pruning step:
            ``step, stage, n_edges, n_components, score, lo, hi``.
        ranking: every edge with ``importance`` (higher: kept longer or lost more when removed),
            ``kept`` and ``pre_rank`` (the attribution score or graph order it was ranked by).
        n_hypotheses: how many hypotheses were scored; ``forward_passes``: the rows the model
            ran forward during the search over the search split's size (a deterministic count; a
            pass stopped early counts whole, the pre-ranking's backward pass counts 2);
            ``forward_equivalents``: the search's wall time divided by one plain forward pass over
            the search split, timed in the same process; ``seconds``: the wall time.
        controls: one row per control search (``random weights``, ``shuffled labels``):
            ``held_out``, ``n_edges``, ``effect`` (the control's ``loss_baseline - loss_model`` over
            the real one's), ``close`` (True: within ``margin`` of the result's held-out score,
            with no more edges, on an effect at least half as large), ``note``.
        flagged: True when a control comes close: the circuit may not be specific to the task.
    """

    hypothesis: Hypothesis
    edges: set[Edge]
    score: float
    ci: tuple[float, float]
    held_out: float | None
    held_out_ci: tuple[float, float] | None
    threshold: float
    granularity: str
    curve: pd.DataFrame = field(repr=False)
    ranking: pd.DataFrame = field(repr=False)
    positions: dict[Edge, tuple[int, ...]] = field(default_factory=dict)
    neurons: dict[str, tuple[int, ...]] = field(default_factory=dict)
    subspaces: dict[str, Subspace] = field(default_factory=dict)
    #: how many distinct positions the data scores (``target_pos``)
    scored_positions: int = 1
    n_hypotheses: int = 0
    forward_passes: float = 0.0
    forward_equivalents: float = 0.0
    seconds: float = 0.0
    controls: pd.DataFrame | None = field(default=None, repr=False)
    flagged: bool = False

    def summary(self) -> str:
        """A few lines: size, scores, cost and the controls' verdict."""
        comps = sorted({e[0] for e in self.edges} | {e[1] for e in self.edges})
        lines = [
            f"{self.hypothesis.name}: {len(self.edges)} edges over {len(comps)} components ({self.granularity} granularity)"
            + (f", {len(self.positions)} of them at some positions only" if self.positions else "")
            + "".join(f", {m} through {len(ix)} neurons" for m, ix in sorted(self.neurons.items()))
            + "".join(f", {u} through a {sub.dim}-dim subspace" for u, sub in sorted(self.subspaces.items())),
            f"score {self.score:.3f} [{self.ci[0]:.3f}, {self.ci[1]:.3f}] on the search split (threshold {self.threshold})",
        ]
        if self.held_out is not None and self.held_out_ci is not None:
            lines.append(f"held-out {self.held_out:.3f} [{self.held_out_ci[0]:.3f}, {self.held_out_ci[1]:.3f}]")
        if self.positions and self.scored_positions > 1:
            lines.append(f"note: positions are absolute and the data's scored position takes {self.scored_positions} "
                         "values; positions kept on the search split may not carry over (compare the held-out score)")
        lines.append(f"cost: {self.n_hypotheses} hypotheses scored, {self.forward_passes:.0f} forward passes, "
                     f"{self.forward_equivalents:.0f} forward-pass equivalents of time, {self.seconds:.1f} s")
        if self.controls is not None:
            for r in self.controls.to_dict("records"):
                close = " (CLOSE)" if bool(r["close"]) else ""
                note = f"; {r['note']}" if str(r["note"]) else ""
                lines.append(f"control {r['control']}: held-out {r['held_out']:.3f} with {r['n_edges']} edges, "
                             f"effect {r['effect']:.2f} of the real one's{close}{note}")
            if self.flagged:
                lines.append("FLAGGED: a control comes close to this score; the circuit may not be specific to the task")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# The search


class _Scorer:
    """Scores edge sets with one :func:`scrub.run_many` per batch, and counts them."""

    def __init__(self, model, data: Dataset, graph: ModelGraph, opts: RunOptions, name: str,
                 progress: bool | None = False) -> None:
        from tqdm.auto import tqdm

        self.model, self.data, self.graph, self.opts, self.name = model, data, graph, opts, name
        self.count = 0
        self.stage = "component"
        # None: drawn on a terminal only
        self.bar = tqdm(desc=f"discovering {name!r}", unit=" hypotheses", leave=False, mininterval=0, miniters=1,
                        disable=True if progress is False else (None if progress is None else False))
        self.staged: set[str] = set()  # the senders whose neurons or directions are being searched
        self.shared: dict = {}  # the clean run and the baseline, computed by the first batch only
        #: per component, its output's principal directions ``[d_model, d_model]`` (subspace stage)
        self.bases: dict[str, torch.Tensor] = {}

    def variables(self, kept: frozenset) -> tuple[dict[str, tuple[int, ...]], dict[str, Subspace]]:
        """The neuron sets and subspaces claimed by the variable atoms of ``kept`` (a component with
        every neuron or direction kept claims all of its output: it is in neither)."""
        neurons: dict[str, set[int]] = {}
        dirs: dict[str, set[int]] = {}
        for a in kept:
            if _is_variable(a):
                (neurons if a[0] == "#neuron" else dirs).setdefault(a[1], set()).add(int(a[2]))
        d_mlp = getattr(self.model.cfg, "d_mlp", None)
        n_out = {m: tuple(sorted(ix)) for m, ix in neurons.items() if len(ix) < (d_mlp or 0)}
        subs = {}
        for u, js in dirs.items():
            basis = self.bases[u]
            if len(js) < basis.shape[1]:
                subs[u] = Subspace(basis[:, sorted(js)], name=f"{u}: {len(js)} principal directions")
        return n_out, subs

    def claims(self, kept: frozenset) -> tuple[set[Edge], dict[Edge, tuple[int, ...]]]:
        """The edges ``kept`` claims, and the positions of those claimed at some positions only."""
        edges, positions = split_atoms(kept, self.data.seq_len)
        if self.staged:  # a sender left with no neuron or direction claims nothing
            live = {a[1] for a in kept if _is_variable(a)}
            edges = {e for e in edges if e[0] not in self.staged or e[0] in live}
        return edges, positions

    def hypothesis(self, kept: frozenset, features: dict | None = None) -> Hypothesis:
        """The hypothesis claiming ``kept``: edges, edges at positions ``(up, node, port, t)`` (position
        stage), and neurons or directions of the senders (variable stages)."""
        edges, positions = self.claims(kept)
        neurons, subspaces = self.variables(kept)
        return hypothesis_from_edges(self.graph, edges, name=self.name, features=features, positions=positions,
                                     neurons=neurons, subspaces=subspaces)

    def until_below(self, kept_sets: list[frozenset], threshold: float) -> list[Any]:
        """The results of the candidates in order, up to and including the first scoring below ``threshold``.

        Run locally, the candidates are scored one after another and the rest are skipped (the
        search never reads them: it keeps the longest prefix that clears the threshold); the clean
        run and the baseline are computed once either way. On a Ray cluster they are scored as one
        batch, in parallel.
        """
        if self.opts.ray is not None:
            return self(kept_sets)
        out = []
        for k in kept_sets:
            (r,) = self([k])
            out.append(r)
            if r.loss_recovered < threshold:
                break
        return out

    def __call__(self, kept_sets: list[frozenset], features: list[dict] | None = None, *,
                 final: bool = False) -> list[Any]:
        """Score the hypotheses claiming each edge set (intervals from the fewest bootstrap resamples unless ``final``)."""
        from scrub._experiment import fully_scrubbed, score_many

        hyps = [self.hypothesis(k, (features or [None] * len(kept_sets))[i]) for i, k in enumerate(kept_sets)]
        self.count += len(hyps)
        self.bar.set_postfix_str(f"{self.stage} stage", refresh=False)
        self.bar.update(len(hyps))
        opts = self.opts if final else self.opts.replace(n_boot=MIN_BOOT)
        return score_many(self.model, hyps, self.data, opts, fully_scrubbed(), shared=self.shared)


def _is_variable(atom) -> bool:
    """A neuron ``("#neuron", mlp, i)`` or a direction ``("#direction", component, j)`` of the variable stages."""
    return isinstance(atom[0], str) and atom[0].startswith("#")


def split_atoms(kept, seq_len: int) -> tuple[set[Edge], dict[Edge, tuple[int, ...]]]:
    """Edges, and the positions of those claimed at fewer than all ``seq_len``, from a set of
    edges ``(up, node, port)`` and edges at one position ``(up, node, port, t)``."""
    edges: set[Edge] = set()
    at: dict[Edge, set[int]] = {}
    whole: set[Edge] = set()
    for a in kept:
        if _is_variable(a):
            continue
        e = (a[0], a[1], a[2])
        edges.add(e)
        if len(a) == 4:
            at.setdefault(e, set()).add(int(a[3]))
        else:
            whole.add(e)
    positions = {e: tuple(sorted(ts)) for e, ts in at.items() if e not in whole and len(ts) < seq_len}
    return edges, positions


#: What the search keeps or removes: an edge, an edge at one position ``(up, node, port, t)`` (position
#: stage), or a sender's neuron or output direction ``("#neuron", mlp, i)`` (variable stages).
Atom = Edge | tuple[str, str, str, int] | tuple[str, str, int]


def _prune(score: _Scorer, units: list[frozenset[Atom]], kept: frozenset[Atom], threshold: float,
           curve: list[dict], stage: str, importance: dict[Any, float]) -> frozenset[Any]:
    """Remove units (in ranked order, least important first) while the score stays >= threshold."""
    graph = score.graph
    score.stage = stage

    def log(k: frozenset[Atom], r) -> None:
        reach = {e[:3] for e in _reachable(graph, k) if not _is_variable(e)}
        curve.append({"step": len(curve), "stage": stage, "n_edges": len(reach),
                      "n_components": len({e[0] for e in reach} | {e[1] for e in reach}),
                      "score": r.loss_recovered, "lo": r.ci[0], "hi": r.ci[1]})

    # units removed by galloping rank below every unit scored alone (whose importance is 1 - score),
    # and those of a coarser stage below those of a finer one: a component dropped whole is the least
    # important; within a stage, the pre-ranking's order
    base_rank = {"component": -4.0, "port": -3.0, "position": -2.0}.get(stage, -1.5)
    i = 0
    # phase 1: galloping over the ranking
    while i < len(units):
        left = len(units) - i
        ks = sorted({min(2 ** j, left) for j in range(int(np.ceil(np.log2(left))) + 1)})
        cands = [kept.difference(*units[i:i + k]) for k in ks]
        results = score.until_below(cands, threshold)
        best = 0
        for k, r in zip(ks, results, strict=False):
            if r.loss_recovered >= threshold:
                best = k
            else:
                break
        if best == 0:
            break
        for j, u in enumerate(units[i:i + best]):
            for e in u:
                importance[e] = base_rank + (i + j) / len(units)
        kept = cands[ks.index(best)]
        log(kept, results[ks.index(best)])
        i += best
    # phase 2: every remaining unit scored alone (one batch); those that can go alone are then
    # removed least-harmful first, a window of cumulative removals per batch, skipping any that fails
    todo = [u for u in units[i:] if u & kept]
    if not todo:
        return kept
    results = score([kept - u for u in todo])
    for u, r in zip(todo, results, strict=True):
        for e in u:
            importance[e] = 1.0 - r.loss_recovered  # what removing it alone loses
    order = [todo[n] for n, r in sorted(enumerate(results), key=lambda t: (-t[1].loss_recovered, t[0]))
             if r.loss_recovered >= threshold]
    j = 0
    while j < len(order):
        window = order[j:j + WINDOW]
        cands, acc = [], kept
        for u in window:
            acc = acc - u
            cands.append(acc)
        cum = score.until_below(cands, threshold)
        taken = 0
        for r in cum:
            if r.loss_recovered < threshold:
                break
            taken += 1
        if taken:
            kept = cands[taken - 1]
            log(kept, cum[taken - 1])
        j += taken + 1  # the unit that failed (if any) stays
    return kept


def _pre_rank(model, data: Dataset, graph: ModelGraph, metric: Metric, how: str, seed: int) -> dict[Edge, float]:
    edges = edges_of(graph)
    if how == "order":  # ACDC's order: receivers from the output back, senders latest first
        return {e: -float(k) for k, e in enumerate(reversed(edges))}
    scores = edge_attribution(model, data, metric=metric, seed=seed)
    return {e: abs(s) for e, s in scores.items()}


def _search(model, data: Dataset, *, threshold: float, granularity: str, pre_rank: str, opts: RunOptions,
            name: str, features: Sequence | None, progress: bool | None = False) -> dict[str, Any]:
    graph = ModelGraph.from_model(model)
    one_pass = one_pass_seconds(model, data)
    with PassCounter(model) as counter:
        found = _search_counted(model, data, graph, threshold=threshold, granularity=granularity,
                                pre_rank=pre_rank, opts=opts, name=name, features=features, progress=progress)
    backward = (2.0 if pre_rank == "attribution" else 0.0) * (2 if granularity == "position" else 1)
    found["forward_passes"] = counter.passes(len(data)) + backward
    found["forward_equivalents"] = found["seconds"] / max(one_pass, 1e-9)
    return found


def _search_counted(model, data: Dataset, graph: ModelGraph, *, threshold: float, granularity: str, pre_rank: str,
                    opts: RunOptions, name: str, features: Sequence | None, progress: bool | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    score = _Scorer(model, data, graph, opts, name, progress)
    all_edges = edges_of(graph)
    prior = _pre_rank(model, data, graph, opts.metric, pre_rank, opts.seed)
    order = {e: k for k, e in enumerate(all_edges)}
    importance: dict[Edge, float] = {}
    curve: list[dict] = []
    kept = frozenset(all_edges)
    # step 1: components (a component goes with all its outgoing edges), lowest prior first
    comps = [c for c in graph.components if c != "out"]
    out_edges = {c: frozenset(e for e in all_edges if e[0] == c) for c in comps}
    comp_prior = {c: sum(prior[e] for e in out_edges[c]) for c in comps}
    ranked = sorted(comps, key=lambda c: (comp_prior[c], -graph.stage(c), c))
    kept = _prune(score, [out_edges[c] for c in ranked], kept, threshold, curve, "component", importance)
    if granularity != "component":
        live = sorted(_reachable(graph, kept), key=lambda e: (prior[e], -order[e]))
        kept = _prune(score, [frozenset([e]) for e in live], kept, threshold, curve, "port", importance)
    kept = _reachable(graph, kept)
    if granularity == "position":  # step 3: each kept edge at each position of its sender's output
        kept = _position_stage(model, data, score, kept, threshold, curve, importance, pre_rank, opts, order)
    elif granularity in ("neuron", "subspace"):  # step 3: the neurons / output directions of each kept sender
        kept = _variable_stage(score, kept, threshold, curve, importance, granularity)
    chosen: dict[str, Any] = {}
    if features:
        chosen = _synthesize(score, kept, list(features), threshold, curve)
    final = score.hypothesis(kept, chosen)
    (result,) = score([kept], [chosen], final=True)
    neurons, subspaces = score.variables(kept)
    kept, positions = score.claims(kept)
    kept = set(_reachable(graph, frozenset(kept)))
    positions = {e: ts for e, ts in positions.items() if e in kept}
    for e in kept:
        importance[e] = max(importance.get(e, 1.0), 1.0 - threshold + 1e-9)
    # an edge into a component that no kept edge reads was scored, if at all, with its sender's other
    # edges: it matters no more than its receiver, whose outgoing edges were removed
    live = {c for e in kept for c in e[:2]}
    for e in all_edges:
        if e[1] != "out" and e[1] not in live and e in importance:
            receiver = max((importance.get(o, -6.0) for o in out_edges[e[1]]), default=-6.0)
            importance[e] = min(importance[e], receiver - 1e-3)
    floor = -6.0  # edges never scored (of components no kept one reads): below everything, in pre-rank order
    ranking = pd.DataFrame([
        {"up": e[0], "node": e[1], "port": e[2], "importance": importance.get(e, floor + prior[e] / (1 + max(prior.values()))),
         "kept": e in kept, "pre_rank": prior[e]} for e in all_edges
    ])
    seconds = time.perf_counter() - t0
    score.bar.close()
    return {"hypothesis": final, "edges": set(kept), "positions": positions, "neurons": neurons,
            "subspaces": subspaces, "result": result,
            "curve": pd.DataFrame(curve), "ranking": ranking, "n_hypotheses": score.count, "seconds": seconds}


def _variable_stage(score: _Scorer, kept: frozenset, threshold: float, curve: list[dict], importance: dict,
                    kind: str) -> frozenset:
    """Prune the neurons of each kept MLP (``kind="neuron"``) or the principal directions of each kept
    sender's output (``"subspace"``), least variance first; a sender left with none is removed.

    Neuron ``i`` of MLP ``m`` is ranked by the variance of what it adds to the residual on the search
    split (``Var(act_i) * |W_out[i]|^2``); directions by the variance of the output along them (PCA).
    Returns ``kept`` plus the atoms left: ``("#neuron", m, i)`` / ``("#direction", u, j)``.
    """
    graph, model = score.graph, score.model
    senders = sorted({e[0] for e in kept}, key=graph.stage)
    if kind == "neuron":
        from scrub._architecture import Architecture

        senders = [u for u in senders if graph.kind(u) == "mlp"]
        if senders:
            Architecture.of(model).check_neurons(model)
    variance = _output_variance(model, graph, score.data, senders, kind)
    atoms: dict[tuple, float] = {}
    for u in senders:
        if kind == "subspace":
            values, vectors = variance[u]
            score.bases[u] = vectors
            atoms.update({("#direction", u, j): float(v) for j, v in enumerate(values)})
        else:
            atoms.update({("#neuron", u, i): float(v) for i, v in enumerate(variance[u])})
    if not atoms:
        return kept
    score.staged = set(senders)
    ranked = sorted(atoms, key=lambda a: (atoms[a], -graph.stage(a[1]), -a[2]))
    at_importance: dict = {}
    left = _prune(score, [frozenset([a]) for a in ranked], kept | frozenset(atoms), threshold, curve, kind,
                  at_importance)
    live = {a[1] for a in left if _is_variable(a)}
    for e in kept:  # a sender left with nothing matters as much as its most important neuron or direction
        if e[0] in score.staged and e[0] not in live:
            importance[e] = min(importance.get(e, 1.0),
                                max(v for a, v in at_importance.items() if a[1] == e[0]))
    return left


def _output_variance(model, graph: ModelGraph, data: Dataset, senders: list[str], kind: str) -> dict[str, Any]:
    """Per sender: ``[d_mlp]`` neuron variances times ``|W_out[i]|^2`` (``"neuron"``), or the output's
    principal variances and directions ``([d], [d, d])``, largest first (``"subspace"``); over every
    real (unpadded) position of ``data``, in float64."""
    from scrub._ablation import captured
    from scrub._architecture import Architecture
    from scrub._executor import model_device

    arch = Architecture.of(model)
    reads: dict[str, list[str]] = {}  # what is captured -> the senders computed from it
    for u in senders:
        if kind == "neuron":
            key = f"{u}:post"
        elif graph.kind(u) == "attn" and not graph.whole_layers:
            key = f"z{graph.layer(u)}"  # every head of the layer; a head's output is z_h @ W_O[h]
        else:
            key = u
        reads.setdefault(key, []).append(u)
    sums: dict[str, list] = {}
    for seen, weight in captured(model, graph, data, model_device(model), keys=set(reads)):
        w = weight.reshape(-1).cpu()
        for key, x in seen.items():
            for u in reads[key]:
                if key.startswith("z"):
                    h = graph.heads_of(u)[0]
                    x_u = x[:, :, h] @ arch.W_O(model, graph.layer(u))[h]
                else:
                    x_u = x
                y = x_u.reshape(-1, x_u.shape[-1]).double().cpu()
                yw = y * w[:, None]
                acc = sums.setdefault(u, [0.0, 0.0, 0.0])
                acc[0] += float(w.sum())
                acc[1] = acc[1] + yw.sum(0)
                acc[2] = acc[2] + ((yw * y).sum(0) if kind == "neuron" else yw.T @ y)
    out: dict[str, Any] = {}
    for u in senders:
        n, s1, s2 = sums[u]
        mean = s1 / max(n, 1.0)
        if kind == "neuron":
            var = (s2 / max(n, 1.0) - mean**2).clamp(min=0)
            w_out = arch.W_out(model, graph.layer(u)).detach().double().cpu()
            out[u] = (var * (w_out**2).sum(1)).numpy()
        else:
            cov = s2 / max(n, 1.0) - torch.outer(mean, mean)
            values, vectors = torch.linalg.eigh((cov + cov.T) / 2)
            order = torch.argsort(values, descending=True)
            out[u] = (values[order].clamp(min=0).numpy(), vectors[:, order].contiguous())
    return out


def _position_stage(model, data: Dataset, score: _Scorer, kept: frozenset[Any], threshold: float,
                    curve: list[dict], importance: dict, pre_rank: str, opts: RunOptions,
                    order: dict[Edge, int]) -> frozenset:
    """Prune each kept edge position by position; an edge all of whose positions go is removed.

    Returns the atoms kept: ``(up, node, port, t)``, one per edge and position of ``up``'s output.
    """
    t_len = data.seq_len
    edges: list[Edge] = sorted(kept, key=lambda e: order[e])
    prior: dict[tuple[str, str, str, int], float]
    if pre_rank == "attribution":
        by_pos = edge_attribution(model, data, metric=opts.metric, seed=opts.seed, edges=edges, by_position=True)
        prior = {(*e, t): abs(float(by_pos[e][t])) for e in edges for t in range(t_len)}
    else:  # the latest positions first, like the graph order
        prior = {(*e, t): -float(order[e] * t_len + t) for e in edges for t in range(t_len)}
    atoms = sorted(prior, key=lambda a: (prior[a], -order[(a[0], a[1], a[2])], -a[3]))
    at_importance: dict = {}
    left = _prune(score, [frozenset([a]) for a in atoms], frozenset(atoms), threshold, curve, "position",
                  at_importance)
    left = _reachable(score.graph, left)
    for e in edges:  # an edge removed at every position matters as much as its most important one
        if not any(a[:3] == e for a in left):
            importance[e] = min(importance.get(e, 1.0), max(at_importance.get((*e, t), -2.0) for t in range(t_len)))
    return left


def _coarseness(feature, data: Dataset) -> int:
    return int(evaluate_feature(feature, data).n_values)


def _synthesize(score: _Scorer, kept: frozenset[Any], candidates: list, threshold: float,
                curve: list[dict]) -> dict[str, Any]:
    """For each node, the coarsest candidate feature that keeps the score (singles, then cumulative)."""
    hyp = score.hypothesis(kept)
    nodes = [n.name for n in hyp.nodes() if n is not hyp.root]
    ranked = sorted(candidates, key=lambda f: _coarseness(f, score.data))
    chosen: dict[str, Any] = {}
    trials = [(nm, f) for nm in nodes for f in ranked]
    if not trials:
        return chosen
    results = score([kept] * len(trials), [{nm: f} for nm, f in trials])
    best: dict[str, tuple[int, float, Any]] = {}
    for (nm, f), r in zip(trials, results, strict=True):
        rank = ranked.index(f)
        if r.loss_recovered >= threshold and (nm not in best or rank < best[nm][0]):
            best[nm] = (rank, r.loss_recovered, f)
    order = sorted(best, key=lambda nm: -best[nm][1])
    cands, acc = [], {}
    for nm in order:
        acc = {**acc, nm: best[nm][2]}
        cands.append(acc)
    if not cands:
        return chosen
    cum = score([kept] * len(cands), cands)
    for c, r in zip(cands, cum, strict=True):
        if r.loss_recovered < threshold:
            break
        chosen = c
        curve.append({"step": len(curve), "stage": "features", "n_edges": len(kept),
                      "n_components": len({e[0] for e in kept} | {e[1] for e in kept}),
                      "score": r.loss_recovered, "lo": r.ci[0], "hi": r.ci[1]})
    return chosen


def _split(data: Dataset, held_out, seed: int) -> tuple[Dataset, Dataset | None]:
    if held_out is None or held_out == 0:
        return data, None
    if isinstance(held_out, Dataset):
        return data, held_out
    if isinstance(held_out, bool) or not isinstance(held_out, float) or not 0 < held_out < 1:
        raise RunOptionsError(f"held_out must be a fraction in (0, 1), a scrub.Dataset or None, got {held_out!r}")
    n = len(data)
    k = round(n * held_out)
    if k < 2 or n - k < 2:
        raise DatasetError(f"discover: held_out={held_out} leaves fewer than 2 examples in a split of {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return data.subset(np.sort(perm[k:]).tolist()), data.subset(np.sort(perm[:k]).tolist())


def _shuffled(data: Dataset, seed: int) -> Dataset:
    """The task with shuffled answers: labels and columns permuted together, tokens untouched."""
    perm = np.random.default_rng(seed + 1).permutation(len(data))
    cols = data.columns.iloc[perm].reset_index(drop=True)
    return Dataset(data.tokens, None if data.labels is None else data.labels[torch.from_numpy(perm)], columns=cols,
                   target_pos=data.target_pos, attention_mask=data.attention_mask)


def _effect(result) -> float:
    """How much the model beats the baseline on the search split: ``loss_baseline - loss_model``."""
    return float(result.loss_baseline - result.loss_model)


def _random_weights(model, seed: int):
    from scrub._checkpoint import build_model, model_config

    torch.manual_seed(seed)
    return build_model(**model_config(model))


def discover(
    model,
    data: Dataset,
    *,
    threshold: float = 0.95,
    granularity: str = "port",
    pre_rank: str = "attribution",
    features: Sequence[str | Callable] | None = None,
    held_out: float | Dataset | None = 0.5,
    controls: bool = True,
    margin: float = 0.1,
    name: str = "discovered",
    options: RunOptions | None = None,
    metric: Metric | None = None,
    seed: int | None = None,
    n_seeds: int | None = None,
    batch_size: int | None = None,
    n_boot: int | None = None,
    progress: bool | None = None,
) -> Discovery:
    """Discover a small hypothesis whose fraction of loss recovered is at least ``threshold``.

    Args:
        model, metric, seed, n_seeds, batch_size, n_boot, options: as for :func:`scrub.run`
            (every candidate is scored with these; the search is deterministic under ``seed``).
        data: the examples; ``held_out`` of them (a fraction, default half, chosen with ``seed``)
            are kept out of the search and score the result; or pass the held-out
            :class:`~scrub.Dataset` itself, or None to use no held-out split.
        threshold: the fraction of loss recovered the result must keep on the search split.
        granularity: ``"component"`` (claims are components, with every edge between kept ones)
            or ``"port"`` (claims are single edges ``up -> node.port``, after a component pass) or
            ``"position"`` (then each kept edge at each sequence position: the result's nodes
            carry ``positions=``; positions are absolute, so use it on data whose positions line
            up), ``"neuron"`` (then the neurons of each kept MLP: nodes carry ``neurons=``) or
            ``"subspace"`` (then the principal directions of each kept sender's output, on the
            search split: nodes carry ``subspace=``).
        pre_rank: how candidates are ordered before they are scored: ``"attribution"`` (edge
            attribution patching; models it supports) or ``"order"`` (output first, like ACDC).
        features: candidate features (column names or functions of the data) to put on the
            discovered nodes in place of :class:`~scrub.Exact`: each node gets the coarsest one
            that keeps the score. Functions are saved by their importable name only.
        controls: also run the same search on the same architecture with random weights and on
            the task with shuffled labels (and columns), and flag a result that a control comes
            close to: a held-out score within ``margin`` of the result's, with no more edges, on a
            behaviour at least half as large (the control model's ``loss_baseline - loss_model``
            at least half the real one's: a score on a behaviour the model does not have is noise).
        name: the discovered hypothesis's name.
        progress: a bar counting the hypotheses scored, with the stage (None: only on a terminal).

    Returns:
        a :class:`Discovery`.

    Raises:
        RunOptionsError: a bad ``threshold``, ``granularity``, ``pre_rank`` or ``held_out``.
        UnsupportedModelError: ``granularity="neuron"`` on a model without neurons whose contributions
            add up (attention-only, post-MLP norms).
        DatasetError, MetricError, UnsupportedModelError: as for :func:`scrub.run`.
    """
    from scrub._experiment import run

    opts = resolve_options(options, metric=metric, seed=seed, n_seeds=n_seeds, batch_size=batch_size, n_boot=n_boot,
                           progress=False)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise RunOptionsError(f"discover: threshold must be a fraction of loss recovered in (0, 1], got {threshold!r}")
    if granularity not in GRANULARITIES:
        raise RunOptionsError(f"discover: granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if pre_rank not in PRE_RANKS:
        raise RunOptionsError(f"discover: pre_rank must be one of {PRE_RANKS}, got {pre_rank!r}")
    if granularity == "neuron":  # before any search: the model must have neurons whose contributions add up
        from scrub._architecture import Architecture

        Architecture.of(model).check_neurons(model)
    if features is not None:
        from scrub._serialize import check_saveable
        for f in features:
            check_saveable(f, "discover(features=...)")
    search_data, test_data = _split(data, held_out, opts.seed)
    found = _search(model, search_data, threshold=threshold, granularity=granularity, pre_rank=pre_rank, opts=opts,
                    name=name, features=features, progress=progress)
    res = found["result"]
    held, held_ci = None, None
    if test_data is not None:
        r = run(model, found["hypothesis"], test_data, options=opts)
        held, held_ci = r.loss_recovered, r.ci
    out = Discovery(
        hypothesis=found["hypothesis"], edges=found["edges"], score=res.loss_recovered, ci=res.ci, held_out=held,
        held_out_ci=held_ci, threshold=float(threshold), granularity=granularity, curve=found["curve"],
        positions=found["positions"], neurons=found["neurons"], subspaces=found["subspaces"],
        scored_positions=int(torch.unique(data.target_pos).numel()),
        ranking=found["ranking"], n_hypotheses=found["n_hypotheses"], forward_passes=found["forward_passes"],
        forward_equivalents=found["forward_equivalents"], seconds=found["seconds"],
    )
    if controls:
        rows = []
        reference = held if held is not None else res.loss_recovered
        for label, cmodel, cdata in (
            ("random weights", lambda: _random_weights(model, opts.seed), lambda: data),
            ("shuffled labels", lambda: model, lambda: _shuffled(data, opts.seed)),
        ):
            row: dict[str, Any] = {"control": label, "held_out": float("nan"), "n_edges": 0, "effect": float("nan"),
                                   "close": False, "note": ""}
            try:
                m, d = cmodel(), cdata()
                s_data, t_data = _split(d, held_out, opts.seed)
                c = _search(m, s_data, threshold=threshold, granularity=granularity, pre_rank=pre_rank, opts=opts,
                            name=f"{name} ({label})", features=None, progress=progress)
                score_c = (run(m, c["hypothesis"], t_data, options=opts).loss_recovered if t_data is not None
                           else c["result"].loss_recovered)
                effect = _effect(c["result"]) / max(_effect(res), 1e-12)
                row.update(held_out=score_c, n_edges=len(c["edges"]), effect=effect,
                           close=bool(score_c >= reference - margin and len(c["edges"]) <= len(out.edges)
                                      and effect >= 0.5))
            except BaselineError as exc:
                row["note"] = f"no score: {str(exc)[:120]}"
            except ScrubError as exc:
                row["note"] = f"not run: {type(exc).__name__}: {str(exc)[:120]}"
            rows.append(row)
        out.controls = pd.DataFrame(rows)
        out.flagged = bool(out.controls["close"].any())
    return out
