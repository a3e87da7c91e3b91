"""True and false hypotheses generated from the tracr zoo's RASP programs.

The true hypothesis of a compiled program (its RASP graph on tracr's allocation) must recover
>= 99% of the loss; the deliberately false ones at most 50%. The cases of
``hypotheses.tracr.suite`` run once each here (fixed seeds: the figures are deterministic).
The ``from_program`` test compiles a new program with tracr (skipped without the extra).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import scrub
from hypotheses import tracr as zoo
from hypotheses.tracr.hypotheses import false_hypotheses, feature, metric, neuron_hypothesis, true_hypothesis
from hypotheses.tracr.suite import CASES, FALSE_RANGES

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models():
    return {name: zoo.load_model(name) for name in zoo.PROGRAMS}


def _score(case, models):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = case.data(case.n, case.data_seed)
        return scrub.run(models[case.tags[1]], case.hypothesis(), data, seed=case.seed, n_seeds=case.n_seeds,
                         metric=case.metric)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case, models) -> None:
    """True hypotheses recover >= 99%, false ones <= 50%, and each stays in its suite range."""
    r = _score(case, models)
    if case.kind == "true":
        assert r.loss_recovered >= 0.99, f"{case.name}: {r}"
        # the model computes the program exactly, so the scrubbed loss is the model's own
        assert r.loss_scrubbed == pytest.approx(r.loss_model, abs=1e-6)
    else:
        assert r.loss_recovered <= 0.5, f"{case.name}: {r}"
    lo, hi = case.expected
    assert lo <= r.loss_recovered <= hi, f"{case.name}: {r.loss_recovered:.4f} outside {case.expected}"


def test_every_program_has_cases() -> None:
    names = {c.name for c in CASES}
    for name in zoo.PROGRAMS:
        assert f"tracr/{name}/true" in names
        assert FALSE_RANGES[name], name
        assert set(false_hypotheses(name)) == set(FALSE_RANGES[name])


@pytest.mark.parametrize("name", zoo.PROGRAMS)
def test_true_hypothesis_is_the_allocation(name: str) -> None:
    """Every allocated component is one node; its feature is the tuple of the SOps it computes."""
    spec = zoo.load_spec(name)
    h = true_hypothesis(name)
    nodes = [n for n in h.nodes() if n is not h.root]
    by_comp: dict[str, set[str]] = {}
    for n in nodes:
        (comp,) = n.model
        by_comp.setdefault(comp, set()).add(n.agree.__name__)
    for comp, sops in spec["components"].items():
        assert by_comp[comp] == {"+".join(sops)}, (comp, by_comp.get(comp))
    assert set(by_comp) - set(spec["components"]) <= {"embed", "pos"}
    (top,) = h.root.children
    assert top.model == tuple(spec["sops"][spec["output_sop"]]["computed_by"][-1:])
    assert top.positions == [spec["max_seq_len"]]


def test_feature_values() -> None:
    data = zoo.make_data("pair_balance", 3, seed=0)
    values = feature(["bools_open_2", "bools_close_5"])(data)
    assert values.shape == (3, 7)
    assert (values[:, 0] == "BOS").all()
    for i, x in enumerate(data.columns["input"]):
        assert list(values[i, 1:]) == [(t == "(", t == ")") for t in x]


def test_merged_component_in_shuffle_dyck() -> None:
    """m0 computes three SOps on separate neurons: one node, the union of their inputs as children."""
    h = true_hypothesis("shuffle_dyck")
    m0 = [n for n in h.nodes() if n.model == ("m0",)]
    assert {n.agree.__name__ for n in m0} == {"bools_close_9+bools_open_6+length_2"}
    assert {c.model for c in m0[0].children} == {("embed",), ("a0.0",)}


@pytest.mark.parametrize("via", ["neurons", "subspace"])
def test_one_node_per_sop_in_shuffle_dyck(via: str) -> None:
    """m0's three SOps are three nodes (its neuron sets, or the dimensions they write), each with one SOp's feature."""
    h = neuron_hypothesis("shuffle_dyck", via=via)
    assert not [n.name for n in h.nodes()[1:] if "+" in n.agree.__name__]  # no tuple features
    m0 = {n.agree.__name__: n for n in h.nodes() if n.model == ("m0",)}
    assert set(m0) == {"bools_close_9", "bools_open_6", "length_2"}
    if via == "neurons":
        sets = [set(n.neurons) for n in m0.values()]
        assert sum(map(len, sets)) == len(set().union(*sets)) == 16  # disjoint: neurons 0..15
        assert m0["bools_open_6"].neurons == (15,)
    else:
        assert all(n.subspace is not None and n.neurons is None for n in m0.values())
        assert m0["bools_open_6"].subspace.dim == 1
    assert {c.model for c in m0["bools_open_6"].children} == {("embed",)}
    assert {c.model for c in m0["length_2"].children} == {("a0.0",)}
    assert any(c.name == f"tracr/shuffle_dyck/true/{via}" for c in CASES)


def test_numerical_metric_is_squared_error() -> None:
    data = zoo.make_data("frac_prevs", 4, seed=0)
    target = torch.tensor([float(v) for v in data.columns["target"]])
    loss = metric("frac_prevs")(torch.stack([target + 0.5, torch.zeros(4)], 1), data)
    assert torch.allclose(loss, torch.full((4,), 0.25))
    assert metric("reverse") == "loss"


def test_from_program_on_a_new_program() -> None:
    """A program not in the zoo, compiled with tracr in one call, recovers >= 99%; a broken copy does not."""
    pytest.importorskip("tracr")
    from tracr.rasp import rasp

    from hypotheses.tracr.hypotheses import from_program

    prev = rasp.Map(lambda i: i - 1, rasp.indices)
    upper = rasp.Map(lambda t: t.upper(), rasp.tokens)
    program = rasp.categorical(rasp.Aggregate(rasp.Select(rasp.indices, prev, rasp.Comparison.EQ), upper))
    model, h, data_fn = from_program(program, {"a", "b", "c"}, 4, name="prev_upper")
    data = data_fn(200, seed=0)
    r = scrub.run(model, h, data, seed=0, metric=metric(h.spec))
    assert r.loss_recovered >= 0.99
    assert r.loss_model < r.loss_baseline
    # m0 computes both maps on separate neurons: one node, read through the head's q and v
    (head,) = h.root.children
    assert {c.port for c in head.children if c.model == ("m0",)} == {("q",), ("v",)}
    broken = h.without(*[c.name for c in head.children if c.port == ("v",)])
    assert scrub.run(model, broken, data, seed=0, metric=metric(h.spec)).loss_recovered <= 0.5
