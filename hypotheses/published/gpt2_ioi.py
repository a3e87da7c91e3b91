"""GPT-2 small and the indirect-object-identification (IOI) circuit of Wang et al. (2022).

Source: Wang, Variengien, Conmy, Shlegeris, Steinhardt, "Interpretability in the Wild: a Circuit
for Indirect Object Identification in GPT-2 small" (arXiv 2211.00593, ICLR 2023), Figure 2 and
Section 3. The head lists in :data:`HEADS` are the paper's (as also listed by ACDC and ARENA).

The weights are never downloaded: :func:`load_model` and :func:`load_tokenizer` read a local copy
(``path=``, then ``$SCRUB_GPT2_PATH``, then the Hugging Face cache) and raise
:class:`~hypotheses.published.local.WeightsUnavailable` saying what to download when there is none.

- data: :func:`make_data` (IOI prompts from the paper's templates; needs GPT-2's tokenizer, or any
  object with ``encode``);
- hypotheses: :func:`circuit` (true), :func:`false_name_movers_swapped`,
  :func:`false_s_inhibition_carries_io` (false);
- metric: :func:`logit_difference` (the paper's IO-minus-S logit difference, as a loss).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import scrub
from hypotheses.published.ioi_words import NAMES, OBJECTS, PLACES, TEMPLATES
from hypotheses.published.local import LocalWeights, WeightsUnavailable

__all__ = [
    "WEIGHTS", "SHAPE", "HEADS", "SUITE_DATA", "WeightsUnavailable",
    "locate", "unavailable", "load_tokenizer", "load_model", "random_model", "make_data", "graph",
    "names_feature", "io_feature", "s_feature", "end_pos", "s2_pos", "s1_next_pos",
    "circuit", "false_name_movers_swapped", "false_s_inhibition_carries_io", "logit_difference",
]

#: Where GPT-2 small may be on this machine, and what to download when it is not.
WEIGHTS = LocalWeights(
    title="GPT-2 small (for the IOI cases)",
    repo_ids=("openai-community/gpt2", "gpt2"),
    required=(("config.json",), ("model.safetensors", "pytorch_model.bin"), ("tokenizer.json", "vocab.json")),
    env_var="SCRUB_GPT2_PATH",
    files="config.json, model.safetensors, tokenizer.json, vocab.json, merges.txt (about 550 MB)",
    download="config.json model.safetensors tokenizer.json vocab.json merges.txt",
)

#: GPT-2 small's graph shape: 12 layers of 12 heads, with MLPs.
SHAPE: dict[str, Any] = dict(n_layers=12, n_heads=12, attn_only=False)

#: The IOI circuit's heads (Wang et al. 2022, Fig. 2), as scrub graph nodes.
HEADS: dict[str, list[str]] = {
    "name_mover": ["a9.9", "a9.6", "a10.0"],
    "backup_name_mover": ["a10.10", "a10.6", "a10.2", "a10.1", "a11.2", "a9.7", "a9.0", "a11.9"],
    "negative_name_mover": ["a10.7", "a11.10"],
    "s_inhibition": ["a7.3", "a7.9", "a8.6", "a8.10"],
    "induction": ["a5.5", "a5.8", "a5.9", "a6.9"],
    "duplicate_token": ["a0.1", "a0.10", "a3.0"],
    "previous_token": ["a2.2", "a4.11"],
}


# -- loading ---------------------------------------------------------------------------------
def locate(path: str | os.PathLike | None = None) -> Path:
    """The folder of the local GPT-2 small copy (raises :class:`WeightsUnavailable` when none)."""
    return WEIGHTS.locate(path)


def unavailable(path: str | os.PathLike | None = None) -> str | None:
    """Why the IOI cases cannot run here (what to download), or None when the files are present."""
    try:
        locate(path)
    except WeightsUnavailable as exc:
        return str(exc)
    return None


@contextmanager
def _offline():
    """``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` for the duration (restored after)."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_tokenizer(path: str | os.PathLike | None = None):
    """GPT-2's tokenizer from the local copy (``local_files_only``; never downloads)."""
    folder = locate(path)
    from transformers import AutoTokenizer

    with _offline():
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def load_model(path: str | os.PathLike | None = None, device: str = "cpu"):
    """GPT-2 small as a TransformerLens 4 ``TransformerBridge`` (eval mode), from a local copy.

    Looks at ``path``, then ``$SCRUB_GPT2_PATH``, then the Hugging Face cache; raises
    :class:`WeightsUnavailable` (a ``FileNotFoundError``) naming the files to download when none
    holds them, and ``ValueError`` when the copy found is not 12 layers x 12 heads. The HF model
    is read with ``local_files_only`` under ``HF_HUB_OFFLINE=1`` and wrapped by :func:`scrub.from_hf`:
    raw HF weights (no LayerNorm folding), which is what scrub's executor rebuilds q/k/v from.
    """
    folder = locate(path)  # fails fast, before importing transformers
    from transformers import GPT2LMHeadModel

    tokenizer = load_tokenizer(folder)
    with _offline():
        hf = GPT2LMHeadModel.from_pretrained(str(folder), local_files_only=True)
    model = scrub.from_hf(hf, tokenizer=tokenizer, device=device)
    shape = (int(model.cfg.n_layers), int(model.cfg.n_heads))
    if shape != (SHAPE["n_layers"], SHAPE["n_heads"]):
        raise ValueError(
            f"{folder} holds a model of {shape[0]} layers x {shape[1]} heads, not GPT-2 small "
            f"({SHAPE['n_layers']} x {SHAPE['n_heads']}): the IOI head names would not mean anything there"
        )
    model.eval()
    return model


def random_model(d_model: int = 48, vocab_size: int = 50257, n_ctx: int = 64, seed: int = 0):
    """A GPT-2-small-shaped model (12 layers x 12 heads) with random weights, built offline with :func:`scrub.from_hf`.

    Its scores mean nothing about IOI; it lets the IOI hypotheses, data and metric run end to end
    on GPT-2's architecture without the real weights. ``d_model`` must be a multiple of 12.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=SHAPE["n_layers"], n_head=SHAPE["n_heads"], n_embd=d_model, vocab_size=vocab_size,
                     n_positions=n_ctx, bos_token_id=0, eos_token_id=0)
    return scrub.from_hf(GPT2LMHeadModel(cfg))


def graph() -> scrub.ModelGraph:
    """GPT-2 small's scrub graph, built from its shape alone (no weights needed)."""
    return scrub.ModelGraph.build(**SHAPE)


# -- data ------------------------------------------------------------------------------------
#: The suite's data: the paper's running-example template ("When S and IO went to the PLACE, S
#: gave a OBJECT to") and ten names, so that every feature has agreeing examples at n = 500
#: ((order, S): 20 values; (order, IO, S): 180).
SUITE_DATA: dict[str, Any] = dict(templates=(15,), names=NAMES[:10])


def _single_token(tokenizer, word: str) -> int:
    ids = list(tokenizer.encode(word, add_special_tokens=False))
    if len(ids) != 1:
        raise ValueError(f"IOI data: {word!r} is {len(ids)} tokens with this tokenizer, not one: {ids}")
    return int(ids[0])


def make_data(
    n: int,
    seed: int = 0,
    tokenizer=None,
    *,
    templates: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    prepend_bos: bool = True,
    path: str | os.PathLike | None = None,
) -> scrub.Dataset:
    """``n`` IOI prompts, e.g. "When Mary and John went to the store, John gave a drink to" -> " Mary".

    Each example draws (seeded by ``seed``) a template of :data:`~hypotheses.published.ioi_words.TEMPLATES`
    (``templates=`` restricts them by index), an order, two distinct names of ``NAMES`` (or of
    ``names=``; the indirect object IO and the subject S), a place and an object. Order ``"ABB"`` names IO first
    ("When IO and S ..., S gave ... to"), ``"BAB"`` names S first. The answer is ``" " + IO``.

    ``tokenizer`` is anything with ``encode(text, add_special_tokens=False) -> list[int]`` (and
    ``bos_token_id`` / ``eos_token_id`` when ``prepend_bos``); default: GPT-2's, from the local
    copy (``WeightsUnavailable`` when it is not there). Every name must be one token with its
    leading space; a tokenizer for which one is not raises ``ValueError``.

    Scrubbing needs agreeing examples: with all 16 templates and 110 names, ``(template, order,
    S)`` has ~3,500 values and most examples agree with nobody but themselves (scrub warns, and the
    hypothesis degenerates to Exact). :data:`SUITE_DATA` (one template, ten names) is what the
    suite uses.

    Templates differ in length: prompts are right-padded with the EOS token and scored at their
    own last token (``target_pos``). GPT-2 is causal, so padding after it changes nothing read there.

    Columns: ``label`` (= ``io``, the IO token), ``io``, ``s`` (token ids), ``io_name``,
    ``s_name``, ``template``, ``order`` ("ABB"/"BAB"), ``place``, ``object``, ``io_pos``,
    ``s1_pos``, ``s2_pos``, ``s1_next_pos`` (= ``s1_pos + 1``), ``end_pos`` (the last token,
    " to"), ``length``, ``text``.
    """
    if n < 1:
        raise ValueError(f"make_data: n must be >= 1, got {n}")
    if tokenizer is None:
        tokenizer = load_tokenizer(path)
    chosen = list(range(len(TEMPLATES))) if templates is None else [int(t) for t in templates]
    bad = [t for t in chosen if not 0 <= t < len(TEMPLATES)]
    if not chosen or bad:
        raise ValueError(f"make_data: templates must be indices 0..{len(TEMPLATES) - 1}, got {list(templates or [])}")
    pool = tuple(NAMES if names is None else names)
    if len(pool) < 2:
        raise ValueError("make_data: need at least two names")
    name_ids = [_single_token(tokenizer, " " + name) for name in pool]
    if len(set(name_ids)) != len(name_ids):
        raise ValueError("IOI data: two names share one token id with this tokenizer")
    bos = getattr(tokenizer, "bos_token_id", None)
    if prepend_bos and bos is None:
        raise ValueError("make_data: prepend_bos=True needs tokenizer.bos_token_id")
    pad = getattr(tokenizer, "eos_token_id", None)
    pad = bos if pad is None else pad

    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    seqs: list[list[int]] = []
    for _ in range(n):
        t = int(rng.choice(chosen))
        order = "ABB" if rng.integers(2) == 0 else "BAB"
        i_io, i_s = (int(i) for i in rng.choice(len(pool), size=2, replace=False))
        place, obj = str(rng.choice(PLACES)), str(rng.choice(OBJECTS))
        template = TEMPLATES[t]
        if order == "ABB":
            template = template.replace("{S} and {IO}", "{IO} and {S}", 1)
        text = template.format(S=pool[i_s], IO=pool[i_io], PLACE=place, OBJECT=obj)
        ids = ([int(bos)] if prepend_bos else []) + [int(x) for x in tokenizer.encode(text, add_special_tokens=False)]
        io, s = name_ids[i_io], name_ids[i_s]
        if ids.count(io) != 1 or ids.count(s) != 2:
            raise ValueError(f"IOI data: {text!r} does not tokenize to one IO and two S tokens: {ids}")
        s1 = ids.index(s)
        s2 = len(ids) - 1 - ids[::-1].index(s)
        rows.append(dict(
            label=io, io=io, s=s, io_name=pool[i_io], s_name=pool[i_s], template=t, order=order,
            place=place, object=obj, io_pos=ids.index(io), s1_pos=s1, s2_pos=s2, s1_next_pos=s1 + 1,
            end_pos=len(ids) - 1, length=len(ids), text=text,
        ))
        seqs.append(ids)
    width = max(len(s) for s in seqs)
    tokens = torch.tensor([s + [int(pad)] * (width - len(s)) for s in seqs], dtype=torch.long)
    columns = pd.DataFrame(rows)
    return scrub.Dataset(tokens, torch.tensor(columns["label"].to_numpy()), columns=columns,
                         target_pos=torch.tensor(columns["end_pos"].to_numpy()))


# -- features and positions -------------------------------------------------------------------
def _tuples(d: scrub.Dataset, *cols: str) -> pd.Series:
    return pd.Series(list(zip(*(d.columns[c] for c in cols))))


def names_feature(d: scrub.Dataset) -> pd.Series:
    """(template, order, IO, S): the layout and both names, so every name sits at the same place."""
    return _tuples(d, "template", "order", "io", "s")


def io_feature(d: scrub.Dataset) -> pd.Series:
    """(template, order, IO): what the name movers are said to output (the layout keeps positions aligned)."""
    return _tuples(d, "template", "order", "io")


def s_feature(d: scrub.Dataset) -> pd.Series:
    """(template, order, S): the duplicated name and where it is, what S-inhibition, induction,
    duplicate-token and previous-token heads are said to carry."""
    return _tuples(d, "template", "order", "s")


def end_pos(d: scrub.Dataset) -> np.ndarray:
    """The last prompt token (" to"), where the answer is read."""
    return d.columns["end_pos"].to_numpy()


def s2_pos(d: scrub.Dataset) -> np.ndarray:
    """The second occurrence of S."""
    return d.columns["s2_pos"].to_numpy()


def s1_next_pos(d: scrub.Dataset) -> np.ndarray:
    """The token after the first S (where a previous-token head writes S1)."""
    return d.columns["s1_next_pos"].to_numpy()


def logit_difference(logits: torch.Tensor, data: scrub.Dataset) -> torch.Tensor:
    """Wang et al.'s metric as a loss (lower is better): ``-(logit[IO] - logit[S])`` at the end."""
    rows = torch.arange(logits.shape[0])
    io = torch.tensor(data.columns["io"].to_numpy(dtype=np.int64))
    s = torch.tensor(data.columns["s"].to_numpy(dtype=np.int64))
    return -(logits[rows, io] - logits[rows, s])


# -- hypotheses --------------------------------------------------------------------------------
def _circuit(name: str, heads: dict[str, list[str]], movers: dict[str, list[str]], s_inh_agree) -> scrub.Hypothesis:
    """Every mover group reads IO/S names through K and V and the S-inhibition signal through Q;
    S-inhibition reads induction and duplicate-token heads at S2 (K and V); induction heads read
    the previous-token heads at S1+1 (K)."""
    h = scrub.Hypothesis(name)
    out = h.output()
    groups = {label: out.add(label, model=nodes, positions=end_pos, agree=io_feature)
              for label, nodes in movers.items() if nodes}
    first = next(iter(groups.values()))
    names = first.add("name tokens", model=["embed", "m0"], port=["k", "v"], agree=names_feature)
    s_inh = first.add("S-inhibition", model=heads["s_inhibition"], port="q", positions=end_pos, agree=s_inh_agree)
    for group in list(groups.values())[1:]:
        group.add(names)
        group.add(s_inh)
    induction = s_inh.add("induction", model=heads["induction"], port=["k", "v"], positions=s2_pos, agree=s_feature)
    s_inh.add("duplicate tokens", model=heads["duplicate_token"], port=["k", "v"], positions=s2_pos, agree=s_feature)
    induction.add("previous tokens", model=heads["previous_token"], port="k", positions=s1_next_pos, agree=s_feature)
    return h


def circuit(heads: dict[str, list[str]] | None = None, *, backup: bool = True) -> scrub.Hypothesis:
    """The IOI circuit (Wang et al. 2022), at the positions the paper gives.

    At the end token, the name movers (9.9, 9.6, 10.0; with ``backup``, also the backup name
    movers 10.10, 10.6, 10.2, 10.1, 11.2, 9.7, 9.0, 11.9 and the negative name movers 10.7, 11.10)
    output the IO name (they agree on IO). Their K and V read the names from the embeddings
    (``embed`` and ``m0``, GPT-2's first MLP acting as an extended embedding); their Q reads the
    S-inhibition heads (7.3, 7.9, 8.6, 8.10) at the end, which carry S. Those read, through K and V
    at S2, the induction heads (5.5, 5.8, 5.9, 6.9) and duplicate-token heads (0.1, 0.10, 3.0); the
    induction heads' K at S1+1 reads the previous-token heads (2.2, 4.11). Every feature includes
    the template and order, so resampled examples keep the positions aligned. Everything else
    (other heads, every MLP but m0 into the movers' K/V, all direct paths) is claimed unimportant.
    ``heads`` overrides :data:`HEADS` (same keys).
    """
    heads = {**HEADS, **(heads or {})}
    movers = {"name movers": heads["name_mover"]}
    if backup:
        movers["backup name movers"] = heads["backup_name_mover"]
        movers["negative name movers"] = heads["negative_name_mover"]
    return _circuit("IOI circuit" + ("" if backup else " (no backup)"), heads, movers, s_feature)


def false_name_movers_swapped(seed: int = 0) -> scrub.Hypothesis:
    """False: the circuit with the name movers replaced by three layer-9 heads that are in no IOI
    class (drawn with ``seed`` from 9.1-9.5, 9.8, 9.10, 9.11), and no backup or negative movers."""
    in_circuit = {h for hs in HEADS.values() for h in hs}
    pool = [f"a9.{i}" for i in range(SHAPE["n_heads"]) if f"a9.{i}" not in in_circuit]
    picked = sorted(np.random.default_rng(seed).choice(pool, size=3, replace=False).tolist(), key=lambda s: int(s[3:]))
    heads = {**HEADS, "name_mover": picked}
    return _circuit(f"IOI: name movers swapped for {', '.join(picked)}", heads, {"name movers": picked}, s_feature)


def false_s_inhibition_carries_io() -> scrub.Hypothesis:
    """False: the circuit, but the S-inhibition heads are said to carry the IO name (they agree on
    IO, so the name movers' Q is fed the S-inhibition signal of a prompt with another subject)."""
    movers = {"name movers": HEADS["name_mover"], "backup name movers": HEADS["backup_name_mover"],
              "negative name movers": HEADS["negative_name_mover"]}
    return _circuit("IOI: S-inhibition carries IO", HEADS, movers, io_feature)
