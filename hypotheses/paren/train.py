"""Train the paren balancer reproducibly: ``python -m hypotheses.paren.train``.

Everything is seeded (model init through the config's ``seed``, ``torch.manual_seed``,
the numpy data streams) and runs on one CPU thread, so the same arguments give the
same weights bit for bit on the same machine and library versions.

Training data is drawn fresh in chunks from :func:`hypotheses.paren.data.generate_strings`
with seeds ``[seed, 1, chunk]``; the validation set printed during training uses
``[seed, 2]`` and the held-out test set the int :data:`TEST_SEED` (a different seed
stream from both). Each batch is cut to its longest row: the pads are masked, so this
changes the arithmetic, not the function.

The run fails (exit status 1, no weights written) if held-out accuracy is below
``--min-accuracy`` (0.99) or if the logits at position 0 depend on padded positions.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

import scrub
from scrub._checkpoint import weights_hash
from hypotheses.paren import CONFIG, WEIGHTS
from hypotheses.paren.data import encode, generate_strings, is_balanced, make_data

__all__ = ["TEST_SEED", "train", "evaluate", "mask_invariance", "main"]

TEST_SEED: int = 20221208
"""Seed of the held-out test set (the causal scrubbing post's date)."""


def _lr(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``lr / 100``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, steps - warmup)
    return lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * frac)))


def _batches(
    seed: int, chunk: int, batch_size: int, per_chunk: int
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One chunk of training batches ``(tokens, mask, labels)``, each cut to its longest row.

    Batches mix all lengths and kinds (grouping them by length trained far worse).
    """
    strings, _ = generate_strings(batch_size * per_chunk, seed=[seed, 1, chunk])
    out = []
    for b in range(per_chunk):
        rows = strings[b * batch_size:(b + 1) * batch_size]
        width = max(len(s) for s in rows) + 2
        tokens, mask = encode(rows, n_ctx=width)
        labels = torch.tensor([int(is_balanced(s)) for s in rows], dtype=torch.long)
        out.append((tokens, mask, labels))
    return out


@torch.no_grad()
def evaluate(model, data: scrub.Dataset, batch_size: int = 2000) -> dict[str, Any]:
    """Accuracy and mean loss of ``model`` on ``data`` (read at ``data.target_pos``), overall and per ``kind``.

    Returns ``{"accuracy", "loss", "per_kind": DataFrame(kind -> n, accuracy, loss)}``.
    """
    was_training = model.training
    model.eval()
    correct, losses = [], []
    for i in range(0, len(data), batch_size):
        tok = data.tokens[i:i + batch_size]
        mask = None if data.attention_mask is None else data.attention_mask[i:i + batch_size]
        logits = model(tok, attention_mask=mask)
        logits = logits[torch.arange(len(tok)), data.target_pos[i:i + batch_size]]
        labels = data.labels[i:i + batch_size]
        correct.append((logits.argmax(-1) == labels).numpy())
        losses.append(F.cross_entropy(logits, labels, reduction="none").numpy())
    model.train(was_training)
    frame = pd.DataFrame({"correct": np.concatenate(correct), "loss": np.concatenate(losses)})
    if "kind" in data.columns:
        frame["kind"] = data.columns["kind"].to_numpy()
        per_kind = frame.groupby("kind").agg(
            n=("correct", "size"), accuracy=("correct", "mean"), loss=("loss", "mean")
        )
    else:
        per_kind = pd.DataFrame()
    return {"accuracy": float(frame.correct.mean()), "loss": float(frame.loss.mean()), "per_kind": per_kind}


@torch.no_grad()
def mask_invariance(model, data: scrub.Dataset, n_alone: int = 64, seed: int = 0) -> dict[str, float]:
    """Check that the logits at position 0 do not depend on what is in padded positions.

    Returns the largest absolute difference of the position-0 logits between:

    - ``garbage``: the data as is, and the same rows with every pad replaced by a
      random non-pad token (both with the attention mask); must be ~0;
    - ``alone``: the data as is, and each of the first ``n_alone`` examples run by
      itself, cut to its real length, with no mask and no pads at all; must be ~0;
    - ``unmasked``: the garbage rows with and without the mask (a control: it
      should be far from 0, or the test above proves nothing).
    """
    model.eval()
    g = torch.Generator().manual_seed(seed)
    tokens, mask = data.tokens, data.attention_mask
    if mask is None:
        raise ValueError("mask_invariance needs data with an attention_mask")
    junk = torch.randint(1, 5, tokens.shape, generator=g)
    garbage = torch.where(mask.bool(), tokens, junk)
    base = model(tokens, attention_mask=mask)[:, 0]
    with_junk = model(garbage, attention_mask=mask)[:, 0]
    without_mask = model(garbage)[:, 0]
    alone = 0.0
    for i in range(min(n_alone, len(data))):
        length = int(mask[i].sum())
        solo = model(tokens[i:i + 1, :length])[0, 0]
        alone = max(alone, float((solo - base[i]).abs().max()))
    return {
        "garbage": float((with_junk - base).abs().max()),
        "alone": alone,
        "unmasked": float((without_mask - with_junk).abs().max()),
    }


def train(
    seed: int = 0,
    steps: int = 6000,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    warmup: int = 200,
    per_chunk: int = 100,
    eval_every: int = 250,
    log: Callable[[str], None] = print,
):
    """Train a fresh paren balancer from ``seed``; returns the model (in eval mode).

    AdamW (``lr``, ``weight_decay``, betas 0.9/0.98), warm-up then cosine decay,
    gradient norm clipped at 1, cross-entropy on the logits at position 0 with the
    attention mask. Prints progress every 100 steps and validation accuracy every
    ``eval_every`` steps.
    """
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = scrub.build_model(**CONFIG, seed=seed)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.98),
    )
    val = make_data(4000, seed=[seed, 2])
    queue: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    chunk = 0
    start = time.perf_counter()
    run_loss, run_acc = 0.0, 0.0
    for step in range(steps):
        if not queue:
            queue = _batches(seed, chunk, batch_size, per_chunk)
            chunk += 1
        tokens, mask, labels = queue.pop(0)
        for group in opt.param_groups:
            group["lr"] = _lr(step, steps, lr, warmup)
        logits = model(tokens, attention_mask=mask)[:, 0]
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run_loss += float(loss.detach())
        run_acc += float((logits.detach().argmax(-1) == labels).float().mean())
        if (step + 1) % 100 == 0:
            log(
                f"step {step + 1:5d}/{steps}  loss {run_loss / 100:.4f}  train acc {run_acc / 100:.4f}  "
                f"lr {opt.param_groups[0]['lr']:.2e}  {time.perf_counter() - start:6.1f} s"
            )
            run_loss, run_acc = 0.0, 0.0
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            res = evaluate(model, val)
            kinds = "  ".join(f"{k} {a:.3f}" for k, a in res["per_kind"]["accuracy"].items())
            log(f"  validation: accuracy {res['accuracy']:.4f}  loss {res['loss']:.4f}  ({kinds})")
    model.eval()
    return model


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Command line: train, test on held-out data, check the mask, write the weights; 0 on success."""
    parser = argparse.ArgumentParser(prog="python -m hypotheses.paren.train", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--test-n", type=int, default=20000, help="held-out examples")
    parser.add_argument("--min-accuracy", type=float, default=0.99)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model = train(seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    train_s = time.perf_counter() - t0
    print(f"trained in {train_s:.1f} s")

    test = make_data(args.test_n, seed=TEST_SEED)
    res = evaluate(model, test)
    print(f"held-out (seed {TEST_SEED}, n {args.test_n}): accuracy {res['accuracy']:.4f}  loss {res['loss']:.4f}")
    print(res["per_kind"].to_string())
    test_dips = test.subset(np.flatnonzero((test.columns["kind"] == "dip").to_numpy()))
    hard = test_dips.columns["first_char_open"] & test_dips.columns["last_char_close"]
    dip_res = evaluate(model, test_dips.subset(np.flatnonzero(hard.to_numpy())))
    print(f"hard dips only (start with ( and end with ), n {int(hard.sum())}): accuracy {dip_res['accuracy']:.4f}")

    inv = mask_invariance(model, test.subset(slice(0, 512)))
    print(
        f"mask check (max |d logit| at position 0): pads replaced by junk {inv['garbage']:.2e}, "
        f"each example run alone without pads {inv['alone']:.2e}; control without the mask {inv['unmasked']:.2e}"
    )
    ok = True
    if inv["garbage"] > 1e-4 or inv["alone"] > 1e-4 or inv["unmasked"] < 1e-3:
        print("FAIL: the logits at position 0 depend on padded positions (or the control shows nothing)")
        ok = False
    if res["accuracy"] < args.min_accuracy:
        print(f"FAIL: held-out accuracy {res['accuracy']:.4f} < {args.min_accuracy}")
        ok = False
    if not ok:
        return 1

    per_kind = {str(k): round(float(v), 6) for k, v in res["per_kind"]["accuracy"].items()}
    scrub.save_model(
        model, args.out,
        seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        accuracy=round(res["accuracy"], 6), accuracy_per_kind=per_kind,
        test_seed=TEST_SEED, test_n=args.test_n,
    )
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    print(f"file sha256 {_sha256(args.out)}")
    print(f"weights hash {weights_hash(model)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
