"""The models, data and hypotheses the benchmarks run on.

A :class:`Case` is one model, one dataset and one hypothesis. The shipped models come from
``hypotheses/``; ``gpt2_small`` is GPT-2 small's shape with random weights (vocabulary reduced,
see :func:`gpt2_small`); :func:`grown_hypothesis` builds a valid hypothesis with any number of
interpretation nodes on any model, with example-level features, for the scaling runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

import scrub
from scrub._graph import INPUTS

__all__ = ["Case", "make_case", "grown_hypothesis", "CASES"]

GPT2_VOCAB = 4096
"""GPT-2 small has 50,257 tokens. ``model(tokens)`` unembeds every position while the executor
unembeds only the target, so the full vocabulary would flatter the executor's overhead by ~45%
(the unembedding costs 39M multiply-adds per token against 85M for the 12 blocks). With 4,096
the unembedding is 4% of the body, and the ratio measures the blocks."""


@dataclass
class Case:
    """One benchmark setting."""

    name: str
    model: object
    data: scrub.Dataset
    hypothesis: scrub.Hypothesis

    @property
    def graph(self) -> scrub.ModelGraph:
        return scrub.ModelGraph.from_model(self.model)


def _feature(j: int, k: int):
    """An example-level feature: the token at position ``j`` modulo ``k``."""
    return lambda d, j=j, k=k: d.tokens[:, j] % k


def grown_hypothesis(graph: scrub.ModelGraph, seq_len: int, n_nodes: int, seed: int = 0, fanout: int = 4) -> scrub.Hypothesis:
    """A hypothesis with exactly ``n_nodes`` interpretation nodes (the output included), grown breadth-first.

    Each node gets up to ``fanout`` children, each one upstream component on one port of its
    parent, with a small-alphabet feature of the tokens (token at a position mod 2..4). Raises
    ``ValueError`` when the model is too small to hold that many.
    """
    rng = np.random.default_rng(seed)
    h = scrub.Hypothesis(f"grown, {n_nodes} nodes")
    frontier = [h.output()]
    count = 1
    while count < n_nodes:
        if not frontier:
            raise ValueError(f"the model's graph holds fewer than {n_nodes} nodes at fanout {fanout}")
        parent = frontier.pop(0)
        (m,) = parent.model
        if m in INPUTS:
            continue
        choices = [(p, u) for p in graph.ports(m) for u in graph.upstream(m, p)]
        order = sorted(rng.permutation(len(choices)), key=lambda k: choices[k][1] in INPUTS)  # components first
        for k in order[:fanout]:
            if count >= n_nodes:
                break
            port, up = choices[k]
            child = parent.add(
                f"n{count}",
                model=up,
                port=None if port == "in" else port,
                agree=_feature(int(rng.integers(0, seq_len)), int(rng.integers(2, 5))),
            )
            frontier.append(child)
            count += 1
    return h


def _induction(n: int, seed: int, nodes: int | None) -> Case:
    from hypotheses.induction import load_model, make_data
    from hypotheses.induction.hypotheses import naive

    model, data = load_model(), make_data(n, seed=seed)
    if nodes is None:
        return Case("induction (naive)", model, data, naive())
    return Case(f"induction ({nodes} nodes)", model, data, grown_hypothesis(scrub.ModelGraph.from_model(model), data.seq_len, nodes))


def _paren(n: int, seed: int, nodes: int | None) -> Case:
    from hypotheses.paren import load_model, make_data

    model, data = load_model(), make_data(n, seed=seed)
    h = scrub.Hypothesis("paren: balance and horizon")
    out = h.output()
    a20 = out.add("balance head", model="a2.0", agree="balanced")
    a20.add("count", model="m1", port="v", agree="count_test").add("open proportion", model="a0.0", agree="n_open")
    a20.add("horizon", model="m0", port="k", agree="horizon_test")
    out.add("first char", model="a2.1", agree="first_char_open")
    return Case("paren", model, data, h)


def _tracr(n: int, seed: int, nodes: int | None) -> Case:
    from hypotheses import tracr

    model, data = tracr.load_model("reverse"), tracr.make_data("reverse", n, seed=seed)
    graph = scrub.ModelGraph.from_model(model)
    return Case("tracr reverse (6 nodes)", model, data, grown_hypothesis(graph, data.seq_len, nodes or 6, seed=1))


def gpt2_small(seq_len: int = 32, seed: int = 0):
    """GPT-2 small's shape (12 layers, 12 heads, d_model 768, d_mlp 3072, LayerNorm, gelu_new),
    random weights, vocabulary :data:`GPT2_VOCAB`."""
    torch.manual_seed(seed)
    return scrub.build_model(
        n_layers=12, n_heads=12, d_model=768, d_head=64, d_mlp=3072, d_vocab=GPT2_VOCAB, n_ctx=1024,
        act_fn="gelu_new", normalization_type="LN", seed=seed,
    )


def _gpt2(n: int, seed: int, nodes: int | None, seq_len: int = 32) -> Case:
    model = gpt2_small(seq_len)
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, GPT2_VOCAB, (n, seq_len), generator=g)
    labels = torch.randint(0, GPT2_VOCAB, (n,), generator=g)
    cols = pd.DataFrame({"last_mod4": (tokens[:, -1] % 4).numpy(), "first_mod3": (tokens[:, 0] % 3).numpy()})
    data = scrub.Dataset(tokens, labels, columns=cols)
    h = scrub.Hypothesis("gpt2-shaped: movers, queries, keys")
    out = h.output()
    movers = out.add("movers", model=["a11.0", "a11.1"], agree="last_mod4")
    movers.add("query", model="a9.3", port="q", agree="last_mod4")
    keys = movers.add("keys", model="m5", port="k", agree="first_mod3")
    keys.add("early", model="a2.4", agree=_feature(1, 2))
    out.add("late mlp", model="m10", agree=_feature(seq_len - 2, 3))
    return Case(f"gpt2-small shape (T={seq_len})", model, data, h)


CASES = {"induction": _induction, "paren": _paren, "tracr": _tracr, "gpt2": _gpt2}


def make_case(name: str, n: int, seed: int = 0, nodes: int | None = None, **kw) -> Case:
    """Case ``name`` (a key of :data:`CASES`) on ``n`` examples; ``nodes`` grows a hypothesis of that size."""
    return CASES[name](n, seed, nodes, **kw)
