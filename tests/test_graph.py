"""Unit tests of the model graph: nodes, ports, edges and stages for each kind of block."""

import pytest

from scrub.errors import GraphError, HypothesisError
from scrub._graph import ModelGraph


def test_sequential_graph_nodes_ports_and_stages():
    g = ModelGraph.build(2, 3)
    assert g.components == ["embed", "pos", "a0.0", "a0.1", "a0.2", "m0", "a1.0", "a1.1", "a1.2", "m1", "out"]
    assert [g.stage(c) for c in ("embed", "a0.2", "m0", "a1.0", "m1", "out")] == [0, 1, 2, 3, 4, 5]
    assert g.ports("a1.0") == ("q", "k", "v") and g.ports("m0") == ("in",) and g.ports("out") == ("in",)
    # every component feeds every port of every later component, and nothing else
    assert sorted(g.upstream("a1.0", "k")) == sorted(["embed", "pos", "a0.0", "a0.1", "a0.2", "m0"])
    assert sorted(g.upstream("m0", "in")) == sorted(["embed", "pos", "a0.0", "a0.1", "a0.2"])
    assert not g.feeds("a0.1", "a0.2", "q")  # heads of one layer read the same residual
    assert len(g.upstream("out", "in")) == 10
    n_ports = 6 * 3 + 2 + 1
    assert g.graph.number_of_nodes() == 11 + n_ports


def test_attention_only_graph_has_no_mlps():
    g = ModelGraph.build(2, 2, attn_only=True)
    assert "m0" not in g.components
    with pytest.raises(GraphError, match="attention-only"):
        g.check_component("m0")


def test_parallel_blocks_feed_each_mlp_the_residual_before_its_layer():
    g = ModelGraph.build(2, 2, parallel=True, inputs=("embed",))
    assert sorted(g.upstream("m1", "in")) == sorted(["embed", "a0.0", "a0.1", "m0"])
    assert sorted(g.upstream("a1.0", "q")) == sorted(["embed", "a0.0", "a0.1", "m0"])
    assert g.feeds("a1.0", "out", "in") and g.feeds("m1", "out", "in")
    assert g.stage("m1") > g.stage("a1.0")


def test_whole_layer_graph_and_its_refusal_of_heads():
    g = ModelGraph.build(2, 4, whole_layers=True, inputs=("embed",))
    assert g.components == ["embed", "a0", "m0", "a1", "m1", "out"]
    assert g.heads_of("a1") == [0, 1, 2, 3] and g.attention_nodes(0) == ["a0"]
    with pytest.raises(GraphError, match="claim the whole layer instead: 'a0'"):
        g.check_component("a0.3")


@pytest.mark.parametrize("name, message", [
    ("a2.0", "layers 0..1"),
    ("a0.5", "layer 0 has heads 0..2"),
    ("a00.0", "did you mean 'a0.0'"),
    ("m7", "layers 0..1"),
    ("a0.0.q", "is a port"),
    ("emb", "did you mean embed"),
])
def test_unknown_nodes_are_named_with_what_is_valid(name, message):
    g = ModelGraph.build(2, 3)
    with pytest.raises(GraphError, match=message) as info:
        g.check_component(name, where="node 'x'")
    assert str(info.value).startswith("node 'x': ")
    assert isinstance(info.value, HypothesisError) and isinstance(info.value, ValueError)


def test_rotary_graph_explains_the_missing_pos_node():
    g = ModelGraph.build(1, 2, inputs=("embed",))
    with pytest.raises(GraphError, match="rotary"):
        g.check_component("pos")
