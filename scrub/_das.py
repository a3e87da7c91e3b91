"""Learned subspaces by distributed alignment search (DAS): :func:`das` and :class:`DASResult`.

DAS (Geiger et al., 2023) looks for a ``k``-dimensional subspace of the residual stream at a
*site* (the residual entering layer ``L``, at some positions) that holds a high-level variable
``V``: swapping that subspace from a *source* example into a *base* example must change the
model's output exactly as setting ``V`` to the source's value changes the high-level model's
output. With ``B`` a ``[d_model, k]`` matrix of orthonormal columns, the interchange intervention
replaces the base's residual ``h_b`` at the site by

    h_b + (h_s - h_b) B Bᵀ,

and ``B`` is fitted by SGD (parametrised as an orthogonal matrix) to minimise the cross-entropy
of the intervened output at the base's target position against the counterfactual label
``g(base, V(source))``. The score is the *interchange intervention accuracy* (IIA) on held-out
pairs.

An accuracy alone can be an illusion (Makelov et al., 2023): a subspace can be found that
"holds" a variable because the search is expressive, not because the model computes it. So every
fit reports three controls next to it (see :class:`DASResult`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from scrub._architecture import Architecture
from scrub._dataset import Dataset
from scrub._subspace import Subspace
from scrub.errors import DatasetError, FeatureError, RunOptionsError

__all__ = ["das", "DASResult", "interchange_accuracy", "principal_cosines"]

Counterfactual = Callable[[Dataset, np.ndarray, np.ndarray], Any]
CONTROLS = ("shuffled variable", "random subspace", "random weights")


@dataclass
class DASResult:
    """What :func:`das` found, with its illusion controls.

    Attributes:
        subspace: the learned :class:`~scrub.Subspace` (``[d_model, k]``).
        accuracy: held-out interchange intervention accuracy (IIA) of ``subspace``: the fraction
            of held-out *informative* pairs (where the variable's swap changes the high-level
            output) on which the intervened model's argmax is the counterfactual label. Leaving
            the model alone scores 0 on these pairs by construction.
        held_out_loss: the DAS objective (mean cross-entropy against the counterfactual labels) of
            ``subspace`` on the held-out informative pairs.
        train_accuracy: the same as ``accuracy`` on the last training batch.
        curve: one row per step (``step``, ``loss``, ``train_accuracy``), with ``held_out_accuracy``
            at the evaluation steps (NaN elsewhere).
        fit_seconds: wall time of the fit (controls excluded).
        steps: steps run (fewer than asked when early stopping ended the fit).
        chance: what the most frequent counterfactual label scores on the held-out pairs (a
            constant guess).
        controls: one row per control (``control``, ``accuracy``, ``chance``, ``fit_seconds``,
            ``what``); empty when the fit was run with ``controls=False``. ``chance`` is the level
            the control should sit near:

            - ``shuffled variable``: the same fit with the variable's values permuted across
              examples. A subspace that also "holds" a meaningless variable shows that the search,
              not the model, produced the accuracy. Pairs are informative under the *real* variable
              (leaving the model alone scores 0). Its ``chance`` is the fraction of its pairs on
              which the shuffled and the real variable give the same label: what a subspace that
              holds the real variable scores (large for a variable with few values: about 1/2 for
              a balanced binary one).
            - ``random subspace``: a random ``k``-dimensional subspace at the same site, not
              fitted. Its IIA is what a subspace of that size gives for free (``chance``: a
              constant guess).
            - ``random weights``: the same fit on a copy of the model whose weights are redrawn
              (each tensor Gaussian with its own mean and standard deviation). A high accuracy
              there means the variable can be written into any network of this shape (``chance``:
              a constant guess).
        layer, positions, k, n_train, n_held_out, n_pairs: the site and the split, for the record.
    """

    subspace: Subspace
    accuracy: float
    train_accuracy: float
    held_out_loss: float
    curve: pd.DataFrame
    fit_seconds: float
    steps: int
    controls: pd.DataFrame
    layer: int
    positions: Any
    k: int
    n_train: int
    n_held_out: int
    n_pairs: int
    chance: float = 0.0
    seed: int = 0

    def table(self) -> pd.DataFrame:
        """The fit and its controls as one frame (``control``, ``accuracy``, ``chance``, ``fit_seconds``, ``what``)."""
        fit = pd.DataFrame([{
            "control": "DAS fit", "accuracy": self.accuracy, "chance": self.chance, "fit_seconds": self.fit_seconds,
            "what": f"learned {self.k}-dim subspace at resid_pre {self.layer}",
        }])
        return pd.concat([fit, self.controls], ignore_index=True) if len(self.controls) else fit

    def summary(self) -> str:
        """A few lines: the held-out IIA and every control's."""
        lines = [
            f"DAS: {self.k}-dim subspace of the residual entering layer {self.layer}, positions {self.positions}",
            f"  held-out interchange accuracy {self.accuracy:.3f} on {self.n_pairs} informative pairs "
            f"({self.n_train} train / {self.n_held_out} held-out examples; {self.steps} steps, {self.fit_seconds:.1f}s); "
            f"a constant guess scores {self.chance:.3f}",
        ]
        if len(self.controls):
            lines.append("  controls (should sit near their chance level, far below the fit):")
            lines += [f"    {row['control']:<18} {row['accuracy']:.3f}   (chance {row['chance']:.3f})"
                      for row in self.controls.to_dict("records")]
        else:
            lines.append("  controls: not run (controls=False)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


# -- the public entry point ------------------------------------------------------------------


def das(
    model: Any,
    data: Dataset,
    *,
    layer: int,
    k: int,
    variable: str | Callable[[Dataset], Any],
    counterfactual: Counterfactual,
    positions: int | Sequence[int] | Callable[[Dataset], Any] | None = None,
    held_out: float = 0.25,
    seed: int = 0,
    steps: int = 1000,
    lr: float = 1e-2,
    batch_size: int = 64,
    eval_every: int = 25,
    patience: int = 8,
    n_pairs: int = 512,
    controls: bool = True,
    progress: bool = False,
) -> DASResult:
    """Fit a ``k``-dimensional subspace of the residual entering ``layer`` that holds ``variable``.

    Pairs (base, source) are drawn from the training examples; at the site, the base's residual
    ``h_b`` becomes ``h_b + (h_s - h_b) B Bᵀ`` with ``B = R[:, :k]`` for an orthogonal ``R``
    (``torch.nn.utils.parametrizations.orthogonal``), and Adam minimises the cross-entropy of the
    intervened logits at the base's target position against
    ``counterfactual(data, base_idx, variable[source_idx])``. Every ``eval_every`` steps the
    held-out IIA is measured; the fit stops after ``patience`` evaluations without improvement
    (or at 100%), and the best subspace is kept. Deterministic under ``seed`` (one torch thread
    and a seeded generator for the duration; the caller's RNG state is restored).

    Args:
        model: a TransformerLens model scrub supports (``scrub.build_model``, ``scrub.from_hf``...).
        data: the examples; ``target_pos`` says where the output is read.
        layer: the site is the residual entering this layer (``n_layers``: the final residual).
        k: the subspace's dimension.
        variable: the high-level variable, one hashable value per example: a column name or a
            function of the data (``[N]``).
        counterfactual: the high-level model: ``counterfactual(data, base_idx, values)`` returns
            ``[n]`` labels (logit indices), the output for each base example ``base_idx[i]``
            once its variable is set to ``values[i]`` (an object array).
        positions: where the subspace is swapped: ``None`` (every position), an int or a list
            (negative ones count from the end), or a function of the data giving ``[N]``
            positions or an ``[N, T]`` mask (read on the base example; the source's residual at
            the same positions is swapped in).
        held_out: the fraction of examples held out (bases and sources of the evaluation pairs).
        seed: seeds the split, the pairs, the initial rotation and the controls.
        steps, lr, batch_size: the optimisation (Adam).
        eval_every, patience: early stopping on held-out IIA.
        n_pairs: held-out pairs drawn; only the informative ones are scored.
        controls: also run the three illusion controls (two are fits of their own: about 3x the
            time); see :class:`DASResult`.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`DASResult`.

    Raises:
        RunOptionsError: a bad ``layer``, ``k`` or optimisation option.
        FeatureError: a variable or counterfactual of the wrong shape.
        DatasetError: too few examples, or no held-out pair on which the variable matters.
    """
    arch = Architecture.of(model)
    _check_options(arch, layer=layer, k=k, held_out=held_out, steps=steps, lr=lr, batch_size=batch_size,
                   eval_every=eval_every, patience=patience, n_pairs=n_pairs)
    values = _variable_values(variable, data)
    mask = _site_mask(positions, data)
    with _one_thread(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        train_idx, test_idx = _split(len(data), held_out, seed)
        fit = _Fit(model, arch, data, layer, mask, values, counterfactual, train_idx, test_idx, seed,
                   n_pairs=n_pairs)
        basis, acc, held_loss, tr_acc, curve, secs, steps_run = fit.train(
            k, steps=steps, lr=lr, batch_size=batch_size, eval_every=eval_every, patience=patience,
            progress=progress, desc="DAS",
        )
        rows = []
        if controls:
            rows = _controls(model, arch, data, layer, mask, values, counterfactual, train_idx, test_idx, seed,
                             fit, k=k, steps=steps, lr=lr, batch_size=batch_size, eval_every=eval_every,
                             patience=patience, n_pairs=n_pairs, progress=progress)
    return DASResult(
        subspace=Subspace.span(basis.double(), name=f"DAS k={k} @ resid_pre {layer}"),
        accuracy=acc,
        held_out_loss=held_loss,
        train_accuracy=tr_acc,
        curve=curve,
        fit_seconds=secs,
        steps=steps_run,
        controls=pd.DataFrame(rows, columns=["control", "accuracy", "chance", "fit_seconds", "what"]),
        layer=layer,
        positions=positions if not callable(positions) else getattr(positions, "__name__", "function"),
        k=k,
        n_train=len(train_idx),
        n_held_out=len(test_idx),
        n_pairs=fit.n_informative,
        chance=fit.majority,
        seed=seed,
    )


def interchange_accuracy(
    model: Any,
    data: Dataset,
    subspace: Subspace,
    *,
    layer: int,
    variable: str | Callable[[Dataset], Any],
    counterfactual: Counterfactual,
    positions: int | Sequence[int] | Callable[[Dataset], Any] | None = None,
    n_pairs: int = 512,
    seed: int = 0,
) -> float:
    """The interchange intervention accuracy of a fixed ``subspace`` on ``n_pairs`` random pairs of ``data``.

    Pairs are drawn uniformly (seeded) and only the informative ones (where the high-level output
    changes) are scored, as in :func:`das`; the arguments mean what they mean there.
    """
    arch = Architecture.of(model)
    _check_options(arch, layer=layer, k=subspace.dim, held_out=0.5, steps=1, lr=1.0, batch_size=1,
                   eval_every=1, patience=1, n_pairs=n_pairs)
    if subspace.d_model != arch.d_model:
        raise RunOptionsError(f"interchange_accuracy: the subspace has d_model={subspace.d_model}, the model {arch.d_model}")
    values = _variable_values(variable, data)
    mask = _site_mask(positions, data)
    with _one_thread():
        everything = np.arange(len(data))
        fit = _Fit(model, arch, data, layer, mask, values, counterfactual, everything, everything, seed,
                   n_pairs=n_pairs)
        with torch.no_grad():
            return fit.evaluate(subspace.basis.to(fit.dtype))


def principal_cosines(a: Subspace | torch.Tensor, b: Subspace | torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between two subspaces, largest first (``min(k_a, k_b)`` values).

    The singular values of ``A^T B`` for orthonormal bases ``A`` and ``B``: all 1 when one subspace
    contains the other, all 0 when they are orthogonal.
    """
    ba = a.basis if isinstance(a, Subspace) else Subspace.span(a).basis
    bb = b.basis if isinstance(b, Subspace) else Subspace.span(b).basis
    if ba.shape[0] != bb.shape[0]:
        raise RunOptionsError(f"principal_cosines: the subspaces live in d_model={ba.shape[0]} and {bb.shape[0]}")
    return torch.linalg.svdvals(ba.T @ bb).clamp(max=1.0)


# -- the fit -------------------------------------------------------------------------------------


class _Fit:
    """One dataset, site, variable and high-level model; fits and evaluates subspaces on it."""

    def __init__(self, model, arch: Architecture, data: Dataset, layer: int, mask: torch.Tensor,
                 values: np.ndarray, counterfactual: Counterfactual, train_idx: np.ndarray,
                 test_idx: np.ndarray, seed: int, *, n_pairs: int, truth: np.ndarray | None = None) -> None:
        self.model, self.arch, self.data, self.layer = model, arch, data, layer
        # the real variable: a pair is informative when its counterfactual differs from the base's own
        # output under it (so leaving the model alone scores 0, also for a shuffled variable)
        self.truth = values if truth is None else truth
        self.hook = arch.hook_resid(layer)
        self.values, self.counterfactual = values, counterfactual
        self.train_idx, self.test_idx = train_idx, test_idx
        param = next(iter(model.parameters()))
        self.device, self.dtype = param.device, param.dtype
        self.mask = mask.to(self.device)
        self.tokens = data.tokens.to(self.device)
        self.attn = None if data.attention_mask is None else data.attention_mask.to(self.device)
        self.target = data.target_pos.to(self.device)
        self.resid = self._residuals()
        self.gen = torch.Generator().manual_seed(seed)
        base, source = (torch.from_numpy(test_idx)[torch.randint(len(test_idx), (n_pairs,), generator=self.gen)]
                        for _ in range(2))
        cf, informative = self.labels(base.numpy(), source.numpy())
        cfg = getattr(model, "cfg", None)
        vocab = int(getattr(cfg, "d_vocab_out", 0) or 0) if cfg is not None else 0
        vocab = vocab if vocab > 0 else int(getattr(cfg, "d_vocab", 0) or 0)
        if vocab and (int(cf.min()) < 0 or int(cf.max()) >= vocab):
            raise FeatureError(
                f"das: the counterfactual function gave label {int(cf.min()) if int(cf.min()) < 0 else int(cf.max())}, "
                f"outside the model's {vocab} output logits; it must return logit indices"
            )
        if not informative.any():
            raise DatasetError(
                "das: on none of the held-out pairs does the variable's value change the counterfactual output; "
                "check the variable and the counterfactual function, or use more data"
            )
        keep = torch.from_numpy(informative)
        self.eval_base, self.eval_source, self.eval_cf = base[keep], source[keep], cf[keep]
        self.n_informative = int(keep.sum())
        # what a subspace holding the real variable scores here (1 for the real fit), and a constant guess
        real = self._call(self.eval_base.numpy(), self.truth[self.eval_source.numpy()])
        self.agreement = float((real == self.eval_cf).float().mean())
        self.majority = float(torch.bincount(self.eval_cf - self.eval_cf.min()).max()) / self.n_informative

    def labels(self, base: np.ndarray, source: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Counterfactual labels for the pairs, and which pairs are informative (the label changes)."""
        cf = self._call(base, self.values[source])
        own = self._call(base, self.truth[base])
        return cf, (cf != own).numpy()

    def _call(self, base: np.ndarray, values: np.ndarray) -> torch.Tensor:
        try:
            out = self.counterfactual(self.data, base, values)
        except Exception as exc:
            raise FeatureError(f"das: the counterfactual function failed ({type(exc).__name__}: {exc})") from exc
        out = torch.as_tensor(np.asarray(out.cpu() if isinstance(out, torch.Tensor) else out))
        if out.shape != (len(base),) or out.dtype.is_floating_point or out.dtype == torch.bool:
            raise FeatureError(
                f"das: the counterfactual function must return [n] = [{len(base)}] integer labels, "
                f"got {out.dtype} of shape {tuple(out.shape)}"
            )
        return out.long()

    def _residuals(self) -> torch.Tensor:
        store: list[torch.Tensor] = []

        def grab(x, hook=None):
            store.append(x.detach())

        chunks = []
        with torch.no_grad():
            for lo in range(0, len(self.data), 256):
                store.clear()
                with self.model.hooks(fwd_hooks=[(self.hook, grab)]):
                    self.model(self.tokens[lo:lo + 256], **self._kw(slice(lo, lo + 256)))
                chunks.append(store[0])
        return torch.cat(chunks)

    def _kw(self, rows) -> dict[str, Any]:
        return {} if self.attn is None else {"attention_mask": self.attn[rows]}

    def logits(self, basis: torch.Tensor, base: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """Intervened logits ``[n, vocab]`` at the bases' target positions."""
        base_d, source_d = base.to(self.device), source.to(self.device)
        src = self.resid[source_d]
        m = self.mask[base_d][..., None].to(self.dtype)

        def swap(x, hook=None):
            return x + (((src - x) @ basis) @ basis.T) * m

        with self.model.hooks(fwd_hooks=[(self.hook, swap)]):
            out = self.model(self.tokens[base_d], **self._kw(base_d))
        return out[torch.arange(len(base_d), device=self.device), self.target[base_d]]

    def evaluate(self, basis: torch.Tensor) -> float:
        return self.score(basis)[0]

    def score(self, basis: torch.Tensor) -> tuple[float, float]:
        """Held-out IIA and mean cross-entropy against the counterfactual labels."""
        hits, loss = 0, 0.0
        basis = basis.to(self.device, self.dtype)
        for lo in range(0, self.n_informative, 256):
            b, s = self.eval_base[lo:lo + 256], self.eval_source[lo:lo + 256]
            logits = self.logits(basis, b, s).float().cpu()
            cf = self.eval_cf[lo:lo + 256]
            hits += int((logits.argmax(-1) == cf).sum())
            loss += float(F.cross_entropy(logits, cf, reduction="sum"))
        return hits / self.n_informative, loss / self.n_informative

    def train(self, k: int, *, steps: int, lr: float, batch_size: int, eval_every: int, patience: int,
              progress: bool, desc: str) -> tuple[torch.Tensor, float, float, float, pd.DataFrame, float, int]:
        t0 = time.perf_counter()
        d = self.arch.d_model
        init, _ = torch.linalg.qr(torch.randn(d, k, generator=self.gen, dtype=torch.float64))
        rot = torch.nn.Linear(k, d, bias=False)
        with torch.no_grad():
            rot.weight.copy_(init.to(rot.weight.dtype))
        rot = torch.nn.utils.parametrizations.orthogonal(rot)
        rot.to(self.device)

        def weight() -> torch.Tensor:  # [d, k], orthonormal columns (recomputed from the parametrisation)
            return cast(torch.Tensor, rot.weight)

        opt = torch.optim.Adam(rot.parameters(), lr=lr)
        best, best_acc, best_loss, since, records = weight().detach().clone(), -1.0, math.inf, 0, []
        tol = 1e-3
        tr_acc = float("nan")
        step = 0
        with _frozen(self.model):
            bar = tqdm(range(1, steps + 1), desc=desc, disable=not progress, leave=False)
            for step in bar:
                pick = torch.randint(len(self.train_idx), (2, batch_size), generator=self.gen)
                base, source = (torch.from_numpy(self.train_idx)[p] for p in pick)
                cf, _ = self.labels(base.numpy(), source.numpy())
                logits = self.logits(weight().to(self.dtype), base, source)
                loss = F.cross_entropy(logits.float(), cf.to(self.device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                tr_acc = float((logits.argmax(-1).cpu() == cf).float().mean())
                row = {"step": step, "loss": float(loss.detach()), "train_accuracy": tr_acc,
                       "held_out_accuracy": math.nan, "held_out_loss": math.nan}
                if step % eval_every == 0 or step == steps:
                    with torch.no_grad():
                        acc, held_loss = self.score(weight())
                    row["held_out_accuracy"], row["held_out_loss"] = acc, held_loss
                    bar.set_postfix(loss=f"{held_loss:.3f}", held_out=f"{acc:.3f}")
                    # better: a higher held-out IIA, or the same IIA at a clearly lower held-out loss
                    if acc > best_acc or (acc == best_acc and held_loss < best_loss - tol * abs(best_loss)):
                        best, best_acc, best_loss, since = weight().detach().clone(), acc, held_loss, 0
                    else:
                        since += 1
                    records.append(row)
                    if since >= patience:
                        break
                else:
                    records.append(row)
            bar.close()
        return (best.cpu(), best_acc, best_loss, tr_acc, pd.DataFrame(records), time.perf_counter() - t0, step)


def _controls(model, arch, data, layer, mask, values, counterfactual, train_idx, test_idx, seed, fit: _Fit, *,
              k: int, progress: bool, **opts: Any) -> list[dict[str, Any]]:
    rows = []
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed + 1)
    shuffled = values[rng.permutation(len(values))]
    try:
        sfit = _Fit(model, arch, data, layer, mask, shuffled, counterfactual, train_idx, test_idx, seed + 1,
                    n_pairs=opts["n_pairs"], truth=values)
        _, acc, *_ = sfit.train(k, progress=progress, desc="control: shuffled variable",
                                **{key: v for key, v in opts.items() if key != "n_pairs"})
        chance = sfit.agreement
    except DatasetError:
        acc, chance = 0.0, 0.0  # the shuffled variable never changes the output on held-out pairs
    rows.append({"control": "shuffled variable", "accuracy": acc, "chance": chance,
                 "fit_seconds": time.perf_counter() - t0,
                 "what": "the same fit with the variable permuted across examples"})

    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(seed + 2)
    rand, _ = torch.linalg.qr(torch.randn(arch.d_model, k, generator=g, dtype=torch.float64))
    with torch.no_grad():
        acc = fit.evaluate(rand.to(fit.dtype))
    rows.append({"control": "random subspace", "accuracy": acc, "chance": fit.majority,
                 "fit_seconds": time.perf_counter() - t0,
                 "what": f"a random {k}-dim subspace at the same site, not fitted"})

    t0 = time.perf_counter()
    rmodel = random_weights(model, seed + 3)
    rfit = _Fit(rmodel, arch, data, layer, mask, values, counterfactual, train_idx, test_idx,
                seed + 3, n_pairs=opts["n_pairs"])
    _, acc, *_ = rfit.train(k, progress=progress, desc="control: random weights",
                            **{key: v for key, v in opts.items() if key != "n_pairs"})
    rows.append({"control": "random weights", "accuracy": acc, "chance": rfit.majority,
                 "fit_seconds": time.perf_counter() - t0,
                 "what": "the same fit on the model with its weights redrawn"})
    return rows


def random_weights(model: Any, seed: int) -> Any:
    """A copy of ``model`` with every weight tensor redrawn from a Gaussian of its own mean and std."""
    twin = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in twin.parameters():
            mean = float(p.mean())
            std = float(p.std()) if p.numel() > 1 else 0.0
            p.copy_((torch.randn(p.shape, generator=g, dtype=torch.float64) * std + mean).to(p.dtype))
    twin.eval()
    return twin


# -- helpers -------------------------------------------------------------------------------------


def _check_options(arch: Architecture, **o: Any) -> None:
    layer, k = o["layer"], o["k"]
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer <= arch.n_layers:
        raise RunOptionsError(f"das: layer must be an int in 0..{arch.n_layers} (the residual entering that layer), got {layer!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= arch.d_model:
        raise RunOptionsError(f"das: k must be an int in 1..d_model={arch.d_model}, got {k!r}")
    if not 0.0 < float(o["held_out"]) < 1.0:
        raise RunOptionsError(f"das: held_out must be a fraction strictly between 0 and 1, got {o['held_out']!r}")
    for key in ("steps", "batch_size", "eval_every", "patience", "n_pairs"):
        v = o[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise RunOptionsError(f"das: {key} must be a positive int, got {v!r}")
    if not (float(o["lr"]) > 0 and math.isfinite(float(o["lr"]))):
        raise RunOptionsError(f"das: lr must be a positive number, got {o['lr']!r}")


def _variable_values(variable: str | Callable[[Dataset], Any], data: Dataset) -> np.ndarray:
    if isinstance(variable, str):
        if variable == "label" and data.labels is not None:
            raw: Any = data.labels
        elif variable in data.columns:
            raw = data.columns[variable].tolist()
        else:
            raise FeatureError(f"das: variable {variable!r} is not a column of the data ({list(data.columns)})")
    elif callable(variable):
        try:
            raw = variable(data)
        except Exception as exc:
            raise FeatureError(f"das: the variable function failed ({type(exc).__name__}: {exc})") from exc
    else:
        raise FeatureError(f"das: variable must be a column name or a function of the data, got {type(variable).__name__}")
    if isinstance(raw, torch.Tensor):
        raw = raw.detach().cpu().numpy()
    if isinstance(raw, np.ndarray) and raw.ndim != 1:
        raise FeatureError(f"das: the variable must give one value per example ([N] = [{len(data)}]), got shape {raw.shape}")
    items = list(raw)
    if len(items) != len(data):
        raise FeatureError(f"das: the variable must give one value per example ([N] = [{len(data)}]), got {len(items)}")
    out = np.empty(len(items), dtype=object)
    for i, v in enumerate(items):
        out[i] = v.item() if isinstance(v, np.generic) else v
    return out


def _site_mask(positions: Any, data: Dataset) -> torch.Tensor:
    n, t = len(data), data.seq_len
    mask = torch.zeros(n, t, dtype=torch.bool)
    if positions is None:
        return mask | True
    if callable(positions):
        raw = torch.as_tensor(np.asarray(positions(data)))
        if raw.shape == (n, t):
            return raw.bool()
        if raw.shape != (n,) or raw.dtype.is_floating_point:
            raise FeatureError(f"das: a positions function must give [N] = [{n}] ints or an [N, T] mask, got {tuple(raw.shape)}")
        if ((raw < -t) | (raw >= t)).any():
            raise FeatureError(f"das: positions outside 0..{t - 1}")
        mask[torch.arange(n), raw.long() % t] = True
        return mask
    items = [positions] if isinstance(positions, (int, np.integer)) else list(positions)
    for p in items:
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not -t <= p < t:
            raise RunOptionsError(f"das: position {p!r} is outside the sequence (length {t})")
        mask[:, int(p) % t] = True
    if not items:
        raise RunOptionsError("das: positions is empty; give None for every position")
    return mask


def _split(n: int, held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n_test = round(n * held_out)
    if n_test < 2 or n - n_test < 2:
        raise DatasetError(f"das: {n} examples are too few to hold out {held_out:.0%} (need >= 2 on each side)")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


@contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def _frozen(model: Any) -> Iterator[None]:
    """The model's parameters stop requiring gradients for the duration (restored afterwards)."""
    params = list(model.parameters())
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, b in zip(params, before, strict=True):
            p.requires_grad_(b)
