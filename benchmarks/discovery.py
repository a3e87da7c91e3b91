"""Circuit discovery on the zoo: scrub.discover against plain ACDC and edge attribution patching (EAP).

For every model: the edges each method keeps, precision and recall against the known circuit
(tracr: the true hypothesis; induction: the previous-token and induction heads; paren: the shipped
claims 1+2+3), ROC AUC of each method's edge ranking, and the cost in forward-pass equivalents
(wall time / one plain forward pass over the same examples, timed in the same process) and
seconds. Writes ``benchmarks/results/discovery.csv``, ``discovery.md`` and the faithfulness
curves ``discovery_curves.csv``.

    OMP_NUM_THREADS=1 python -m benchmarks.discovery            # every model (~45 minutes on 1 core)
    OMP_NUM_THREADS=1 python -m benchmarks.discovery reverse hist   # rerun these; keep the other rows
    OMP_NUM_THREADS=1 python -m benchmarks.discovery extra          # the tracr programs of hypotheses.tracr.extra
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import scrub
from scrub._acdc import PeerResult, acdc
from scrub._attribution import edge_attribution, edges_of, one_pass_seconds
from scrub._discover import _reachable, _split, claimed_edges, hypothesis_from_edges, roc_auc

RESULTS = Path(__file__).resolve().parent / "results"
N = 400  # examples: half search, half held out
THRESHOLD = 0.95


def _eap(model, data, metric, k: int) -> PeerResult:
    one = one_pass_seconds(model, data)
    t0 = time.perf_counter()
    scores = edge_attribution(model, data, metric=metric)
    seconds = time.perf_counter() - t0
    ranked = sorted(scores, key=lambda e: -abs(scores[e]))
    graph = scrub.ModelGraph.from_model(model)
    edges = set(_reachable(graph, frozenset(ranked[:k])))
    table = pd.DataFrame([{"up": e[0], "node": e[1], "port": e[2], "score": abs(scores[e]), "kept": e in edges}
                          for e in edges_of(graph)])
    return PeerResult("EAP", edges, table, 5, seconds, seconds / max(one, 1e-9))


def _needed(model, data, metric, graph, truth: set) -> set:
    """The true edges the data needs: removing one from the true edge set drops the score below THRESHOLD
    (the others carry a value that is the same on every example, e.g. ``pos`` without padding)."""
    search, _ = _split(data, 0.5, 0)
    edges = sorted(truth)
    hyps = [hypothesis_from_edges(graph, frozenset(truth - {e})) for e in edges]
    results = scrub.run_many(model, hyps, search, metric=metric, seed=0, n_boot=100)
    return {e for e, r in zip(edges, results, strict=True) if r.loss_recovered < THRESHOLD}


_edge_sets: list[set] = []


def _row(model_name: str, method: str, truth_edges: set, edges: set, ranking: pd.DataFrame, col: str, **extra):
    _edge_sets.append(edges)
    tp = len(edges & truth_edges)
    labels = [(a, b, c) in truth_edges for a, b, c in zip(ranking.up, ranking.node, ranking.port, strict=True)]
    return {
        "model": model_name, "method": method, "n_edges": len(edges), "n_true": len(truth_edges),
        "precision": tp / len(edges) if edges else float("nan"), "recall": tp / len(truth_edges),
        "roc_auc": roc_auc(labels, ranking[col].to_numpy()), **extra,
    }


def _compare(model_name: str, model, data, metric, truth_edges: set, extra_truth: dict | None = None):
    rows, curves = [], []
    _edge_sets.clear()
    d = scrub.discover(model, data, metric=metric, threshold=THRESHOLD, seed=0, n_boot=200, controls=True)
    search, _ = _split(data, 0.5, 0)
    for label, pre in (("scrub (attribution pre-rank)", d), ):
        rows.append(_row(model_name, label, truth_edges, pre.edges, pre.ranking, "importance",
                         forward_passes=pre.forward_passes, forward_equivalents=pre.forward_equivalents,
                         seconds=pre.seconds,
                         hypotheses_scored=pre.n_hypotheses, score=pre.score, held_out=pre.held_out,
                         flagged=pre.flagged, controls="; ".join(
                             f"{r.control}: {r.held_out:.3f} ({r.n_edges} edges, effect {r.effect:.2f}){' CLOSE' if r.close else ''}"
                             for r in pre.controls.itertuples()) if pre.controls is not None else ""))
        curves.append(pre.curve.assign(model=model_name))
    a = acdc(model, search, metric=metric, tau=0.01)
    rows.append(_row(model_name, "ACDC (tau=0.01)", truth_edges, a.edges, a.ranking, "score",
                     forward_equivalents=a.forward_equivalents, seconds=a.seconds, forward_passes=a.forward_passes))
    e = _eap(model, search, metric, max(1, len(d.edges)))
    rows.append(_row(model_name, "EAP (top-k, k = scrub's size)", truth_edges, e.edges, e.ranking, "score",
                     forward_equivalents=e.forward_equivalents, seconds=e.seconds, forward_passes=e.forward_passes))
    graph = scrub.ModelGraph.from_model(model)
    _, test = _split(data, 0.5, 0)
    for r, found in zip(rows[1:], (a, e), strict=True):  # the peers' circuits, scored by scrub on the held-out split
        h = hypothesis_from_edges(graph, found.edges, name=f"{model_name} {r['method']}")
        try:
            r["held_out"] = scrub.run(model, h, test, metric=metric, seed=0, n_boot=200).loss_recovered
        except scrub.ScrubError as exc:  # e.g. an empty circuit on a model whose baseline has its loss
            r["held_out"] = float("nan")
            print(f"{model_name} {r['method']}: not scored ({type(exc).__name__})", flush=True)
    for r in rows:
        r["passes_vs_acdc"] = r["forward_passes"] / a.forward_passes
    for k, v in (extra_truth or {}).items():
        for r in rows:
            r[k] = v(r)
    return rows, curves, d


def _tracr_rows(label: str, model, data, metric, truth: set):
    """The rows of one compiled program: scrub (port and position granularity), ACDC, EAP, with the
    recall of the true edges the data needs (:func:`_needed`)."""
    graph = scrub.ModelGraph.from_model(model)
    needed = _needed(model, data, metric, graph, truth)
    r, c, _ = _compare(label, model, data, metric, truth)
    p = scrub.discover(model, data, metric=metric, threshold=THRESHOLD, seed=0, n_boot=200,
                       granularity="position", controls=False)
    row = _row(label, "scrub (position granularity)", truth, p.edges, p.ranking, "importance",
               forward_passes=p.forward_passes, forward_equivalents=p.forward_equivalents, seconds=p.seconds,
               hypotheses_scored=p.n_hypotheses, score=p.score, held_out=p.held_out,
               positions="; ".join(f"{u}->{n}.{q} @{','.join(map(str, ts))}" for (u, n, q), ts in
                                   sorted(p.positions.items())))
    row["passes_vs_acdc"] = row["forward_passes"] / r[1]["forward_passes"]
    r.append(row)
    c.append(p.curve.assign(model=f"{label} (position)"))
    for row, edges in zip(r, _edge_sets, strict=True):
        row["n_needed"] = len(needed)
        row["recall_needed"] = len(edges & needed) / max(1, len(needed))
    print(pd.DataFrame(r).to_string(), flush=True)
    return r, c


def _programs(items):
    """Rows and curves of compiled programs: ``items`` yields ``(label, model, spec, data)``, the spec
    being what ``true_hypothesis`` and ``metric`` take (a zoo name or a spec dict)."""
    from hypotheses.tracr.hypotheses import metric, true_hypothesis

    rows, curves = [], []
    for label, model, spec, data in items:
        truth = claimed_edges(true_hypothesis(spec), scrub.ModelGraph.from_model(model))
        r, c = _tracr_rows(label, model, data, metric(spec), truth)
        rows += r
        curves += c
    return rows, curves


def tracr(names):
    from hypotheses import tracr as zoo

    return _programs((f"tracr/{name}", zoo.load_model(name), name,
                      zoo.make_data(name, N, seed=0, target_pos="random")) for name in names)


def tracr_extra():
    """The programs compiled only for the discovery tests (``hypotheses.tracr.extra``): every path their
    true hypotheses claim varies with the input, so recall against them is measurable. Their committed
    data (N examples, scored at the last position) is used as is."""
    from hypotheses.tracr.extra import EXTRA, load

    return _programs((f"tracr_extra/{name}", *load(name)) for name in EXTRA)


def induction():
    from hypotheses import induction as ind
    from hypotheses.induction.hypotheses import HEADS, naive

    model = ind.load_model()
    data = ind.make_data(N, seed=0)
    graph = scrub.ModelGraph.from_model(model)
    h = naive()
    truth = claimed_edges(h, graph)
    _, test = _split(data, 0.5, 0)
    naive_score = scrub.run(model, h, test, seed=0, n_boot=200).loss_recovered
    heads = set(HEADS["prev_token"]) | set(HEADS["induction"])

    rows, curves, d = _compare("induction", model, data, "loss", truth)
    comps = {x for e in d.edges for x in e[:2]}
    for r in rows:
        r["naive_held_out"] = naive_score
    rows[0]["heads_found"] = f"{len(heads & comps)}/{len(heads)} (missing: {', '.join(sorted(heads - comps)) or 'none'})"
    print(pd.DataFrame(rows).to_string(), flush=True)
    return rows, curves


def paren():
    from hypotheses import paren as pz
    from hypotheses.paren.hypotheses import claim_1_2_3

    model = pz.load_model()
    data = pz.make_data(N, seed=0)
    graph = scrub.ModelGraph.from_model(model)
    h = claim_1_2_3()
    truth = claimed_edges(h, graph)
    _, test = _split(data, 0.5, 0)
    shipped = scrub.run(model, h, test, seed=0, n_boot=200).loss_recovered
    rows, curves, _ = _compare("paren", model, data, "loss", truth)
    for r in rows:
        r["shipped_1_2_3_held_out"] = shipped
    print(pd.DataFrame(rows).to_string(), flush=True)
    return rows, curves


def llama_induction():
    """The tiny Llama (grouped-query attention: the edge-patching peers refuse it): scrub alone, at
    component granularity with the graph-order pre-ranking."""
    from hypotheses import llama_induction as li

    model = li.load()
    data = li.make_data(N, seed=0)
    d = scrub.discover(model, data, granularity="component", pre_rank="order", seed=0, n_boot=200, controls=True)
    comps = sorted({x for e in d.edges for x in e[:2]})
    row = {"model": "llama_induction", "method": "scrub (component, order pre-rank)", "n_edges": len(d.edges),
           "forward_passes": d.forward_passes, "forward_equivalents": d.forward_equivalents, "seconds": d.seconds,
           "hypotheses_scored": d.n_hypotheses, "score": d.score, "held_out": d.held_out, "flagged": d.flagged,
           "components": " ".join(comps)}
    print(row, flush=True)
    return [row], [d.curve.assign(model="llama_induction")]


def iit_carry():
    """The IIT-trained carry model: no edge-level ground truth (its known variable is a direction of
    the residual); the size, held-out score and cost of each method, next to the true hypothesis's
    held-out score, and scrub at subspace granularity."""
    from hypotheses import iit_carry as ic
    from hypotheses.iit_carry.hypotheses import true_hypothesis

    model = ic.load_model()
    data = ic.make_data(N, seed=0)
    _, test = _split(data, 0.5, 0)
    true_score = scrub.run(model, true_hypothesis(), test, seed=0, n_boot=200).loss_recovered
    graph = scrub.ModelGraph.from_model(model)
    truth = set(edges_of(graph))  # no edge-level truth: precision and recall are not meaningful here
    rows, curves, _ = _compare("iit_carry", model, data, "loss", truth)
    s = scrub.discover(model, data, threshold=THRESHOLD, seed=0, n_boot=200, granularity="subspace", controls=False)
    rows.append({"model": "iit_carry", "method": "scrub (subspace granularity)", "n_edges": len(s.edges),
                 "forward_passes": s.forward_passes, "forward_equivalents": s.forward_equivalents,
                 "seconds": s.seconds, "hypotheses_scored": s.n_hypotheses, "score": s.score, "held_out": s.held_out,
                 "subspaces": "; ".join(f"{u}: k={sub.dim}" for u, sub in sorted(s.subspaces.items())),
                 "passes_vs_acdc": s.forward_passes / rows[1]["forward_passes"]})
    curves.append(s.curve.assign(model="iit_carry (subspace)"))
    for r in rows:
        r["true_held_out"] = true_score
        for k in ("n_true", "precision", "recall", "roc_auc"):
            r[k] = float("nan")
    print(pd.DataFrame(rows).to_string(), flush=True)
    return rows, curves


def _markdown(table: pd.DataFrame) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def write(rows: list[dict], curves: list[pd.DataFrame]) -> None:
    """Write the table, its markdown and the curves (after every model, so a partial run leaves results)."""
    table = pd.DataFrame(rows)
    curve = pd.concat(curves)
    RESULTS.mkdir(exist_ok=True)
    old, old_curves = RESULTS / "discovery.csv", RESULTS / "discovery_curves.csv"
    if old.exists() and old_curves.exists():  # keep the committed rows of models not rerun
        models = set(table.model)
        prev, prev_c = pd.read_csv(old), pd.read_csv(old_curves)
        table = pd.concat([prev[~prev.model.isin(models)], table], ignore_index=True)
        curve = pd.concat([prev_c[~prev_c.model.isin(models)], curve], ignore_index=True)
    cols = ["model", "method", "n_edges", "n_true", "precision", "recall", "recall_needed", "roc_auc", "held_out",
            "forward_passes", "passes_vs_acdc", "forward_equivalents", "seconds"]
    for c in cols:
        if c not in table:
            table[c] = np.nan
    table = table[cols + [c for c in table.columns if c not in cols]]
    table.to_csv(RESULTS / "discovery.csv", index=False, float_format="%.4g")
    curve.to_csv(RESULTS / "discovery_curves.csv", index=False, float_format="%.4g")
    md = ["# Circuit discovery: scrub.discover vs ACDC vs EAP", "",
          f"N = {N} examples (search on half, held-out score on the other half), threshold {THRESHOLD}, seed 0.",
          "Written by `python -m benchmarks.discovery`.", "", _markdown(table[cols]), ""]
    extra = [c for c in table.columns if c not in cols]
    md += ["## Details", "", _markdown(table[["model", "method", *extra]]), ""]
    (RESULTS / "discovery.md").write_text("\n".join(md))


def main(argv: list[str]) -> None:
    from hypotheses import tracr as zoo

    names = argv or [*zoo.PROGRAMS, "extra", "induction", "paren",
                     "llama_induction", "iit_carry"]
    rows: list[dict] = []
    curves: list[pd.DataFrame] = []
    for name in names:
        if name in zoo.PROGRAMS:
            r, c = tracr([name])
        elif name == "extra":
            r, c = tracr_extra()
        elif name == "induction":
            r, c = induction()
        elif name == "paren":
            r, c = paren()
        elif name == "llama_induction":
            r, c = llama_induction()
        elif name == "iit_carry":
            r, c = iit_carry()
        else:
            raise SystemExit(f"unknown model {name!r}: a tracr program, extra, induction, paren, llama_induction "
                             "or iit_carry")
        rows, curves = rows + r, curves + c
        write(rows, curves)
    print(pd.DataFrame(rows).iloc[:, :10].to_string())


if __name__ == "__main__":
    np.seterr(all="ignore")
    main(sys.argv[1:])
