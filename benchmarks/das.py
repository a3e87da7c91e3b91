"""DAS on two ground truths: fit time, overlap with the known subspace, held-out scores, controls.

    OMP_NUM_THREADS=1 python -m benchmarks.das            # writes benchmarks/results/das.csv

Cases:

- ``tracr_sort``: the compiled ``sort`` program; the site is the residual entering layer 1 at the
  input positions, the variable each token's rank (``hypotheses.tracr.das``), ``k = 4``.
- ``iit_carry``: the interchange-intervention-trained addition model; the site is the residual
  entering layer 1 at ``=``, the variable the carry, ``k = 1`` (``hypotheses.iit_carry``).

Per case: :func:`scrub.das` (one thread, seed 0, controls on) on a training set (``fit_seconds``:
wall time of the fit alone; ``cpu_seconds_with_controls``: process CPU time of the call); the cosines of
the principal angles between the learned and the known subspace; and :func:`scrub.run` on fresh
data (another data seed) of the subspace hypothesis with the learned, the known, a wrong (another
variable's dimensions) and a random subspace; for ``iit_carry`` also against the baseline that
claims the digits but not the carry (``digits_only``), so that the score is the carry's share.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

import scrub

RESULTS = Path(__file__).with_name("results") / "das.csv"


def _random_subspace(d: int, k: int, seed: int) -> scrub.Subspace:
    g = torch.Generator().manual_seed(seed)
    return scrub.Subspace.span(torch.randn(d, k, generator=g, dtype=torch.float64), name=f"random k={k}")


def _known_loss(model, data, fit, known, variable, counterfactual, positions) -> float:
    """The DAS objective of the known subspace on the fit's own held-out pairs (same split and seed)."""
    from scrub._architecture import Architecture
    from scrub._das import _Fit, _site_mask, _split, _variable_values

    train_idx, test_idx = _split(len(data), 0.25, fit.seed)
    f = _Fit(model, Architecture.of(model), data, fit.layer, _site_mask(positions, data),
             _variable_values(variable, data), counterfactual, train_idx, test_idx, fit.seed, n_pairs=512)
    with torch.no_grad():
        return f.score(known.basis.float())[1]


def tracr_sort(n: int = 600, steps: int = 1500) -> dict:
    from hypotheses import tracr as zoo
    from hypotheses.tracr import das as sd
    from hypotheses.tracr.hypotheses import metric

    model = zoo.load_model(sd.PROGRAM)
    data = zoo.make_data(sd.PROGRAM, n, seed=0, target_pos="random")
    cpu = time.process_time()
    fit = scrub.das(model, data, layer=sd.LAYER, k=sd.K, positions=sd.POSITIONS, variable=sd.variable,
                    counterfactual=sd.counterfactual, seed=0, steps=steps, lr=0.02)
    cpu = time.process_time() - cpu
    held = zoo.make_data(sd.PROGRAM, 400, seed=7, target_pos="random")
    subspaces = {"learned": fit.subspace, "known": sd.true_subspace(), "wrong (tokens dims)": sd.sop_subspace("tokens"),
                 "random": _random_subspace(27, sd.K, 1)}
    scores = {k: scrub.run(model, sd.hypothesis(s), held, metric=metric(sd.PROGRAM), seed=0).loss_recovered
              for k, s in subspaces.items()}
    known = _known_loss(model, data, fit, sd.true_subspace(), sd.variable, sd.counterfactual, sd.POSITIONS)
    return {"fit": fit, "cos": scrub.principal_cosines(fit.subspace, sd.true_subspace()), "scores": scores,
            "known_loss": known, "cpu": cpu}


def iit_carry(n: int = 2000, steps: int = 1500) -> dict:
    from hypotheses import iit_carry as zoo
    from hypotheses.iit_carry.hypotheses import carry_hypothesis, digits_only

    model = zoo.load_model()
    data = zoo.make_data(n, seed=0)
    cpu = time.process_time()
    fit = scrub.das(model, data, layer=zoo.LAYER, k=1, positions=[zoo.POSITION], variable=zoo.carry,
                    counterfactual=zoo.counterfactual, seed=0, steps=steps, lr=0.02)
    cpu = time.process_time() - cpu
    held = zoo.make_data(1000, seed=7)
    d = zoo.CONFIG["d_model"]
    subspaces = {"learned": fit.subspace, "known": zoo.carry_subspace(),
                 "wrong (e1)": scrub.Subspace(torch.eye(d, dtype=torch.float64)[:, 1:2], name="e1"),
                 "random": _random_subspace(d, 1, 1)}
    scores = {k: scrub.run(model, carry_hypothesis(s), held, seed=0).loss_recovered for k, s in subspaces.items()}
    scores.update({f"{k} vs digits-only": scrub.run(model, carry_hypothesis(s), held, seed=0,
                                                     baseline=digits_only()).loss_recovered
                   for k, s in subspaces.items()})
    known = _known_loss(model, data, fit, zoo.carry_subspace(), zoo.carry, zoo.counterfactual, [zoo.POSITION])
    return {"fit": fit, "cos": scrub.principal_cosines(fit.subspace, zoo.carry_subspace()), "scores": scores,
            "known_loss": known, "cpu": cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=["tracr_sort", "iit_carry"])
    args = parser.parse_args(argv)
    rows = []
    for case in args.cases:
        t0 = time.perf_counter()
        out = {"tracr_sort": tracr_sort, "iit_carry": iit_carry}[case]()
        fit = out["fit"]
        print(f"== {case} ({time.perf_counter() - t0:.1f} s)\n{fit}")
        cos = out["cos"]
        print(f"  principal cosines with the known subspace: {[round(float(c), 4) for c in cos]}")
        print(f"  held-out DAS loss: learned {fit.held_out_loss:.4f}, known {out['known_loss']:.4f}")
        print(f"  scrub.run loss recovered (held-out data): {({k: round(v, 4) for k, v in out['scores'].items()})}")
        row = {"case": case, "k": fit.k, "steps": fit.steps, "fit_seconds": round(fit.fit_seconds, 2),
               "cpu_seconds_with_controls": round(out["cpu"], 2),
               "held_out_iia": round(fit.accuracy, 4), "min_cosine": round(float(cos.min()), 4),
               "mean_cosine": round(float(cos.mean()), 4)}
        row["held_out_das_loss"] = round(fit.held_out_loss, 4)
        row["known_das_loss"] = round(out["known_loss"], 4)
        row.update({f"control {c['control']}": round(c["accuracy"], 4) for c in fit.controls.to_dict("records")})
        row.update({f"chance {c['control']}": round(c["chance"], 4) for c in fit.controls.to_dict("records")})
        row.update({f"scrub {k}": round(v, 4) for k, v in out["scores"].items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    RESULTS.parent.mkdir(exist_ok=True)
    frame.to_csv(RESULTS, index=False)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
