"""The architecture matrix, measured: how exactly scrub reproduces each supported architecture.

    python -m benchmarks.architectures      # writes benchmarks/results/architectures.csv (~1 minute)

For each model of the test matrix (``tests/architectures.py``: tiny random models, 2 layers,
d_model 32, 4 heads, built offline) it records:

- ``exact_err``: the largest |logit difference| between the all-Exact hypothesis (every path
  claimed, every node recomputed from patched inputs) and the model's own forward pass;
- ``oracle_err``: the largest |logit difference| between the batched executor and the recursive
  oracle over 20 random hypotheses (the oracle computes heads by overwriting the projections' inputs);
- ``instances``: the largest plan among those hypotheses;
- ``graph``: the graph's inputs, whether blocks are parallel, and attention node granularity.

The documentation's architecture table joins these figures to :func:`scrub.supported_architectures`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import scrub
from scrub._executor import run_plan
from scrub._reference import run_reference

OUT = Path(__file__).resolve().parent / "results" / "architectures.csv"


def measure(n_hypotheses: int = 20) -> pd.DataFrame:
    from tests.architectures import BUILDERS
    from tests.test_architectures import claim_everything, dataset
    from tests.test_oracle import random_hypothesis

    rows = []
    for name, build in BUILDERS.items():
        model = build()
        graph = scrub.ModelGraph.from_model(model)
        data = dataset(1)
        h = scrub.Hypothesis("everything")
        claim_everything(h.output(), ["out"], graph, scrub.Exact())
        with torch.no_grad():
            own = model(data.tokens)[:, -1].float()
        exact = (run_plan(model, scrub.internal.make_plan(h, graph, data, seed=0), data) - own).abs().max().item()
        worst, size = 0.0, 0
        for k in range(n_hypotheses):
            rng = np.random.default_rng(1000 + k)
            d = dataset(k, n=6)
            plan = scrub.internal.make_plan(random_hypothesis(rng, graph, d, max_nodes=5), graph, d, seed=k, warn=False)
            worst = max(worst, (run_plan(model, plan, d) - run_reference(model, plan, d)).abs().max().item())
            size = max(size, len(plan.instances))
        kind = "whole layers" if graph.whole_layers else "heads"
        rows.append({
            "model": name, "architecture": name.split("/")[0], "exact_err": exact, "oracle_err": worst,
            "instances": size,
            "graph": f"inputs {'+'.join(graph.inputs)}; {'parallel' if graph.parallel else 'sequential'}; {kind}",
        })
    return pd.DataFrame(rows)


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    table = measure()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT, index=False, float_format="%.2e")
    print(table.to_string(index=False))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
