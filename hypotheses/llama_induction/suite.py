"""The Llama induction entry of the zoo as a regression suite: the hypothesis ladder with expected scores.

Every case runs on the committed model and ``make_data(300, seed=1234)`` with sampling seed 0
(N=300, 1 seed: this model runs through the HuggingFace modules, several times slower than the
native induction model). Each case's notes give the figure measured at N=1000 with 1 seed (fraction
of loss recovered, 95% bootstrap CI).

How ``expected`` was chosen: each case was run at its own size (N=300, 1 seed) on 4 (data seed,
sampling seed) pairs, (1234, 0) and (k, k) for k = 1..7; the range is ``mean +- max(5 sd, 0.03)``
over those 8 runs, rounded outwards to 0.01 (``python -m hypotheses.llama_induction.calibrate --pairs 8``).
"""

from __future__ import annotations

from scrub.suite import Case
from hypotheses.llama_induction import load, make_data
from hypotheses.llama_induction.hypotheses import (
    false_mlps_unused, false_qk_swapped, false_wrong_prev_head, naive, path_k, path_q, path_v, refined,
)

__all__ = ["CASES", "N", "N_SEEDS", "DATA_SEED"]

N: int = 300
N_SEEDS: int = 1
DATA_SEED: int = 1234

#: (name, hypothesis, kind, expected, notes)
_LADDER = [
    ("naive", naive, "true", (0.58, 0.76),
     "embed->Q current token, a0.3->K previous tokens, embed->V tokens, into a1.0/a1.1/a1.3, directly and via m1; "
     "N=1000: 67.9% (66.4..69.3); below 95%: Q also reads the layer-0 heads and m0, the refined case claims them"),
    ("refined", refined, "refined", (0.96, 1.03),
     "naive + all of layer 0 (embed, heads, m0) into Q agree on the current token; embed, a0.0-a0.2, m0 carry "
     "each key's token into K and V; N=1000: 98.9% (98.5..99.4)"),
    ("path_q", path_q, "path", (0.08, 0.21), "only embed->Q claimed (K, V random); N=1000: 15.4% (14.2..16.7)"),
    ("path_k", path_k, "path", (0.07, 0.22), "only a0.3->K claimed (Q, V random); N=1000: 15.7% (14.5..17.0)"),
    ("path_v", path_v, "path", (0.12, 0.26), "only embed->V claimed (Q, K random); N=1000: 19.4% (17.8..20.9)"),
    ("false_wrong_prev_head", false_wrong_prev_head, "false", (0.13, 0.28),
     "a0.0 named as the previous-token head; N=1000: 21.7% (20.3..23.1)"),
    ("false_qk_swapped", false_qk_swapped, "false", (0.11, 0.26),
     "a0.3->Q previous token, embed->K key tokens; N=1000: 20.4% (18.7..21.9)"),
    ("false_mlps_unused", false_mlps_unused, "false", (0.28, 0.39),
     "the attention-only textbook circuit: m0 and m1 resampled; N=1000: 34.2% (33.1..35.4)"),
]


def _case(name: str, hypothesis, kind: str, expected: tuple[float, float], notes: str) -> Case:
    return Case(f"llama_induction/{name}", model=load, data=make_data, hypothesis=hypothesis, expected=expected,
                kind=kind, n=N, n_seeds=N_SEEDS, data_seed=DATA_SEED, notes=notes, tags=("llama", "rotary", "gqa"))


CASES: list[Case] = [_case(*row) for row in _LADDER]
