"""Measure the Llama induction ladder: ``python -m hypotheses.llama_induction.calibrate``.

``--pairs``: run every suite case at the suite's size on (data seed, sampling seed) pairs (1234, 0)
and (k, k) for k = 1.. and print each case's scores and the range ``mean +- max(5 sd, 0.03)``
rounded outwards to 0.01 (how ``suite.py``'s ``expected`` were set). ``--headline N``: every case
once on ``make_data(N, seed=1234)`` with sampling seed 0, with its 95% bootstrap interval (the
figures in the cases' notes). All hypotheses of one run share one clean run and one baseline
(:func:`scrub.run_many`).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import scrub
from hypotheses.llama_induction import load, make_data
from hypotheses.llama_induction.suite import CASES, DATA_SEED, N, N_SEEDS

__all__ = ["main", "suite_range"]


def suite_range(scores: list[float], floor: float = 0.03) -> tuple[float, float]:
    """``mean +- max(5 sd, floor)``, rounded outwards to 0.01."""
    mean = statistics.fmean(scores)
    half = max(5 * statistics.stdev(scores), floor) if len(scores) > 1 else floor
    return math.floor((mean - half) * 100) / 100, math.ceil((mean + half) * 100) / 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=0, help="number of (data seed, sampling seed) pairs")
    parser.add_argument("--headline", type=int, default=0, help="N for the headline figures")
    args = parser.parse_args(argv)
    model = load()
    hypotheses = [c.hypothesis() for c in CASES]
    if args.headline:
        t0 = time.perf_counter()
        results = scrub.run_many(model, hypotheses, make_data(args.headline, DATA_SEED), seed=0, n_seeds=1, progress=False)
        print(f"headline N={args.headline}, 1 seed, data seed {DATA_SEED} ({time.perf_counter() - t0:.0f} s); "
              f"model loss {results[0].loss_model:.4f}, baseline {results[0].loss_baseline:.4f}")
        for case, r in zip(CASES, results):
            print(f"{case.name:40s} {100 * r.loss_recovered:6.1f}% ({100 * r.ci[0]:.1f}..{100 * r.ci[1]:.1f})", flush=True)
    if args.pairs:
        pairs = [(DATA_SEED, 0)] + [(k, k) for k in range(1, args.pairs)]
        scores: dict[str, list[float]] = {c.name: [] for c in CASES}
        for data_seed, seed in pairs:
            t0 = time.perf_counter()
            results = scrub.run_many(model, hypotheses, make_data(N, data_seed), seed=seed, n_seeds=N_SEEDS, progress=False)
            for case, r in zip(CASES, results):
                scores[case.name].append(r.loss_recovered)
            print(f"pair ({data_seed}, {seed}) done ({time.perf_counter() - t0:.0f} s): "
                  + " ".join(f"{s[-1]:.3f}" for s in scores.values()), flush=True)
        for name, s in scores.items():
            print(f"{name:40s} " + " ".join(f"{v:.3f}" for v in s) + f"  mean {statistics.fmean(s):.3f}  range {suite_range(s)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
