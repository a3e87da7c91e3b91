"""Train the induction demo model: ``python -m hypotheses.induction.train``.

A 2-layer attention-only transformer (see :data:`CONFIG`) is trained from a fixed seed on
random sequences with a repeated segment (:func:`train_batch`), then checked: the best
layer-0 head must have a previous-token score >= 0.4 and the best layer-1 head an
induction score >= 0.5, or the script exits non-zero without writing weights. On success
it writes ``hypotheses/induction/model.safetensors``.

Runs on one CPU thread (``torch.set_num_threads(1)``) so the weights do not depend on the
machine's core count.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import scrub
from hypotheses.induction.data import CONFIG, TrainBatches, make_data
from hypotheses.induction.heads import head_scores
from scrub._checkpoint import weights_hash

__all__ = ["train", "fit", "one_thread_deterministic", "evaluate", "main", "MIN_PREV_TOKEN", "MIN_INDUCTION"]

WEIGHTS_PATH = Path(__file__).with_name("model.safetensors")
MIN_PREV_TOKEN: float = 0.4
MIN_INDUCTION: float = 0.5


def train(seed: int = 0, steps: int = 2000, batch: int = 128, lr: float = 1e-3, weight_decay: float = 0.01,
          log_every: int = 250) -> tuple[Any, float]:
    """Train a fresh model from ``seed``; returns ``(model, final_loss)``.

    ``final_loss`` is the mean training loss over the last 100 steps (all positions).
    Trains on one thread with deterministic algorithms (restored afterwards), so the
    weights depend only on ``seed`` and ``steps``, not on the machine's core count.
    """
    with one_thread_deterministic():
        torch.manual_seed(seed)
        model = scrub.build_model(**{**CONFIG, "seed": seed})
        batches = TrainBatches(seed, batch, CONFIG["n_ctx"], CONFIG["d_vocab"])
        return fit(model, batches, steps=steps, lr=lr, weight_decay=weight_decay, log_every=log_every)


@contextmanager
def one_thread_deterministic():
    """One torch thread and deterministic algorithms for the duration (both restored afterwards)."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def fit(model, batches, *, steps: int, lr: float, weight_decay: float, log_every: int,
        logits_of: Callable[[Any, torch.Tensor], torch.Tensor] = lambda m, t: m(t)) -> tuple[Any, float]:
    """The zoo's training loop: AdamW on next-token cross-entropy at every position of ``batches``.

    ``batches`` yields ``[batch, n_ctx + 1]`` token tensors; ``logits_of(model, tokens)`` gives the
    logits (a bridge's call by default; a HuggingFace model's ``.logits`` otherwise). Returns the
    model in eval mode and the mean loss of the last 100 steps.
    """
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    recent: list[float] = []
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        tokens = next(batches)
        logits = logits_of(model, tokens[:, :-1])  # tokens are [batch, n_ctx + 1]: every position gets a target
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        recent = (recent + [loss.item()])[-100:]
        if step % log_every == 0 or step == steps:
            print(f"step {step:5d}  loss {sum(recent) / len(recent):.4f}  ({time.perf_counter() - t0:.1f} s)", flush=True)
    model.eval()
    return model, sum(recent) / len(recent)


@torch.no_grad()
def evaluate(model, n: int = 2000, seed: int = 0, *, data: Callable[[int, int], Any] = make_data) -> dict[str, float]:
    """Mean cross-entropy and accuracy at the target position of ``data(n, seed)`` (default :func:`make_data`).

    ``model`` is a bridge or a HuggingFace model (anything whose call returns logits or an object
    with ``.logits``)."""
    d = data(n, seed)
    out = model(d.tokens)
    logits = getattr(out, "logits", out)[torch.arange(len(d)), d.target_pos]
    return {
        "loss": float(F.cross_entropy(logits, d.labels)),
        "accuracy": float((logits.argmax(-1) == d.labels).float().mean()),
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=CONFIG["seed"])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    model, final_loss = train(seed=args.seed, steps=args.steps)
    elapsed = time.perf_counter() - t0
    scores = head_scores(model, seed=0)
    best_prev = max((v, k) for k, v in scores["prev_token"].items() if k.startswith("a0."))
    best_ind = max((v, k) for k, v in scores["induction"].items() if k.startswith("a1."))
    ev = evaluate(model)
    print(f"trained {args.steps} steps in {elapsed:.1f} s, final loss {final_loss:.4f}")
    print(f"best layer-0 previous-token head {best_prev[1]}: {best_prev[0]:.3f}")
    print(f"best layer-1 induction head {best_ind[1]}: {best_ind[0]:.3f}")
    print(f"make_data(2000): loss {ev['loss']:.4f}, accuracy {ev['accuracy']:.4f}")
    print(f"weights sha256 {weights_hash(model)}")
    if best_prev[0] < MIN_PREV_TOKEN or best_ind[0] < MIN_INDUCTION:
        print(f"FAILED: no induction circuit (need previous-token >= {MIN_PREV_TOKEN}, "
              f"induction >= {MIN_INDUCTION}); weights not written", file=sys.stderr)
        return 1
    scrub.save_model(
        model, args.out, seed=args.seed, steps=args.steps, final_loss=round(final_loss, 6),
        head_scores={role: {k: round(v, 4) for k, v in s.items()} for role, s in scores.items()},
        eval_loss=round(ev["loss"], 6), eval_accuracy=round(ev["accuracy"], 6),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
