"""Variables finer than components: neuron sets of an MLP and residual-stream sites.

Exact identities the definitions give, refusals, and the batched executor against the recursive
oracle on random hypotheses mixing every node kind (heads, MLPs, neuron sets, sites, subspaces,
positions). Size: 12 random models x 1 hypothesis x 8 references, plus the hand-written cases.
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scrub
from scrub._graph import INPUTS
from scrub.errors import HypothesisError, UnsupportedModelError
from scrub.internal import make_plan, run_clean, run_plan, run_reference
from tests.conftest import small_model
from tests.test_oracle import VOCAB, random_data, random_feature, random_model, random_positions

D = 12


@pytest.fixture(scope="module")
def setup():
    model = small_model(n_layers=3, attn_only=False, norm="LN", n_heads=2, d_model=D, d_vocab=VOCAB, n_ctx=8)
    graph = scrub.ModelGraph.from_model(model)
    data = random_data(np.random.default_rng(0), mask=False)
    return model, graph, data


def run(setup, h, seed=1):
    model, graph, data = setup
    return run_plan(model, make_plan(h, graph, data, seed=seed, warn=False), data)


def both(setup, h, seed=1):
    model, graph, data = setup
    plan = make_plan(h, graph, data, seed=seed, warn=False)
    return run_plan(model, plan, data), run_reference(model, plan, data)


def mlp_claim(**kw):
    h = scrub.Hypothesis("h")
    top = h.output().add("top", model="a2.0", agree=lambda d: d.tokens[:, -1] % 2)
    n = top.add("mlp", model="m1", agree=lambda d: d.tokens[:, 1] % 2, **kw)
    n.add("into", model="a0.1", agree=lambda d: d.tokens[:, 2] % 2)
    return h


# -- neuron sets ---------------------------------------------------------------------------
def test_all_neurons_is_the_mlp_node(setup):
    d_mlp = setup[1].d_mlp
    assert d_mlp == 4 * D
    plain, every = run(setup, mlp_claim()), run(setup, mlp_claim(neurons=range(d_mlp)))
    assert (plain - every).abs().max().item() < 1e-5
    some = run(setup, mlp_claim(neurons=[0, 1, 2]))
    assert (plain - some).abs().max().item() > 1e-3  # the other neurons matter here


def test_disjoint_neuron_sets_together_are_the_mlp_node(setup):
    d_mlp = setup[1].d_mlp
    rng = np.random.default_rng(0)
    perm = rng.permutation(d_mlp)
    h = scrub.Hypothesis("split")
    top = h.output().add("top", model="a2.0", agree=lambda d: d.tokens[:, -1] % 2)
    top.add("half a", model="m1", neurons=perm[: d_mlp // 3].tolist())
    top.add("half b", model="m1", neurons=perm[d_mlp // 3 :].tolist())
    g = scrub.Hypothesis("whole")
    g.output().add("top", model="a2.0", agree=lambda d: d.tokens[:, -1] % 2).add("mlp", model="m1")
    fast, slow = both(setup, h)
    assert (fast - slow).abs().max().item() < 1e-5
    assert (fast - run(setup, g)).abs().max().item() < 1e-5


def test_a_neuron_node_with_children_matches_the_oracle(setup):
    """Its children patch the MLP's input; only the claimed neurons' share reaches the parent."""
    fast, slow = both(setup, mlp_claim(neurons=[3, 7, 9]))
    assert (fast - slow).abs().max().item() < 1e-5
    assert (fast - run(setup, mlp_claim())).abs().max().item() > 1e-3


def test_neuron_refusals(setup):
    _model, graph, data = setup
    h = scrub.Hypothesis("bad")
    out = h.output()
    with pytest.raises(HypothesisError, match=r"'x'.*single MLP.*attention heads"):
        out.add("x", model="a1.0", neurons=[1])
    with pytest.raises(HypothesisError, match=r"'x'.*empty"):
        out.add("x", model="m1", neurons=[])
    with pytest.raises(HypothesisError, match=r"'x'.*non-negative ints.*float"):
        out.add("x", model="m1", neurons=[1.5])
    with pytest.raises(HypothesisError, match=r"'x'.*more than once"):
        out.add("x", model="m1", neurons=[2, 2])
    with pytest.raises(HypothesisError, match=r"'x'.*single MLP"):
        out.add("x", model=["m0", "m1"], neurons=[2])
    out.add("x", model="m1", neurons=[3, 4 * D])
    with pytest.raises(HypothesisError, match=rf"'x': neurons \[{4 * D}\] are out of range.*0\.\.{4 * D - 1}"):
        make_plan(h, graph, data)
    h = scrub.Hypothesis("overlap")
    h.output().add("x", model="m1", neurons=[1, 2])
    h.output().add("y", model="m1", neurons=[2, 3])
    with pytest.raises(HypothesisError, match=r"'x' and 'y' both claim the treeified path m1 -> out\.in"):
        make_plan(h, graph, data)
    h = scrub.Hypothesis("with the mlp")
    h.output().add("x", model="m1", neurons=[1, 2])
    h.output().add("y", model="m1", positions=[0])
    with pytest.raises(HypothesisError, match=r"'x' and 'y' both claim"):
        make_plan(h, graph, data)
    post = scrub.ModelGraph.build(2, 2, whole_layers=True, d_mlp=8)
    h = scrub.Hypothesis("post-norm")
    h.output().add("x", model="m1", neurons=[1])
    with pytest.raises(HypothesisError, match=r"'x'.*post-MLP norm.*'m1'"):
        h.validate(post)


def test_neurons_are_refused_on_post_norm_architectures():
    from scrub._architecture import Architecture
    from tests.architectures import BUILDERS

    model = BUILDERS["Gemma2ForCausalLM"]()
    arch = Architecture.of(model)
    with pytest.raises(UnsupportedModelError, match="post-MLP norm"):
        arch.W_out(model, 0)
    graph = scrub.ModelGraph.from_model(model)
    h = scrub.Hypothesis("h")
    h.output().add("x", model="m1", neurons=[0])
    with pytest.raises(HypothesisError, match="post-MLP norm"):
        h.validate(graph)


def test_gated_mlp_neurons_read_the_input_of_w_out():
    """Llama's MLP: act(gate) * up is what W_out reads; all neurons as two disjoint sets is the MLP."""
    from tests.architectures import BUILDERS

    model = BUILDERS["LlamaForCausalLM"]()
    graph = scrub.ModelGraph.from_model(model)
    data = scrub.Dataset(torch.randint(0, 11, (6, 5), generator=torch.Generator().manual_seed(0)),
                         labels=torch.zeros(6, dtype=torch.long))
    d_mlp = graph.d_mlp
    h = scrub.Hypothesis("split")
    top = h.output().add("top", model="a1.0", agree=lambda d: d.tokens[:, -1] % 2)
    top.add("a", model="m0", neurons=range(0, d_mlp, 2))  # Exact: both halves on the parent's example
    top.add("b", model="m0", neurons=range(1, d_mlp, 2))
    g = scrub.Hypothesis("whole")
    g.output().add("top", model="a1.0", agree=lambda d: d.tokens[:, -1] % 2).add("m", model="m0")
    plan = make_plan(h, graph, data, seed=3, warn=False)
    fast, slow = run_plan(model, plan, data), run_reference(model, plan, data)
    whole = run_plan(model, make_plan(g, graph, data, seed=3, warn=False), data)
    assert (fast - slow).abs().max().item() < 1e-4
    assert (fast - whole).abs().max().item() < 1e-4


# -- residual sites ------------------------------------------------------------------------
def test_the_final_site_as_a_leaf_is_the_clean_model(setup):
    model, graph, data = setup
    h = scrub.Hypothesis("everything")
    h.output().add("resid", model=f"r{graph.n_layers}")
    fast, slow = both(setup, h)
    clean = run_clean(model, data)
    assert (fast - clean).abs().max().item() < 1e-5
    assert (slow - clean).abs().max().item() < 1e-5
    result = scrub.run(model, h, data, n_seeds=1)
    assert result.loss_scrubbed == pytest.approx(result.loss_model, abs=1e-6)
    assert result.loss_recovered == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_a_leaf_site_is_every_component_below_it_as_one_leaf(setup, layer):
    _, graph, _ = setup

    def h(model):
        h = scrub.Hypothesis("h")
        top = h.output().add("top", model="a2.1", agree=lambda d: d.tokens[:, -1] % 2)
        top.add("below", model=model, port="v", agree=lambda d: d.tokens[:, 0] % 3)
        return h

    site = run(setup, h(f"r{layer}"))
    comps = run(setup, h(graph.below(f"r{layer}")))
    assert (site - comps).abs().max().item() < 1e-5
    fast, slow = both(setup, h(f"r{layer}"))
    assert (fast - slow).abs().max().item() < 1e-5


def test_a_site_whose_child_claims_all_below_is_a_leaf_site(setup):
    _, graph, _ = setup

    def h(children: bool):
        h = scrub.Hypothesis("h")
        s = h.output().add("site", model="r2", positions=[1, 3], agree=lambda d: d.tokens[:, 0] % 2)
        if children:
            s.add("all", model=graph.below("r2"))
        return h

    leaf, deep = run(setup, h(False)), run(setup, h(True))
    assert (leaf - deep).abs().max().item() < 1e-5
    fast, slow = both(setup, h(True))
    assert (fast - slow).abs().max().item() < 1e-5


def test_a_site_with_the_whole_space_is_the_plain_site(setup):
    h1, h2 = scrub.Hypothesis("a"), scrub.Hypothesis("b")
    h1.output().add("s", model="r1", agree=lambda d: d.tokens[:, 0] % 2).add("e", model="embed", agree=scrub.Random())
    h2.output().add("s", model="r1", agree=lambda d: d.tokens[:, 0] % 2, subspace=scrub.Subspace(torch.eye(D))).add(
        "e", model="embed", agree=scrub.Random())
    assert (run(setup, h1) - run(setup, h2)).abs().max().item() < 1e-5


def test_site_refusals(setup):
    _model, graph, data = setup
    h = scrub.Hypothesis("overlap")
    top = h.output().add("top", model="a2.0")
    top.add("site", model="r2", port="q")
    top.add("head", model="a0.1", port="q", positions=[1])
    with pytest.raises(HypothesisError, match=r"'site' and 'head' both claim the treeified path r2 -> a2\.0\.q.*a0\.1 is part"):
        make_plan(h, graph, data)
    h = scrub.Hypothesis("nested sites")
    h.output().add("a", model="r1")
    h.output().add("b", model="r3", positions=[0])
    with pytest.raises(HypothesisError, match=r"'a' and 'b' both claim"):
        make_plan(h, graph, data)
    h = scrub.Hypothesis("mixed")
    h.output().add("x", model=["r1", "a2.0"])
    with pytest.raises(HypothesisError, match=r"'x'.*residual site \(r1\).*only model node"):
        make_plan(h, graph, data)
    h = scrub.Hypothesis("above")
    h.output().add("top", model="a1.0").add("s", model="r2")
    with pytest.raises(HypothesisError, match=r"'s'.*'r2' does not feed parent 'top'"):
        make_plan(h, graph, data)
    h = scrub.Hypothesis("child above")
    h.output().add("s", model="r1").add("m", model="m1")
    with pytest.raises(HypothesisError, match=r"'m'.*'m1' does not feed parent 's'"):
        make_plan(h, graph, data)
    h = scrub.Hypothesis("unknown")
    h.output().add("s", model="r9")
    with pytest.raises(HypothesisError, match=r"'s'.*unknown residual site 'r9'.*r0.*r3"):
        make_plan(h, graph, data)
    # disjoint positions on the same port are fine
    h = scrub.Hypothesis("ok")
    top = h.output().add("top", model="a2.0")
    top.add("site", model="r2", port="q", positions=[0, 2])
    top.add("head", model="a0.1", port="q", positions=[1])
    make_plan(h, graph, data)


# -- the executor against the oracle on random hypotheses of every kind -----------------------
def random_variables_hypothesis(rng: np.random.Generator, graph: scrub.ModelGraph, data, d_model: int,
                                max_nodes: int = 6) -> scrub.Hypothesis:
    """A random DAG whose nodes are heads, MLPs, neuron sets, residual sites and subspaces of them,
    some claimed as a fixed mean or zero."""
    h = scrub.Hypothesis("random variables")
    frontier = [h.output()]
    count = 0
    while frontier and count < max_nodes:
        parent = frontier.pop(0)
        if any(m in INPUTS for m in parent.model):
            continue
        for _ in range(int(rng.integers(1, 3))):
            port_choices = sorted({p for n in parent.model for p in graph.ports(n)})
            port = None if rng.random() < 0.5 else str(rng.choice(port_choices))
            ports = port_choices if port is None else [port]
            ups = sorted({u for n in parent.model for p in ports for u in graph.upstream(n, p)
                          if graph.feeds(u, n, p)})
            sites = [s for s in graph.sites if any(graph.feeds(s, n, p) for n in parent.model for p in ports)]
            kw = {}
            if sites and rng.random() < 0.35:
                model_nodes = [str(rng.choice(sites))]
            else:
                mlps = [u for u in ups if graph.kind(u) == "mlp"]
                if mlps and rng.random() < 0.5:
                    model_nodes = [str(rng.choice(mlps))]
                    kw["neurons"] = sorted(rng.choice(graph.d_mlp, size=int(rng.integers(1, 6)), replace=False).tolist())
                else:
                    size = int(rng.integers(1, min(3, len(ups)) + 1))
                    model_nodes = sorted(rng.choice(ups, size=size, replace=False).tolist())
            if rng.random() < 0.25:
                kw["subspace"] = scrub.Subspace.span(torch.from_numpy(rng.normal(size=(d_model, int(rng.integers(1, 4))))))
            agree = random_feature(rng) if rng.random() < 0.85 else (scrub.Mean() if rng.random() < 0.5 else scrub.Zero())
            child = parent.add(f"n{count}", model=model_nodes, port=port, positions=random_positions(rng),
                               agree=agree, **kw)
            try:
                make_plan(h, graph, data, warn=False)
            except HypothesisError:
                parent.children.pop()
                del h._names[child.name]
                continue
            count += 1
            frontier.append(child)
    return h


def check_variables_agreement(seed: int) -> tuple[float, int]:
    rng = np.random.default_rng(seed)
    model = random_model(rng)
    graph = scrub.ModelGraph.from_model(model)
    data = random_data(rng, mask=model.cfg.attention_dir == "bidirectional" and rng.random() < 0.7)
    h = random_variables_hypothesis(rng, graph, data, int(model.cfg.d_model))
    if h.leaves() and rng.random() < 0.3:
        h = h.without(str(rng.choice(h.leaves())))
    plan = make_plan(h, graph, data, seed=seed, warn=False)
    fast = run_plan(model, plan, data, batch_size=int(rng.integers(1, 200)))
    slow = run_reference(model, plan, data)
    err = (fast - slow).abs().max().item()
    assert err < 1e-5, f"executor and oracle disagree by {err:.2e}\n{h.describe()}\n{plan.summary()}"
    return err, len(plan.instances)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1))
def test_executor_matches_oracle_on_random_hypotheses_with_variables(seed):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # batch sizes below the block count warn
        check_variables_agreement(seed)


# -- mean and zero ablation (not causal scrubbing) -------------------------------------------
@pytest.mark.parametrize("ablation", [scrub.Mean(), scrub.Zero()])
@pytest.mark.parametrize("seed", [3, 17, 40])
def test_executor_matches_oracle_under_ablation(ablation, seed):
    rng = np.random.default_rng(seed)
    model = random_model(rng)
    graph = scrub.ModelGraph.from_model(model)
    data = random_data(rng, mask=model.cfg.attention_dir == "bidirectional")
    h = random_variables_hypothesis(rng, graph, data, int(model.cfg.d_model))
    plan = make_plan(h, graph, data, seed=seed, warn=False)
    fast = run_plan(model, plan, data, ablation=ablation)
    slow = run_reference(model, plan, data, ablation=ablation)
    assert (fast - slow).abs().max().item() < 1e-5, h.describe()
    assert (fast - run_plan(model, plan, data)).abs().max().item() > 1e-4  # the ablation changes something


def test_mean_ablation_of_a_constant_output_is_resampling(setup):
    """Everything but ``pos`` claimed as one leaf: the unclaimed ``pos`` is the same on every
    (unpadded) example, so its mean is its value in any random context: Mean equals resampling
    (and the clean model); Zero drops it and differs."""
    model, graph, data = setup
    h = scrub.Hypothesis("all but pos")
    h.output().add("rest", model=[c for c in graph.components if c not in ("pos", "out")])
    plan = make_plan(h, graph, data, seed=0, warn=False)
    resampled = run_plan(model, plan, data)
    mean = run_plan(model, plan, data, ablation=scrub.Mean())
    assert (resampled - mean).abs().max().item() < 1e-5
    assert (resampled - run_clean(model, data)).abs().max().item() < 1e-5
    assert (resampled - run_plan(model, plan, data, ablation=scrub.Zero())).abs().max().item() > 1e-3


def test_zero_ablation_of_everything_leaves_the_attention_biases(setup):
    from scrub._architecture import Architecture

    model, graph, data = setup
    arch = Architecture.of(model)
    plan = make_plan(scrub.fully_scrubbed(), graph, data, seed=0, warn=False)
    zero = run_plan(model, plan, data, ablation=scrub.Zero())
    biases = sum(arch.residual_bias(model, layer).detach() for layer in range(graph.n_layers))
    expect = arch.logits(model, biases[None, :]).expand(len(data), -1).float()
    assert (zero - expect).abs().max().item() < 1e-5
    assert (zero - run_reference(model, plan, data, ablation=scrub.Zero())).abs().max().item() < 1e-5


def test_an_ablated_run_says_it_is_not_causal_scrubbing(setup, tmp_path):
    model, _, data = setup
    h = scrub.Hypothesis("vars")
    top = h.output().add("top", model="a2.0", positions=[0, 2, 3, 4], agree=lambda d: d.tokens[:, -1] % 2)
    top.add("neur", model="m1", neurons=[1, 5, 7], agree=lambda d: d.tokens[:, 1] % 2)
    site = top.add("site", model="r1", port="q", positions=[0, 2], agree=lambda d: d.tokens[:, 3] % 2,
                   subspace=scrub.Subspace(torch.eye(D)[:, :3], name="first three"))
    site.add("e", model="embed", agree=lambda d: d.tokens % 2)
    plain = scrub.run(model, h, data, n_boot=100)
    assert plain.ablation is None and "not causal" not in plain.summary() and "ablation" not in plain.record
    result = scrub.run(model, h, data, n_boot=100, ablation=scrub.Mean())
    assert result.ablation == "mean" and result.record["ablation"] == "mean"
    assert "mean ablation of unclaimed inputs: not causal scrubbing" in result.summary()
    assert "not causal scrubbing" in result.record["method"]
    assert result.loss_scrubbed != plain.loss_scrubbed
    assert scrub.reproduce(result.record, model, h, data).loss_recovered == result.loss_recovered
    path = scrub.write_html(tmp_path / "r.html", result)
    html = path.read_text() if hasattr(path, "read_text") else (tmp_path / "r.html").read_text()
    assert "mean ablation of unclaimed inputs: not causal scrubbing" in html
    assert "m1 neurons [1, 5, 7] (3 neurons)" in html
    assert "r1 (residual before layer 1), subspace &#x27;first three&#x27; (k=3 of 12)" in html
    assert "data-site='r1'" in html
    with pytest.raises(scrub.RunOptionsError, match=r"ablation must be None.*scrub\.Mean"):
        scrub.RunOptions(ablation="median")


def test_orthogonal_subspace_siblings_add_up_to_the_whole_claim(setup):
    """Siblings may claim orthogonal subspaces of one output: S and its complement together,
    on the parent's example, are the plain claim; overlapping subspaces are refused."""
    _, graph, data = setup
    s = scrub.Subspace.span(torch.from_numpy(np.random.default_rng(0).normal(size=(D, 5))))

    def h(*subspaces):
        h = scrub.Hypothesis("h")
        top = h.output().add("top", model="a2.0", agree=lambda d: d.tokens[:, -1] % 2)
        for k, sub in enumerate(subspaces):
            top.add(f"part {k}", model="m1", subspace=sub).add(f"in {k}", model="a0.1", agree=lambda d: d.tokens[:, 1] % 2)
        return h

    split = h(s, s.complement())
    fast, slow = both(setup, split)
    assert (fast - slow).abs().max().item() < 1e-5
    with pytest.raises(HypothesisError, match=r"'part 0' and 'part 1' both claim.*orthogonal subspaces"):
        make_plan(h(s, scrub.Subspace.span(torch.eye(D)[:, :6])), graph, data)
    # leaves on the parent's example (Exact): the two parts add up to the whole MLP
    whole = scrub.Hypothesis("whole")
    whole.output().add("top", model="a2.0", agree=lambda d: d.tokens[:, -1] % 2).add("m", model="m1")
    same = scrub.Hypothesis("same")
    top = same.output().add("top", model="a2.0", agree=lambda d: d.tokens[:, -1] % 2)
    top.add("p0", model="m1", subspace=s)
    top.add("p1", model="m1", subspace=s.complement())
    assert (run(setup, same) - run(setup, whole)).abs().max().item() < 1e-5
    assert (run(setup, same) - run(setup, h(s))).abs().max().item() > 1e-3


def test_a_site_reads_column_by_column(setup, monkeypatch):
    """Under a per-position site copy, copies of a per-position child at other positions feed columns
    nobody reads: the plan leaves them out, and putting them back changes no output."""
    import scrub._plan as plan_mod
    from tests.test_oracle import T, _drop

    model, graph, data = setup
    h = scrub.Hypothesis("per-position site")
    site = h.output().add("site", model="r2", agree=lambda d: d.tokens % 2)
    site.add("below", model=["a1.0", "m0"], agree=lambda d: d.tokens % 3)
    pruned = make_plan(h, graph, data, seed=5, warn=False)
    monkeypatch.setattr(plan_mod, "_column_local", lambda g, c: False)
    full = make_plan(h, graph, data, seed=5, warn=False)
    assert len(pruned.instances) == 1 + 1 + 1  # the site at the scored position, one child copy there
    assert len(full.instances) == 1 + 1 + T

    def local_copy(inst) -> bool:
        parent = full.instances[inst.parent] if inst.parent is not None else None
        return parent is None or parent.position is None or inst.position == parent.position

    manual = _drop(full, local_copy)
    assert (run_plan(model, full, data) - run_plan(model, manual, data)).abs().max().item() < 1e-6
    assert (run_plan(model, pruned, data) - run_reference(model, pruned, data)).abs().max().item() < 1e-5


def test_neurons_out_of_range_on_a_graph_without_d_mlp(setup):
    model, _, data = setup
    graph = scrub.ModelGraph.build(3, 2)  # built by hand: no d_mlp to check against before running
    h = scrub.Hypothesis("h")
    h.output().add("x", model="m1", neurons=[4 * D + 2])
    plan = make_plan(h, graph, data, warn=False)
    with pytest.raises(HypothesisError, match=rf"'x': neurons \[{4 * D + 2}\] are out of range"):
        run_plan(model, plan, data)


def test_claims_fixed_to_a_mean_or_zero(setup, tmp_path):
    """agree=Zero() on the final site leaves the attention biases; agree=Mean() on pos (the same on
    every unpadded example) is the exact claim; a fixed claim has no children; runs say so."""
    from scrub._architecture import Architecture

    model, graph, data = setup
    arch = Architecture.of(model)
    zero = scrub.Hypothesis("zero")
    zero.output().add("z", model=f"r{graph.n_layers}", agree=scrub.Zero())
    fast, slow = both(setup, zero)
    biases = sum(arch.residual_bias(model, layer).detach() for layer in range(graph.n_layers))
    expect = arch.logits(model, biases[None, :]).expand(len(data), -1).float()
    assert (fast - expect).abs().max().item() < 1e-5 and (slow - expect).abs().max().item() < 1e-5

    def pos_claim(agree):
        h = scrub.Hypothesis("pos")
        top = h.output().add("top", model="a2.0", agree=lambda d: d.tokens[:, -1] % 2)
        top.add("pos", model="pos", agree=agree)
        return h

    assert (run(setup, pos_claim(scrub.Mean())) - run(setup, pos_claim(scrub.Exact()))).abs().max().item() < 1e-5
    assert (run(setup, pos_claim(scrub.Zero())) - run(setup, pos_claim(scrub.Exact()))).abs().max().item() > 1e-3
    bad = scrub.Hypothesis("bad")
    bad.output().add("m", model="m1", agree=scrub.Mean).add("x", model="a0.0")
    with pytest.raises(HypothesisError, match=r"'m' is claimed as its mean value.*cannot have children"):
        make_plan(bad, graph, data)
    result = scrub.run(model, pos_claim(scrub.Mean()), data, n_boot=100)
    assert result.record["fixed_claims"] == {"pos": "mean"}
    assert "claims fixed to a mean or zero, 'pos' (mean): not causal scrubbing" in result.summary()
    scrub.write_html(tmp_path / "r.html", result)
    assert "claims fixed to a mean or zero: not causal scrubbing" in (tmp_path / "r.html").read_text()
