"""Executor against oracle on random hypotheses using every node kind: the maximum disagreement.

    python -m benchmarks.variables            # 200 hypotheses (resampling), 100 under each ablation (~6 min, one thread)
    python -m benchmarks.variables --n 20     # a quick look

Each seed draws a random small model (1-3 layers, attention-only or not, LN or none, causal or
bidirectional, sometimes padded data) and a random hypothesis over heads, MLPs, neuron sets,
residual sites, subspaces, positions and claims fixed to a mean or zero
(:func:`tests.test_variables.random_variables_hypothesis`), and compares the batched executor with
the recursive oracle on 8 references: under resampling (causal scrubbing), and under
``ablation=scrub.Mean()`` and ``scrub.Zero()`` on half as many seeds. Prints the maximum absolute
logit difference of each and how many nodes of each kind the hypotheses held.
"""

from __future__ import annotations

import argparse
import collections
import os
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    import numpy as np
    import torch

    import scrub
    from scrub.internal import make_plan, run_plan, run_reference
    from tests.test_oracle import random_data, random_model
    from tests.test_variables import random_variables_hypothesis

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="random hypotheses under resampling (half as many per ablation)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    kinds: collections.Counter[str] = collections.Counter()
    worst = {"resampling": 0.0, "mean": 0.0, "zero": 0.0}
    for seed in range(args.n):
        rng = np.random.default_rng(seed)
        model = random_model(rng)
        graph = scrub.ModelGraph.from_model(model)
        data = random_data(rng, mask=model.cfg.attention_dir == "bidirectional" and rng.random() < 0.7)
        h = random_variables_hypothesis(rng, graph, data, int(model.cfg.d_model))
        for node in h.nodes()[1:]:
            kind = "site" if graph.is_site(node.model[0]) else "neuron set" if node.neurons else "component"
            kinds[kind + (" with children" if node.children else "")] += 1
            kinds["with subspace"] += node.subspace is not None
            kinds["with positions"] += node.positions is not None
            kinds["fixed to mean/zero"] += isinstance(node.agree, (scrub.Mean, scrub.Zero))
        plan = make_plan(h, graph, data, seed=seed, warn=False)
        runs = [("resampling", None)] + ([("mean", scrub.Mean()), ("zero", scrub.Zero())] if seed % 2 == 0 else [])
        for name, ablation in runs:
            fast = run_plan(model, plan, data, ablation=ablation)
            slow = run_reference(model, plan, data, ablation=ablation)
            worst[name] = max(worst[name], (fast - slow).abs().max().item())
    print(f"{args.n} random hypotheses; max |executor - oracle| over the logits:")
    for name, err in worst.items():
        print(f"  {name:10s} {err:.2e}")
    print("nodes:", dict(kinds))


if __name__ == "__main__":
    main()
