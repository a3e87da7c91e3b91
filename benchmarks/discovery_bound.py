"""What a tenth of ACDC's cost buys: the passes of one scrub run of the known answer, against ACDC's.

Any discovery whose answer is scored by causal scrubbing pays at least one scored run of that
answer (with the clean run and the baseline it is a fraction of). This script measures that floor
on the zoo, in forward passes (rows run forward over the search split's size, counted, not
timed), next to the passes ACDC takes on the same split. Where the floor is above a tenth of
ACDC's passes, no scrub-verified search can meet the "a tenth of ACDC's cost" goal on that model.
Writes ``benchmarks/results/discovery_bound.csv`` and ``.md``.

    OMP_NUM_THREADS=1 python -m benchmarks.discovery_bound      # about two minutes on one core
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import scrub
from scrub._acdc import acdc
from scrub._attribution import PassCounter, edges_of
from scrub._discover import _split, claimed_edges, hypothesis_from_edges

RESULTS = Path(__file__).resolve().parent / "results"
N = 400  # as benchmarks.discovery: the search split is half of it


def _row(name: str, model, data, metric, truth: set) -> dict:
    search, _ = _split(data, 0.5, 0)
    graph = scrub.ModelGraph.from_model(model)
    answer = hypothesis_from_edges(graph, truth, name=f"{name} answer")
    with PassCounter(model) as counter:
        r = scrub.run(model, answer, search, metric=metric, seed=0, n_boot=100)
    one_run = counter.passes(len(search))
    a = acdc(model, search, metric=metric, tau=0.01)
    return {"model": name, "n_edges_graph": len(edges_of(graph)), "n_edges_answer": len(truth),
            "acdc_passes": a.forward_passes, "tenth_of_acdc": a.forward_passes / 10,
            "one_scrub_run_passes": one_run, "answer_score": r.loss_recovered,
            "floor_over_tenth": one_run / (a.forward_passes / 10)}


def main() -> None:
    from hypotheses import induction as ind
    from hypotheses import paren as pz
    from hypotheses import tracr as zoo
    from hypotheses.induction.hypotheses import naive
    from hypotheses.paren.hypotheses import claim_1_2_3
    from hypotheses.tracr import extra
    from hypotheses.tracr.hypotheses import metric, true_hypothesis

    rows = []
    for name in zoo.PROGRAMS:
        model = zoo.load_model(name)
        data = zoo.make_data(name, N, seed=0, target_pos="random")
        truth = claimed_edges(true_hypothesis(name), scrub.ModelGraph.from_model(model))
        rows.append(_row(f"tracr/{name}", model, data, metric(name), truth))
        print(rows[-1], flush=True)
    for name in extra.EXTRA:
        model, spec, data = extra.load(name)
        truth = claimed_edges(true_hypothesis(spec), scrub.ModelGraph.from_model(model))
        rows.append(_row(f"tracr extra/{name}", model, data, metric(spec), truth))
        print(rows[-1], flush=True)
    for name, module, hyp in (("induction", ind, naive()), ("paren", pz, claim_1_2_3())):
        model = module.load_model()
        data = module.make_data(N, seed=0)
        truth = claimed_edges(hyp, scrub.ModelGraph.from_model(model))
        rows.append(_row(name, model, data, "loss", truth))
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "discovery_bound.csv", index=False, float_format="%.4g")
    lines = ["# One scrub run of the answer against a tenth of ACDC's passes", "",
             f"N = {N} (search split {N // 2}); written by `python -m benchmarks.discovery_bound`.", "",
             "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r) + " |"
              for r in table.itertuples(index=False)]
    (RESULTS / "discovery_bound.md").write_text("\n".join(lines) + "\n")
    print(table.to_string())


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
