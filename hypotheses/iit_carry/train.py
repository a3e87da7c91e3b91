"""Train the IIT carry model: ``python -m hypotheses.iit_carry.train``.

Interchange intervention training (Geiger et al., 2022): each step draws a batch of base and
source additions; the loss is the task cross-entropy on the bases plus the cross-entropy of the
*intervened* run, where the residual entering layer ``LAYER`` at position ``POSITION`` has its
component along the carry direction ``u`` (``carry_subspace()``) replaced by the source's,

    h_b + ((h_s - h_b) · u) u,

against the counterfactual ``a1 + b1 + carry(source)`` of the base, plus the cross-entropy of the
run with the *orthogonal complement* swapped instead, against the base's own answer (nothing else
at that position matters: the model reads ``a1`` and ``b1`` from their own positions). Seeded, one thread,
deterministic algorithms. After training the script checks the task accuracy and the
interchange accuracy at ``u`` and the accuracy with the complement swapped (all >= 0.99) and writes ``model.safetensors`` only if they hold.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import scrub
from hypotheses.iit_carry import CONFIG, LAYER, POSITION, WEIGHTS, carry_subspace, counterfactual, make_data
from hypotheses.induction.train import one_thread_deterministic
from scrub._architecture import hook_resid_pre
from scrub._checkpoint import weights_hash

__all__ = ["train", "iit_logits", "evaluate", "main", "MIN_ACCURACY"]

MIN_ACCURACY: float = 0.99


def iit_logits(model, base_tokens: torch.Tensor, source_tokens: torch.Tensor, u: torch.Tensor,
               *, complement: bool = False) -> torch.Tensor:
    """Logits ``[n, vocab]`` at ``POSITION`` with the source's carry component swapped into the base
    (``complement=True``: everything at ``POSITION`` *but* the carry component swapped)."""
    return _interchange(model, base_tokens, source_tokens, u, [complement])[0]


def _interchange(model, base_tokens: torch.Tensor, source_tokens: torch.Tensor, u: torch.Tensor,
                 kinds: list[bool | None]) -> list[torch.Tensor]:
    """One forward pass of ``len(kinds)`` copies of the bases: per copy, no swap (``None``), the carry
    component swapped (``False``) or its orthogonal complement swapped (``True``)."""
    grabbed: list[torch.Tensor] = []

    def grab(x, hook=None):
        grabbed.append(x[:, POSITION])

    with model.hooks(fwd_hooks=[(hook_resid_pre(LAYER), grab)]):
        model(source_tokens)
    src = grabbed[0]
    n = base_tokens.shape[0]

    def swap(x, hook=None):
        parts = []
        for i, kind in enumerate(kinds):
            h = x[i * n:(i + 1) * n, POSITION]
            if kind is not None:
                along = ((src - h) @ u)[:, None] * u
                h = h + ((src - h) - along if kind else along)
            parts.append(h)
        x = x.clone()
        x[:, POSITION] = torch.cat(parts)
        return x

    with model.hooks(fwd_hooks=[(hook_resid_pre(LAYER), swap)]):
        out = model(base_tokens.repeat(len(kinds), 1))[:, POSITION]
    return list(out.split(n))


def train(seed: int = 0, steps: int = 2500, batch: int = 128, lr: float = 3e-3, iit_weight: float = 1.0,
          log_every: int = 250):
    """Train from ``seed``; returns the model (eval mode)."""
    with one_thread_deterministic():
        torch.manual_seed(seed)
        model = scrub.build_model(**{**CONFIG, "seed": seed})
        model.train()
        u = carry_subspace().basis[:, 0].float()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 200) * max(0.05, 1 - s / steps))
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        for step in range(1, steps + 1):
            base = make_data(batch, seed=int(rng.integers(2**31)))
            source = make_data(batch, seed=int(rng.integers(2**31)))
            plain, carried, rest = _interchange(model, base.tokens, source.tokens, u, [None, False, True])
            task = F.cross_entropy(plain, base.labels)
            cf = counterfactual(base, np.arange(batch), source.columns["carry"].to_numpy())
            # the carry component follows the source; everything else at POSITION does not matter
            iit = F.cross_entropy(carried, cf) + F.cross_entropy(rest, base.labels)
            loss = task + iit_weight * iit
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % log_every == 0 or step == steps:
                print(f"step {step:5d}  task {task.item():.4f}  iit {iit.item():.4f}  ({time.perf_counter() - t0:.1f} s)",
                      flush=True)
    model.eval()
    return model


@torch.no_grad()
def evaluate(model, n: int = 4000, seed: int = 12345) -> dict[str, float]:
    """Task accuracy, and interchange accuracy at the carry direction on pairs whose carries differ."""
    base, source = make_data(n, seed), make_data(n, seed + 1)
    task = float((model(base.tokens)[:, POSITION].argmax(-1) == base.labels).float().mean())
    differ = base.columns["carry"].to_numpy() != source.columns["carry"].to_numpy()
    u = carry_subspace().basis[:, 0].float()
    logits = iit_logits(model, base.tokens[differ], source.tokens[differ], u)
    cf = counterfactual(base, np.flatnonzero(differ), source.columns["carry"].to_numpy()[differ])
    rest = iit_logits(model, base.tokens, source.tokens, u, complement=True)
    return {"task_accuracy": task, "interchange_accuracy": float((logits.argmax(-1) == cf).float().mean()),
            "complement_swap_accuracy": float((rest.argmax(-1) == base.labels).float().mean())}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    model = train(seed=args.seed, steps=args.steps)
    elapsed = time.perf_counter() - t0
    ev = evaluate(model)
    print(f"trained {args.steps} steps in {elapsed:.1f} s; {ev}")
    print(f"weights sha256 {weights_hash(model)}")
    if min(ev.values()) < MIN_ACCURACY:
        print(f"FAILED: accuracies below {MIN_ACCURACY}; weights not written", file=sys.stderr)
        return 1
    scrub.save_model(model, args.out, seed=args.seed, steps=args.steps, train_seconds=round(elapsed, 1),
                     **{k: round(v, 6) for k, v in ev.items()})
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
