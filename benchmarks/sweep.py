"""Throughput of a sweep: 100 hypotheses of one model scored with one ``run_many`` against 100 ``run`` calls.

``python -m benchmarks.sweep`` (``--k`` hypotheses, ``--n`` examples) writes
``benchmarks/results/sweep.csv``: the wall seconds of ``scrub.run_many(model, hypotheses, data)``
and of ``[scrub.run(model, h, data) for h in hypotheses]`` in one process, on one thread,
after a warm-up, over ``--reps`` repetitions that take turns at going first, and their ratio; and what the shared part (the clean
run and the baseline) and one hypothesis's plan cost, which bound the ratio. The results of both
ways are checked equal (every Result, bit for bit) before anything is written.

The hypotheses are variants of the naive induction hypothesis on the zoo's induction model: each
claims a different subset of the layer-0 nodes (embeddings and heads) for the induction heads' Q,
K and V (:func:`variants`).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch

import scrub
from benchmarks.measure import one_thread

OUT = Path(__file__).parent / "results" / "sweep.csv"


def variants(k: int) -> list[scrub.Hypothesis]:
    """``k`` distinct variants of the naive induction hypothesis: the nodes claimed into Q, K and V
    range over the 31 non-empty subsets of the layer-0 nodes (``embed``, ``a0.0`` .. ``a0.3``)."""
    from hypotheses.induction.hypotheses import HEADS, previous_tokens, tokens

    layer0 = ["embed", "a0.0", "a0.1", "a0.2", "a0.3"]
    subsets = [list(c) for r in range(1, 6) for c in itertools.combinations(layer0, r)]
    out = []
    for i in range(k):
        q, kk, v = subsets[i % 31], subsets[(7 * i + 3) % 31], subsets[(13 * i + 5) % 31]
        h = scrub.Hypothesis(f"variant {i}: q {'+'.join(q)}, k {'+'.join(kk)}, v {'+'.join(v)}")
        ind = h.output().add("induction heads", model=HEADS["induction"], agree="label")
        ind.add("current token", model=q, port="q", agree="current_token")
        ind.add("previous tokens", model=kk, port="k", agree=previous_tokens)
        ind.add("token values", model=v, port="v", agree=tokens)
        out.append(h)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=100, help="hypotheses")
    ap.add_argument("--n", type=int, default=200, help="examples")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    one_thread()
    warnings.filterwarnings("ignore", message="Moving model")
    from hypotheses.induction import load_model, make_data
    from scrub._executor import run_clean, run_plan
    from scrub._graph import ModelGraph
    from scrub._plan import make_plan

    model, data = load_model(), make_data(args.n, seed=1234)
    hs = variants(args.k)
    opts = scrub.RunOptions(seed=0, progress=False)
    scrub.run_many(model, hs[:3], data, options=opts)  # warm-up: the first passes of a process are slower
    many, single = [], []
    for rep in range(args.reps):
        got = {}
        for way in (("many", "single") if rep % 2 == 0 else ("single", "many")):  # each goes first in turn
            t = time.perf_counter()
            if way == "many":
                got[way] = scrub.run_many(model, hs, data, options=opts)
            else:
                got[way] = [scrub.run(model, h, data, options=opts) for h in hs]
            (many if way == "many" else single).append(time.perf_counter() - t)
        assert all(x == y for x, y in zip(got["many"], got["single"], strict=True)), "run_many and run disagree"
    graph = ModelGraph.from_model(model)
    shared, per_h = [], []
    for _ in range(args.reps):
        t = time.perf_counter()
        run_clean(model, data)
        run_plan(model, make_plan(scrub.fully_scrubbed(), graph, data, 0, warn=False), data)
        shared.append(time.perf_counter() - t)
        t = time.perf_counter()
        for h in hs:
            run_plan(model, make_plan(h, graph, data, 0, warn=False), data)
        per_h.append((time.perf_counter() - t) / len(hs))
    env = {"device": f"cpu ({platform.machine()}, {os.cpu_count()} cores)", "torch": torch.__version__, "threads": 1}
    case = f"induction, {args.k} variants of the naive hypothesis"
    rows = [
        (f"run_many of {args.k} hypotheses (s)", many),
        (f"{args.k} separate scrub.run calls (s)", single),
        ("ratio: separate runs / run_many", [s / m for s, m in zip(single, many, strict=True)]),
        ("shared part: clean run + baseline plan (s)", shared),
        ("one hypothesis: plan + its passes (s, mean)", per_h),
        ("bound on the ratio: (shared + hypothesis) / hypothesis", [(s + p) / p for s, p in zip(shared, per_h, strict=True)]),
    ]
    with args.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["figure", "case", "n", "metric", "median", "min", "max", "reps", *env])
        w.writeheader()
        for metric, v in rows:
            w.writerow({"figure": "sweep", "case": case, "n": args.n, "metric": metric, "median": statistics.median(v),
                        "min": min(v), "max": max(v), "reps": len(v), **env})
            print(f"{metric:<58} {statistics.median(v):.4g} [{min(v):.4g}..{max(v):.4g}]")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
