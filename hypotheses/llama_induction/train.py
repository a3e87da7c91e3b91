"""Train the Llama induction model: ``python -m hypotheses.llama_induction.train``.

A 2-layer ``transformers.LlamaForCausalLM`` built from :data:`HF_CONFIG` (rotary, RMSNorm, gated
MLP, 4 query heads over 2 key/value heads, no biases) is trained from a fixed seed on random
sequences with a repeated segment (:func:`train_batch`), then checked through the bridge: the best
layer-0 head must have a previous-token score >= 0.4 and the best layer-1 head an induction score
>= 0.5, or the script exits non-zero without writing weights. On success it writes
``hypotheses/llama_induction/model.safetensors``: the HuggingFace state dict, with the
``LlamaConfig`` dict and the training record in the header.

Trains the HuggingFace model itself (no hooks) on one CPU thread with deterministic algorithms, so
the weights depend only on the seed and the step count, not on the machine's core count.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from hypotheses.induction.heads import head_scores
from hypotheses.induction.train import evaluate as _evaluate
from hypotheses.induction.train import fit, one_thread_deterministic
from hypotheses.llama_induction.data import TrainBatches, hf_config, make_data
from scrub._checkpoint import weights_hash

__all__ = ["build", "train", "evaluate", "save", "main", "MIN_PREV_TOKEN", "MIN_INDUCTION", "SEED", "STEPS"]

WEIGHTS_PATH = Path(__file__).with_name("model.safetensors")
MIN_PREV_TOKEN: float = 0.4
MIN_INDUCTION: float = 0.5
#: The seed and step count of the committed weights.
SEED: int = 0
STEPS: int = 2000


def build(seed: int = SEED):
    """A fresh ``LlamaForCausalLM`` from :func:`hf_config`, its weights drawn from ``seed``."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(hf_config())


def train(seed: int = SEED, steps: int = STEPS, batch: int = 128, lr: float = 1e-3, weight_decay: float = 0.01,
          log_every: int = 250) -> tuple[Any, float]:
    """Train a fresh model from ``seed``; returns ``(hf_model, final_loss)`` (eval mode).

    ``final_loss`` is the mean training loss over the last 100 steps (all positions). Runs on one
    thread with deterministic algorithms (both restored afterwards), with the induction entry's loop.
    """
    with one_thread_deterministic():
        model = build(seed)
        return fit(model, TrainBatches(seed, batch), steps=steps, lr=lr, weight_decay=weight_decay,
                   log_every=log_every, logits_of=lambda m, t: m(input_ids=t).logits)


def evaluate(model, n: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean cross-entropy and accuracy at the target position of this entry's ``make_data(n, seed)``
    (``model``: the HuggingFace model or a bridge)."""
    return _evaluate(model, n, seed, data=make_data)


def save(hf_model, path: str | Path, **metadata: Any) -> None:
    """Write ``hf_model``'s state dict as safetensors, with its ``LlamaConfig`` dict (``llama_config``)
    and ``metadata`` (``metadata``) as JSON in the header."""
    config = hf_model.config.to_dict()
    config.pop("transformers_version", None)
    state = {k: v.detach().contiguous().cpu() for k, v in hf_model.state_dict().items()}
    header = {"llama_config": json.dumps(config, sort_keys=True), "metadata": json.dumps(metadata, sort_keys=True)}
    save_file(state, str(path), metadata=header)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    from hypotheses.llama_induction import bridge

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    hf_model, final_loss = train(seed=args.seed, steps=args.steps)
    elapsed = time.perf_counter() - t0
    model = bridge(copy.deepcopy(hf_model))  # the bridge wraps the modules it is given; save the untouched one
    scores = head_scores(model, seed=0)
    best_prev = max((v, k) for k, v in scores["prev_token"].items() if k.startswith("a0."))
    best_ind = max((v, k) for k, v in scores["induction"].items() if k.startswith("a1."))
    ev = evaluate(hf_model)
    print(f"trained {args.steps} steps in {elapsed:.1f} s, final loss {final_loss:.4f}")
    for role in ("prev_token", "induction"):
        print(f"{role:10s} " + "  ".join(f"{k} {v:.3f}" for k, v in scores[role].items()))
    print(f"best layer-0 previous-token head {best_prev[1]}: {best_prev[0]:.3f}")
    print(f"best layer-1 induction head {best_ind[1]}: {best_ind[0]:.3f}")
    print(f"make_data(2000): loss {ev['loss']:.4f}, accuracy {ev['accuracy']:.4f}")
    print(f"weights sha256 {weights_hash(hf_model)}")
    if best_prev[0] < MIN_PREV_TOKEN or best_ind[0] < MIN_INDUCTION:
        print(f"FAILED: no induction circuit (need previous-token >= {MIN_PREV_TOKEN}, "
              f"induction >= {MIN_INDUCTION}); weights not written", file=sys.stderr)
        return 1
    save(
        hf_model, args.out, seed=args.seed, steps=args.steps, final_loss=round(final_loss, 6),
        head_scores={role: {k: round(v, 4) for k, v in s.items()} for role, s in scores.items()},
        eval_loss=round(ev["loss"], 6), eval_accuracy=round(ev["accuracy"], 6),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
