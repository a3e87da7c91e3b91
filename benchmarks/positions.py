"""Varying target positions: plan size before and after pruning, and time against a fixed-target plan.

    python -m benchmarks.positions            # N = 1,000, 3 repetitions (~4 minutes on one CPU thread)
    python -m benchmarks.positions --quick    # N = 200, 1 repetition

The case is the issue's: the induction demo model on :func:`hypotheses.induction.make_varying_data`
(target inside the second copy of the repeated segment, never the last token), with the per-position
induction hypothesis written as a new user would: the induction heads agree on
:func:`~hypotheses.induction.hypotheses.induction_answers` (``[N, T]``) with ``positions=`` the
target, the embeddings feed Q the token at each position, the previous-token heads feed K the
previous token, the embeddings feed V the token. Unpruned, the heads split into ``T`` copies, each
with ``3T`` per-position children. Pruned, one heads instance (each reference's copy at its target)
with one Q child and ``2T`` K and V children is left.

Figures: the plan sizes; the executor's time on the unpruned plan (one run: it is slow) and on the
pruned one; and, as the yardstick "a plan with the target-position instances alone", the same
hypothesis on :func:`hypotheses.induction.make_data` (every target at the last position, so its plan
has exactly one copy of the heads), same N. Ratios are taken within one repetition, the two
interleaved. The pruned and unpruned logits are compared: the plans sample the same examples, so
they differ only by the float rounding of different batch compositions (the executor chunks
references by the plan's number of blocks; the unpruned plan run at two batch sizes differs as
much); the maximum difference is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import scrub
from benchmarks.measure import Spread, one_thread, timed
from hypotheses.induction import load_model, make_data
from hypotheses.induction.data import make_varying_data
from hypotheses.induction.hypotheses import per_position_at_targets
from scrub._executor import run_plan
from scrub._plan import make_plan

RESULTS = Path(__file__).resolve().parent / "results"


def issue_hypothesis() -> scrub.Hypothesis:
    """The per-position induction hypothesis as written in the issue (``positions=`` the target)."""
    return per_position_at_targets(name="induction, per position, positions=target")


def _stats(values: list[float]) -> dict:
    s = Spread(values)
    return dict(median=s.median, min=s.lo, max=s.hi, reps=len(values))


def pruning(n: int, reps: int, device, rows: list, log=print) -> None:
    """Append the varying-positions figures to ``rows`` (dicts with figure, case, metric, median, ...)."""
    model = load_model().to(device)
    graph = scrub.ModelGraph.from_model(model)
    h = issue_hypothesis()
    varying, fixed = make_varying_data(n, seed=1234), make_data(n, seed=1234)
    full = make_plan(h, graph, varying, 0, warn=False, _prune=False)
    pruned = make_plan(h, graph, varying, 0, warn=False)
    alone = make_plan(h, graph, fixed, 0, warn=False)
    case = f"induction, varying targets ({len(np.unique(varying.target_pos))} positions)"
    common = dict(figure="pruning", case=case, n=n)
    for metric, v in [("instances, unpruned", len(full.instances)), ("instances, pruned", len(pruned.instances)),
                      ("instances, fixed-target plan", len(alone.instances))]:
        rows.append(dict(common, metric=metric, median=v, min=v, max=v, reps=1))
    run_plan(model, alone, fixed)  # warm-up
    t_full, out_full = timed(lambda: run_plan(model, full, varying), device)
    t_pruned, t_alone, ratio, speedup = [], [], [], []
    out_pruned = None
    for rep in range(reps):
        steps = [("pruned", lambda: run_plan(model, pruned, varying)), ("alone", lambda: run_plan(model, alone, fixed))]
        got = {}
        for name, fn in steps if rep % 2 == 0 else steps[::-1]:
            got[name], out = timed(fn, device)
            if name == "pruned":
                out_pruned = out
        t_pruned.append(got["pruned"]), t_alone.append(got["alone"])
        ratio.append(got["pruned"] / got["alone"]), speedup.append(t_full / got["pruned"])
    diff = float((out_pruned - out_full).abs().max())
    if diff > 1e-4:
        raise AssertionError(f"the pruned plan's logits differ from the unpruned plan's by {diff}")
    rows.append(dict(common, metric="max abs logit difference, pruned vs unpruned", median=diff, min=diff, max=diff,
                     reps=1))
    rows.append(dict(common, metric="executor_s, unpruned (1 run)", median=t_full, min=t_full, max=t_full, reps=1))
    rows.append(dict(common, metric="executor_s, pruned", **_stats(t_pruned)))
    rows.append(dict(common, metric="executor_s, fixed-target plan", **_stats(t_alone)))
    rows.append(dict(common, metric="speed-up, unpruned / pruned", **_stats(speedup)))
    rows.append(dict(common, metric="ratio, pruned / fixed-target plan (target ~1)", **_stats(ratio)))
    log(f"pruning   {case}: {len(full.instances)} -> {len(pruned.instances)} instances "
        f"(fixed-target plan {len(alone.instances)}); unpruned {t_full:.1f}s, pruned {Spread(t_pruned).fmt('s')}, "
        f"fixed-target {Spread(t_alone).fmt('s')}; pruned/fixed {Spread(ratio).fmt()}; max abs logit difference {diff:.2g}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 200, one repetition")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results[/quick])")
    args = ap.parse_args(argv)
    one_thread()
    n, reps = (200, 1) if args.quick else (1000, 3)
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    t0 = time.perf_counter()
    rows: list = []
    pruning(n, reps, device, rows)
    pd.DataFrame(rows).assign(device=where, torch=torch.__version__, threads=torch.get_num_threads()).to_csv(
        out / "positions.csv", index=False)
    md = ["| metric | median | min..max | reps |", "|---|---|---|---|"]
    md += [f"| {r['metric']} | {r['median']:.3g} | {r['min']:.3g}..{r['max']:.3g} | {r['reps']} |" for r in rows]
    (out / "positions.md").write_text(
        f"# Varying target positions\n\n`python -m benchmarks.positions{' --quick' if args.quick else ''}`; "
        f"{rows[0]['case']}, N = {n}; device {where}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread, {time.perf_counter() - t0:.0f} s in all.\n\n" + "\n".join(md) + "\n")
    print(f"wrote {out / 'positions.md'}")


if __name__ == "__main__":
    main()
