"""Run every benchmark and write ``benchmarks/results/``: ``summary.csv``, ``summary.md``, ``scaling.csv``, ``scaling.png``.

    python -m benchmarks.run            # full mode (~20 minutes on one CPU thread)
    python -m benchmarks.run --quick    # small N, few repeats (~2 minutes)
    python -m benchmarks.run --device cuda

Figures (each a median over repeated runs, with min..max; ratios are taken within one repetition):

- overhead: executor wall time / ``model(tokens)`` over (instances + random contexts) x N rows at the
  executor's batch size, baseline and executor interleaved;
- speed-up: the recursive oracle (``scrub/_reference.py``) / the executor, N = 1,000; both as shipped
  (the oracle memoises each example's clean run) and the naive recursion the issue describes (one
  model run per tree instance per example: the same oracle with memoisation off, timed on a subset
  of references and scaled to N, which is exact since references are independent);
- scaling: time and peak memory against N and against the number of interpretation nodes, one fresh
  process per point (peak RSS: VmHWM from /proc/self/status);
- sampling: grouping and drawing for 100,000 examples and 50 features, and ``make_plan`` on a 50-node hypothesis;
- forward-pass equivalents (in the overhead section): the executor's time / one plain ``model(tokens)``
  over the same N examples, in the same process: the cost a user feels, independent of the machine;
- gpu (default on ``--device cuda``; ``--only gpu`` elsewhere): GPT-2 small's shape scored at N = 10,000,
  with the peak device memory and the rows per pass chosen from the free device memory;
- pruning (``--only pruning``; also ``python -m benchmarks.positions``): varying target positions, the plan
  size before and after pruning, and the pruned plan's time against a fixed-target plan (see
  :mod:`benchmarks.positions`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from benchmarks.cases import grown_hypothesis, make_case
from benchmarks.measure import Spread, batch_rows, executor_rows, one_thread, plain_forward, timed
from scrub._executor import run_plan
from scrub._plan import make_plan
from scrub._reference import _Oracle
from scrub._sampling import Sampler, evaluate_feature

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_ONLY = ["overhead", "speedup", "scaling", "sampling"]
console = Console()

MODES = {
    "quick": dict(n_small=200, n_gpt2=4, gpt2_seq=16, reps=2, oracle_n=200, naive_refs=10, gpu_n=256,
                  scaling_n=[100, 300, 1000, 3000], scaling_nodes=[2, 10, 25, 50], nodes_n=300, sampling_n=100_000),
    "full": dict(n_small=1000, n_gpt2=16, gpt2_seq=32, reps=3, oracle_n=1000, naive_refs=40, gpu_n=10_000,
                 scaling_n=[100, 1000, 10_000, 100_000], scaling_nodes=[2, 5, 10, 20, 35, 50], nodes_n=1000,
                 sampling_n=100_000),
}


class _Memoryless(dict):
    """A cache that forgets: the oracle then runs the model once per tree instance per reference."""

    def __contains__(self, key) -> bool:
        return False

    def __setitem__(self, key, value) -> None:
        self.clear()
        super().__setitem__(key, value)


def _oracle(model, plan, data, refs, memo: bool) -> None:
    o = _Oracle(model, plan, data)
    if not memo:
        o._clean = _Memoryless()
    with torch.inference_mode():
        for r in refs:
            o.outputs(plan.root, int(r))


def overhead(cfg, device, rows: list) -> None:
    """Executor against plain batched forwards over the same number of rows."""
    for name, n, kw in [("induction", cfg["n_small"], {}), ("paren", cfg["n_small"], {}), ("tracr", cfg["n_small"], {}),
                        ("gpt2", cfg["n_gpt2"], {"seq_len": cfg["gpt2_seq"]})]:
        warm = make_case(name, 8, **kw)
        case = make_case(name, n, **kw)
        model = case.model.to(device)
        plan = make_plan(case.hypothesis, case.graph, case.data, 0, warn=False)
        r = executor_rows(plan, case.data, case.model)
        bs = batch_rows(model, case.data, plan, None)
        run_plan(model, make_plan(warm.hypothesis, warm.graph, warm.data, 0, warn=False), warm.data)  # warm-up
        plain_forward(model, case.data, min(bs, 64), bs)
        ex, base, ratio, fpe = [], [], [], []
        for rep in range(cfg["reps"]):
            steps = [("ex", lambda: run_plan(model, plan, case.data)),
                     ("base", lambda: plain_forward(model, case.data, r["issue_rows"], bs, seed=rep)),
                     ("one", lambda: plain_forward(model, case.data, n, bs, seed=rep, shuffle=False))]
            got = {k: timed(f, device)[0] for k, f in (steps if rep % 2 == 0 else steps[::-1])}
            ex.append(got["ex"]), base.append(got["base"]), ratio.append(got["ex"] / got["base"])
            fpe.append(got["ex"] / got["one"])
        block_ratio = [e / (b * r["block_rows"] / r["issue_rows"]) for e, b in zip(ex, base)]
        common = dict(figure="overhead", case=case.name, n=n, batch_rows=bs, **r)
        rows.append(dict(common, metric="executor_s", **_stats(ex)))
        rows.append(dict(common, metric="plain_forward_s (issue rows)", **_stats(base)))
        rows.append(dict(common, metric="ratio vs issue rows (target <= 1.3)", **_stats(ratio)))
        rows.append(dict(common, metric="ratio vs executor blocks (scaled)", **_stats(block_ratio)))
        rows.append(dict(common, metric="forward-pass equivalents (executor / one plain forward over N)", **_stats(fpe)))
        console.print(f"overhead  {case.name}: ratio {Spread(ratio).fmt()}, forward-pass equivalents {Spread(fpe).fmt()}  ({r})")


def speedup(cfg, device, rows: list) -> None:
    """The recursive oracle against the executor."""
    for name in ("induction", "paren", "tracr"):
        case = make_case(name, cfg["oracle_n"])
        model = case.model.to(device)
        plan = make_plan(case.hypothesis, case.graph, case.data, 0, warn=False)
        run_plan(model, plan, case.data)  # warm-up
        k = cfg["naive_refs"]
        ex, memo, naive, r_memo, r_naive = [], [], [], [], []
        for rep in range(cfg["reps"]):
            e = timed(lambda: run_plan(model, plan, case.data), device)[0]
            m = timed(lambda: _oracle(model, plan, case.data, range(plan.n), True), device)[0]
            refs = np.random.default_rng(rep).choice(plan.n, size=k, replace=False)
            nv = timed(lambda: _oracle(model, plan, case.data, refs, False), device)[0] * plan.n / k
            ex.append(e), memo.append(m), naive.append(nv), r_memo.append(m / e), r_naive.append(nv / e)
        common = dict(figure="speed-up", case=case.name, n=plan.n, instances=len(plan.instances))
        rows.append(dict(common, metric="executor_s", **_stats(ex)))
        rows.append(dict(common, metric="oracle_s (memoised clean runs, as shipped)", **_stats(memo)))
        rows.append(dict(common, metric=f"naive_recursion_s (no memo; {k} refs scaled to N)", **_stats(naive)))
        rows.append(dict(common, metric="speed-up vs oracle as shipped", **_stats(r_memo)))
        rows.append(dict(common, metric="speed-up vs naive recursion (target >= 30)", **_stats(r_naive)))
        console.print(f"speed-up  {case.name}: vs oracle {Spread(r_memo).fmt()}, vs naive recursion {Spread(r_naive).fmt()}")


def gpu(cfg, device, rows: list) -> None:
    """A GPT-2-small-shaped model scored at N = 10,000 (``cfg['gpu_n']``): time, forward-pass
    equivalents, peak device memory, and the batch size chosen from the free memory."""
    from scrub._executor import default_batch_size

    n = cfg["gpu_n"]
    case = make_case("gpt2", n, seq_len=32)
    model = case.model.to(device)
    plan = make_plan(case.hypothesis, case.graph, case.data, 0, warn=False)
    bs = default_batch_size(model, case.data.seq_len)
    run_plan(model, make_plan(case.hypothesis, case.graph, case.data.subset(range(64)), 0, warn=False),
             case.data.subset(range(64)))  # warm-up
    ex, one, peak = [], [], []
    for rep in range(cfg["reps"]):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ex.append(timed(lambda: run_plan(model, plan, case.data), device)[0])
        peak.append(torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan"))
        one.append(timed(lambda: plain_forward(model, case.data, n, min(bs, 4096), shuffle=False), device)[0])
    common = dict(figure="gpu", case=case.name, n=n, batch_rows=bs, instances=len(plan.instances))
    rows.append(dict(common, metric="executor_s", **_stats(ex)))
    rows.append(dict(common, metric="forward-pass equivalents (executor / one plain forward over N)",
                     **_stats([e / o for e, o in zip(ex, one, strict=True)])))
    rows.append(dict(common, metric="peak device memory, MiB", **_stats(peak)))
    rows.append(dict(common, metric="rows per pass (from free device memory)", **_stats([bs])))
    console.print(f"gpu  {case.name} N={n}: {Spread(ex).fmt('s')}, batch {bs} rows, peak {Spread(peak).fmt(' MiB')}")


def _point(spec: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-m", "benchmarks.point", json.dumps(spec)], cwd=root, env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def scaling(cfg, device, rows: list) -> pd.DataFrame:
    """Time and peak memory against N (6-node hypothesis) and against hypothesis size, a process per point."""
    points = []
    for n in cfg["scaling_n"]:
        points.append(dict(sweep="N", case="induction", n=n, nodes=6, reps=1 if n >= 100_000 else cfg["reps"]))
    for k in cfg["scaling_nodes"]:
        points.append(dict(sweep="nodes", case="induction", n=cfg["nodes_n"], nodes=k, reps=cfg["reps"]))
    out = []
    for p in points:
        res = _point({**p, "device": str(device)})
        s = Spread(res["times"])
        out.append(dict(sweep=p["sweep"], n=p["n"], nodes=p["nodes"], instances=res["instances"], time_s=s.median,
                        time_min_s=s.lo, time_max_s=s.hi, reps=len(res["times"]), us_per_reference=1e6 * s.median / p["n"],
                        rss_setup_mb=res["rss_setup_mb"], rss_peak_mb=res["rss_peak_mb"],
                        rss_scrub_mb=res["rss_peak_mb"] - res["rss_setup_mb"], cuda_peak_mb=res.get("cuda_peak_mb"),
                        **{k: res[k] for k in ("issue_rows", "block_rows", "forward_rows", "n_blocks")}))
        console.print(f"scaling   {p['sweep']}: N={p['n']} nodes={p['nodes']}: {s.fmt('s')}, peak RSS {res['rss_peak_mb']:.0f} MB")
    df = pd.DataFrame(out)
    ns = df[df.sweep == "N"]
    slope = np.polyfit(np.log(ns.n), np.log(ns.time_s), 1)[0]
    rows.append(dict(figure="scaling", case="induction (6 nodes)", metric="log-log slope of time in N (1 = linear)",
                     median=slope, min=slope, max=slope, reps=1))
    return df


def sampling(cfg, rows: list) -> None:
    """Grouping and drawing agreeing examples, on its own."""
    n = cfg["sampling_n"]
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 64, (n, 24), generator=gen)
    from scrub import Dataset, ModelGraph

    data = Dataset(tokens, tokens[:, -1])
    feats = [lambda d, j=j, k=k: d.tokens[:, j] % k for j, k in zip(np.arange(50) % 24, 2 + np.arange(50) % 30)]
    rng = np.random.default_rng(0)
    group, draw, plan_t = [], [], []
    h = grown_hypothesis(ModelGraph.build(2, 4, attn_only=True), 24, 50)
    for _ in range(cfg["reps"]):
        t, samplers = timed(lambda: [Sampler(evaluate_feature(f, data), n) for f in feats], "cpu")
        group.append(t)
        draw.append(timed(lambda: [s.draw(np.arange(n), rng) for s in samplers], "cpu")[0])
        plan_t.append(timed(lambda: make_plan(h, ModelGraph.build(2, 4, attn_only=True), data, 0, warn=False), "cpu")[0])
    common = dict(figure="sampling", case=f"{n} examples, 50 features", n=n)
    rows.append(dict(common, metric="group (evaluate + sort) 50 features, s", **_stats(group)))
    rows.append(dict(common, metric="draw 50 x N agreeing examples, s", **_stats(draw)))
    rows.append(dict(common, metric="make_plan, 50-node hypothesis, s", **_stats(plan_t)))
    console.print(f"sampling  group {Spread(group).fmt('s')}, draw {Spread(draw).fmt('s')}, make_plan {Spread(plan_t).fmt('s')}")


def _stats(values) -> dict:
    s = Spread(list(values))
    return dict(median=s.median, min=s.lo, max=s.hi, q1=s.iqr[0], q3=s.iqr[1], reps=len(s.values))


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    for col, sweep, xlab in [(0, "N", "examples N (6-node hypothesis)"), (1, "nodes", "interpretation nodes")]:
        d = df[df.sweep == sweep]
        x = d.n if sweep == "N" else d.nodes
        ax[0, col].errorbar(x, d.time_s, yerr=[d.time_s - d.time_min_s, d.time_max_s - d.time_s], marker="o", capsize=3)
        if sweep == "N":
            ax[0, col].plot(x, d.time_s.iloc[-1] * x / x.iloc[-1], "--", color="grey", label="linear")
            ax[0, col].set_xscale("log"), ax[0, col].set_yscale("log"), ax[0, col].legend()
            ax[1, col].set_xscale("log")
        ax[0, col].set(xlabel=xlab, ylabel="executor wall time (s), median [min, max]")
        ax[1, col].plot(x, d.rss_peak_mb, marker="o", label="peak RSS")
        ax[1, col].plot(x, d.rss_setup_mb, marker=".", ls=":", label="RSS before scrubbing")
        ax[1, col].set(xlabel=xlab, ylabel="MB"), ax[1, col].legend()
    fig.suptitle("scrub executor scaling (induction model, 1 thread)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small N, few repeats (~2 minutes)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--only", nargs="*", default=DEFAULT_ONLY,
                    help="sections: overhead speedup scaling sampling pruning gpu (gpu runs by default on --device cuda)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results[/quick])")
    args = ap.parse_args(argv)
    one_thread()
    cfg = MODES["quick" if args.quick else "full"]
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    env = dict(device=torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
               torch=torch.__version__, threads=torch.get_num_threads(), mode="quick" if args.quick else "full")
    t0 = time.perf_counter()
    rows: list = []
    if "overhead" in args.only:
        overhead(cfg, device, rows)
    if "speedup" in args.only:
        speedup(cfg, device, rows)
    if "scaling" in args.only:
        df = scaling(cfg, device, rows)
        df.to_csv(out / "scaling.csv", index=False)
        plot(df, out / "scaling.png")
    if "sampling" in args.only:
        sampling(cfg, rows)
    if "gpu" in args.only or (device.type == "cuda" and "gpu" not in args.only and args.only == DEFAULT_ONLY):
        gpu(cfg, device, rows)
    if "pruning" in args.only:
        from benchmarks.positions import pruning

        pruning(cfg["n_small"], cfg["reps"], device, rows, console.print)
    summary = pd.DataFrame(rows).assign(**env)
    summary.to_csv(out / "summary.csv", index=False)
    table = Table(title=f"scrub benchmarks ({env['mode']}; {env['device']}; torch {env['torch']}; {env['threads']} thread)")
    for c in ("figure", "case", "metric", "median", "min..max", "reps"):
        table.add_column(c)
    md = ["| figure | case | metric | median | min..max | reps |", "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["figure"], r["case"], r["metric"], f"{r['median']:.3g}", f"{r['min']:.3g}..{r['max']:.3g}", str(r["reps"])]
        table.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    console.print(table)
    (out / "summary.md").write_text(
        f"# scrub benchmarks\n\n`python -m benchmarks.run{' --quick' if args.quick else ''}`; device {env['device']}, "
        f"torch {env['torch']}, {env['threads']} thread, {time.perf_counter() - t0:.0f} s in all.\n\n" + "\n".join(md) + "\n")
    console.print(f"wrote {out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
