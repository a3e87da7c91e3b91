"""Unit tests of the plan: treeification and the sampling invariants every instance must satisfy."""

import numpy as np
import torch

import scrub
from scrub._plan import make_plan
from tests.conftest import small_model


def data(n=200, t=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 7, (n, t), generator=g)
    return scrub.Dataset(tokens, labels=tokens[:, -1])


def test_every_instance_agrees_with_its_parent_on_its_feature():
    d = data()
    graph = scrub.ModelGraph.from_model(small_model(attn_only=False))
    h = scrub.Hypothesis("tree")
    f1 = lambda d: d.tokens[:, -1] % 3
    f2 = lambda d: d.tokens[:, 0] % 2
    a = h.output().add("A", model="a1.0", agree=f1)
    b = a.add("B", model="a0.1", port="k", agree=f2)
    a.add("E", model="embed", port="q")  # Exact
    h.output().add("R", model="m0", agree=scrub.Random())
    b.add("B2", model="embed", agree=f2)
    plan = make_plan(h, graph, d, seed=3)
    by_name = {i.node.name: i for i in plan.instances}
    assert len(plan.instances) == 6 and plan.root.parent is None
    np.testing.assert_array_equal(plan.root.examples, np.arange(len(d)))
    feats = {"A": f1(d).numpy(), "B": f2(d).numpy(), "B2": f2(d).numpy()}
    for name, f in feats.items():
        inst = by_name[name]
        parent = plan.instances[inst.parent]
        np.testing.assert_array_equal(f[inst.examples], f[parent.examples])
    np.testing.assert_array_equal(by_name["E"].examples, by_name["A"].examples)  # Exact: the parent's example
    # Random ignores the reference: its examples are not tied to the root's
    assert (by_name["R"].examples != plan.root.examples).mean() > 0.8
    # leaves have no random context, everything else one per reference
    assert [i.node.name for i in plan.instances if i.is_leaf] == [n for n in ("B2", "E", "R") if by_name[n].is_leaf]
    assert all(i.random is not None and i.random.shape == (len(d),) for i in plan.instances if not i.is_leaf)
    # the agreeing samples are not just copies of the parent's example
    assert (by_name["A"].examples != plan.root.examples).mean() > 0.5


def test_the_same_seed_gives_the_same_plan():
    d = data()
    graph = scrub.ModelGraph.from_model(small_model())
    h = scrub.Hypothesis("h")
    a = h.output().add("A", model="a1.0", agree=lambda d: d.tokens[:, -1] % 3)
    a.add("B", model="a0.0", agree=lambda d: d.tokens[:, 1] % 2)
    p, q, r = make_plan(h, graph, d, seed=1), make_plan(h, graph, d, seed=1), make_plan(h, graph, d, seed=2)
    for x, y in zip(p.instances, q.instances, strict=True):
        np.testing.assert_array_equal(x.examples, y.examples)
    assert any(not np.array_equal(x.examples, y.examples) for x, y in zip(p.instances, r.instances, strict=True))


def test_a_node_attached_twice_is_treeified_into_two_instances():
    d = data()
    graph = scrub.ModelGraph.from_model(small_model(attn_only=False))
    h = scrub.Hypothesis("shared")
    shared_feature = lambda d: d.tokens[:, 2] % 2
    a = h.output().add("A", model="a1.0", agree=lambda d: d.tokens[:, -1] % 3)
    m = h.output().add("M", model="m1", agree=lambda d: d.tokens[:, -1] % 2)
    s = a.add("S", model="a0.0", agree=shared_feature)
    m.add(s)
    plan = make_plan(h, graph, d, seed=0)
    copies = [i for i in plan.instances if i.node.name == "S"]
    assert len(copies) == 2 and not np.array_equal(copies[0].examples, copies[1].examples)
    f = shared_feature(d).numpy()
    for c in copies:
        np.testing.assert_array_equal(f[c.examples], f[plan.instances[c.parent].examples])
