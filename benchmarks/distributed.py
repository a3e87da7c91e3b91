"""What scoring on Ray costs: the overhead per task, and a whole call against the same call run here.

``python -m benchmarks.distributed`` starts a local Ray cluster (``--cpus``, default 2) and writes
``benchmarks/results/distributed.csv``:

- **per task**: one chunk of references of the zoo's induction model (naive hypothesis, 51
  instances) run as a Ray task on a warm worker (model, data and plan already deserialised there),
  one task at a time, minus the same chunk run here with ``run_plan(chunks=)``: what Ray adds to
  every task (scheduling, the call, sending the logits back). Medians over ``--reps`` tasks.
- **first task of a call**: the same, for the first task that reads a newly put model, data and
  plan (the worker deserialises them): what every ``run_many`` call adds once per worker.
- **per call**: ``scrub.run_many`` of ``--hypotheses`` variants on ``--cpus`` workers against the
  same call run here on one thread (wall seconds; their ratio is the speed-up, below the worker
  count by the overhead).

Everything runs on one thread per process. The distributed results are checked equal to the local
ones (``torch.equal`` on the per-example losses) before anything is written.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch

import scrub
from benchmarks.measure import one_thread
from scrub._executor import n_blocks, plan_chunks, run_plan
from scrub._graph import ModelGraph
from scrub._plan import make_plan

OUT = Path(__file__).parent / "results" / "distributed.csv"
ROOT = Path(__file__).resolve().parents[1]


def _variants(k: int) -> list[scrub.Hypothesis]:
    from benchmarks.sweep import variants

    return variants(k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="examples")
    ap.add_argument("--chunk", type=int, default=20, help="references per chunk (per task in the per-task figure)")
    ap.add_argument("--reps", type=int, default=20, help="tasks timed one at a time")
    ap.add_argument("--hypotheses", type=int, default=8, help="hypotheses of the per-call figure")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local cluster (one worker each)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    one_thread()
    warnings.filterwarnings("ignore", message="Moving model")
    import ray

    from hypotheses.induction import load_model, make_data
    from hypotheses.induction.hypotheses import naive
    from scrub._distributed import _run_chunks

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    startup = time.perf_counter() - t0
    model, data = load_model(), make_data(args.n, seed=1234)
    plan = make_plan(naive(), ModelGraph.from_model(model), data, 0)
    batch = args.chunk * n_blocks(plan, data)  # exactly `chunk` references per pass
    n_chunks = len(plan_chunks(model, plan, data, batch_size=batch))
    task = ray.remote(_run_chunks).options(num_cpus=1)
    rows = []

    env = {"device": f"cpu ({platform.machine()}, {os.cpu_count()} cores)", "torch": torch.__version__, "threads": 1,
           "ray": ray.__version__, "workers": args.cpus}

    def row(metric: str, values: list[float], case: str = f"induction (naive), {args.chunk} references per task") -> None:
        rows.append({"figure": "distributed", "case": case, "n": args.n, "metric": metric,
                     "median": statistics.median(values), "min": min(values), "max": max(values), "reps": len(values),
                     **env})

    def local(k: int) -> float:
        t = time.perf_counter()
        run_plan(model, plan, data, batch_size=batch, chunks=slice(k, k + 1))
        return time.perf_counter() - t

    def remote(refs, k: int) -> tuple[float, torch.Tensor]:
        t = time.perf_counter()
        out = ray.get(task.remote(refs, k, k + 1, {"batch_size": batch, "threads": 1, "ablation": None}))
        return time.perf_counter() - t, out

    firsts, here, there = [], [], []
    for rep in range(5):  # a new call each time: the model, data and plan are put again
        refs = [ray.put(model), ray.put(data), ray.put(plan)]
        if rep == 0:
            remote(refs, 0)  # the worker starts and imports scrub: not a per-call cost
            refs = [ray.put(model), ray.put(data), ray.put(plan)]
        t, _ = remote(refs, 0)
        firsts.append(t - local(0))
        for r in range(args.reps):
            k = r % n_chunks
            t, out = remote(refs, k)
            assert torch.equal(out, run_plan(model, plan, data, batch_size=batch, chunks=slice(k, k + 1)))
            there.append(t)
            here.append(local(k))
    row("local chunk: run_plan(chunks=) here (s)", here)
    row("ray task, warm worker, same chunk (s)", there)
    row("overhead per task: median ray task - median local chunk (s)",
        [statistics.median(there) - statistics.median(here)])
    row("first task of a call, minus local: deserialising model, data, plan (s)", firsts)
    row("cluster start: ray.init of a local cluster (s)", [startup])

    hs = _variants(args.hypotheses)
    opts = scrub.RunOptions(seed=0, progress=False)
    scrub.run_many(model, hs[:2], data, options=opts.replace(ray="auto"))  # every worker started and warm
    calls_here, calls_there = [], []
    for _ in range(2):
        t = time.perf_counter()
        a = scrub.run_many(model, hs, data, options=opts)
        calls_here.append(time.perf_counter() - t)
        t = time.perf_counter()
        b = scrub.run_many(model, hs, data, options=opts.replace(ray="auto"))
        calls_there.append(time.perf_counter() - t)
        for x, y in zip(a, b, strict=True):
            assert torch.equal(torch.tensor(x.per_example.to_numpy()), torch.tensor(y.per_example.to_numpy()))
    case = f"induction, run_many of {len(hs)} variants (benchmarks.sweep)"
    row("run_many here, 1 thread (s)", calls_here, case)
    row(f"run_many on ray, {args.cpus} workers (s)", calls_there, case)
    row("speed-up: here / ray", [h / t for h, t in zip(calls_here, calls_there, strict=True)], case)
    ray.shutdown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        print(f"{r['metric']:<72} {r['median']:.4g} [{r['min']:.4g}..{r['max']:.4g}] x{r['reps']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
