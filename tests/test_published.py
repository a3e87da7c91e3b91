"""The published-model entries without their weights: loaders refuse cleanly, cases skip with
what to download, hypotheses validate on the right graph shapes, data generators work on a
stand-in tokenizer, and (on a tiny random model of GPT-2's architecture and shape, saved to a
temp folder) the IOI loader, data and circuit run end to end."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import scrub
from hypotheses.published import WeightsUnavailable, attn_2l, gpt2_ioi
from hypotheses.published.ioi_words import NAMES, OBJECTS, PLACES, TEMPLATES
from hypotheses.published.suite import CASES

IOI_HYPOTHESES = [gpt2_ioi.circuit, lambda: gpt2_ioi.circuit(backup=False), gpt2_ioi.false_name_movers_swapped,
                  gpt2_ioi.false_s_inhibition_carries_io]
ATTN_HYPOTHESES = [attn_2l.naive, attn_2l.refined, attn_2l.path_q, attn_2l.path_k, attn_2l.path_v,
                   attn_2l.false_wrong_prev_head]


@pytest.fixture
def offline_empty(tmp_path, monkeypatch):
    """No weights anywhere: env vars and the HF cache point at empty folders."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SCRUB_GPT2_PATH", str(empty))
    monkeypatch.setenv("SCRUB_ATTN_2L_PATH", str(empty))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return empty


class WordTokenizer:
    """A stand-in for GPT-2's tokenizer: one id per word (with its leading space) or punctuation mark."""

    bos_token_id = eos_token_id = 0

    def __init__(self, split: str | None = None) -> None:
        self.vocab: dict[str, int] = {"<|endoftext|>": 0}
        self.split = split  # a name this tokenizer cuts in two, to test the single-token check

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        out = []
        for piece in re.findall(r" ?\w+| ?[^\w\s]", text):
            parts = [piece[:3], piece[3:]] if self.split and piece.strip() == self.split else [piece]
            out += [self.vocab.setdefault(p, len(self.vocab)) for p in parts]
        return out


# -- no weights ------------------------------------------------------------------------------
@pytest.mark.parametrize("module, repo, var, files", [
    (gpt2_ioi, "openai-community/gpt2", "SCRUB_GPT2_PATH", ["config.json", "model.safetensors", "vocab.json"]),
    (attn_2l, "ArthurConmy/redwood_attn_2l", "SCRUB_ATTN_2L_PATH", ["config.json", "final.pth"]),
])
def test_loaders_say_what_to_download(offline_empty, module, repo, var, files):
    with pytest.raises(WeightsUnavailable) as info:
        module.load_model()
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for needle in [repo, var, str(offline_empty), "hf download", *files]:
        assert needle in msg, f"{needle!r} missing from: {msg}"
    assert module.unavailable() == msg


def test_explicit_path_is_not_a_fallback(offline_empty, tmp_path):
    with pytest.raises(WeightsUnavailable, match="path argument"):
        gpt2_ioi.load_model(path=tmp_path / "nowhere")


def test_ioi_data_without_tokenizer_needs_the_local_copy(offline_empty):
    with pytest.raises(WeightsUnavailable, match="SCRUB_GPT2_PATH"):
        gpt2_ioi.make_data(4, 0)


def test_every_case_skips_with_the_download_message(offline_empty):
    assert {c.name.split("/")[1] for c in CASES} == {"gpt2_ioi", "attn_2l"}
    kinds = {c.kind for c in CASES}
    assert {"true", "false"} <= kinds
    for case in CASES:
        reason = case.skip_reason()
        assert reason is not None and "not available locally" in reason, case.name
        assert ("SCRUB_GPT2_PATH" if "gpt2" in case.name else "SCRUB_ATTN_2L_PATH") in reason
        assert "unmeasured here" in case.notes


def test_hf_cache_copy_is_found(offline_empty, tmp_path):
    snap = tmp_path / "hf_home" / "hub" / "models--ArthurConmy--redwood_attn_2l" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("abc")
    (snap / "config.json").write_text(json.dumps({"shortformer_pos": True}))
    (snap / "model_final.pth").write_bytes(b"")
    assert attn_2l.locate() == snap


# -- shortformer: found but unsupported --------------------------------------------------------
def test_attn_2l_shortformer_is_reported_not_run(offline_empty):
    (offline_empty / "config.json").write_text(json.dumps(dict(
        n_layers=2, d_model=256, d_head=32, n_heads=8, n_ctx=2048, d_vocab=50259, attn_only=True,
        shortformer_pos=True, act_fn="gelu", d_mlp=-1)))
    (offline_empty / "redwood_attn_2l_final.pth").write_bytes(b"not loaded")
    with pytest.raises(attn_2l.Unsupported) as info:
        attn_2l.load_model()
    assert isinstance(info.value, NotImplementedError)
    assert "shortformer" in str(info.value) and "scrub/_architecture.py" in str(info.value)
    for case in CASES:
        if "attn_2l" in case.name:
            assert case.skip_reason() == attn_2l.SHORTFORMER_GAP


# a 16-example smoke run: most feature values are unique there, which scrub rightly warns about
@pytest.mark.filterwarnings("ignore:node .* no agreeing example but themselves:UserWarning")
def test_attn_2l_standard_copy_loads_from_local_files(offline_empty):
    """A legacy TL-format checkpoint with standard positions (not Redwood's) loads, offline."""
    d, h, dh, v, ctx = 16, 8, 2, 30, 32
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 0.1
    sd = {"embed.W_E": r(v, d), "pos_embed.W_pos": r(ctx, d), "unembed.W_U": r(d, v), "unembed.b_U": r(v),
          "ln_final.w": torch.ones(d), "ln_final.b": torch.zeros(d)}
    for layer in range(2):
        p = f"blocks.{layer}."
        sd.update({p + "ln1.w": torch.ones(d), p + "ln1.b": torch.zeros(d), p + "attn.W_O": r(h, dh, d), p + "attn.b_O": r(d)})
        for x in "QKV":
            sd[p + f"attn.W_{x}"], sd[p + f"attn.b_{x}"] = r(h, d, dh), r(h, dh)
    torch.save(sd, offline_empty / "model_final.pth")
    (offline_empty / "config.json").write_text(json.dumps(dict(
        n_layers=2, d_model=d, d_head=dh, n_heads=h, n_ctx=ctx, d_vocab=v, attn_only=True, act_fn="gelu",
        d_mlp=4 * d, normalization="LN", shortformer_pos=False)))
    model = attn_2l.load_model()
    assert torch.equal(model.state_dict()["embed.W_E"] if "embed.W_E" in model.state_dict() else model.W_E, sd["embed.W_E"])
    graph = scrub.ModelGraph.from_model(model)
    assert (graph.n_layers, graph.n_heads, graph.attn_only) == (2, 8, True)
    data = attn_2l.make_data(16, 0, n_ctx=ctx, d_vocab=v)
    result = scrub.run(model, attn_2l.naive(), data, seed=0)
    assert np.isfinite(result.loss_scrubbed)


# -- hypotheses against the right graphs -------------------------------------------------------
@pytest.mark.parametrize("make", IOI_HYPOTHESES)
def test_ioi_hypotheses_validate_on_gpt2_small(make):
    make().validate(scrub.ModelGraph.build(12, 12, attn_only=False))


@pytest.mark.parametrize("make", ATTN_HYPOTHESES)
def test_attn_2l_hypotheses_validate_on_its_shape(make):
    make().validate(scrub.ModelGraph.build(2, 8, attn_only=True))


def test_wrong_heads_are_rejected():
    with pytest.raises(scrub.HypothesisError, match="a12.0"):
        gpt2_ioi.circuit({"name_mover": ["a12.0", "a9.6"]}).validate(gpt2_ioi.graph())
    with pytest.raises(scrub.HypothesisError, match="a9.12"):
        gpt2_ioi.circuit({"s_inhibition": ["a9.12"]}).validate(gpt2_ioi.graph())
    with pytest.raises(scrub.HypothesisError, match="does not feed"):  # layer-9 heads cannot feed layer-7 Q
        gpt2_ioi.circuit({"s_inhibition": ["a9.1"], "name_mover": ["a7.0"]}, backup=False).validate(gpt2_ioi.graph())
    with pytest.raises(scrub.HypothesisError, match="a0.8"):
        attn_2l.false_wrong_prev_head("a0.8").validate(attn_2l.graph())
    with pytest.raises(scrub.HypothesisError):  # the IOI circuit does not fit Redwood's 2-layer model
        gpt2_ioi.circuit().validate(attn_2l.graph())


def test_false_hypotheses_differ_from_the_true_ones():
    true_movers = set(gpt2_ioi.HEADS["name_mover"] + gpt2_ioi.HEADS["backup_name_mover"] + gpt2_ioi.HEADS["negative_name_mover"])
    swapped = gpt2_ioi.false_name_movers_swapped()
    movers = next(n for n in swapped.nodes() if n.name == "name movers").model
    assert len(movers) == 3 and all(m.startswith("a9.") for m in movers) and not set(movers) & true_movers
    s_inh = next(n for n in gpt2_ioi.false_s_inhibition_carries_io().nodes() if n.name == "S-inhibition")
    assert s_inh.agree is gpt2_ioi.io_feature
    wrong = next(n for n in attn_2l.false_wrong_prev_head().nodes() if n.name == "previous tokens")
    assert wrong.model == ("a0.1",)


# -- data --------------------------------------------------------------------------------------
def test_ioi_data_columns_and_positions():
    tok = WordTokenizer()
    d = gpt2_ioi.make_data(64, seed=3, tokenizer=tok)
    cols = d.columns
    assert len(d) == 64 and set(cols["order"]) == {"ABB", "BAB"}
    for i in range(len(d)):
        row, ids = cols.iloc[i], d.tokens[i].tolist()
        assert ids[0] == tok.bos_token_id
        assert ids[row.s1_pos] == ids[row.s2_pos] == row.s and ids[row.io_pos] == row.io == int(d.labels[i])
        assert row.s1_next_pos == row.s1_pos + 1 and int(d.target_pos[i]) == row.end_pos == row.length - 1
        assert (row.io_pos < row.s1_pos) == (row.order == "ABB") and row.s2_pos > max(row.io_pos, row.s1_pos)
        assert ids[row.end_pos] == tok.vocab[" to"] and row.io_name != row.s_name
        assert all(t == tok.eos_token_id for t in ids[row.length:])
    again = gpt2_ioi.make_data(64, seed=3, tokenizer=tok)
    assert torch.equal(d.tokens, again.tokens)
    assert not torch.equal(d.tokens, gpt2_ioi.make_data(64, seed=4, tokenizer=tok).tokens)
    # the hypotheses' features and positions evaluate on it, one value per example
    for f in (gpt2_ioi.names_feature, gpt2_ioi.io_feature, gpt2_ioi.s_feature, gpt2_ioi.end_pos,
              gpt2_ioi.s2_pos, gpt2_ioi.s1_next_pos):
        assert len(f(d)) == len(d)
    loss = gpt2_ioi.logit_difference(torch.zeros(len(d), len(tok.vocab)), d)
    assert loss.shape == (len(d),) and torch.all(loss == 0)


def test_ioi_data_one_template_has_one_layout_per_order():
    d = gpt2_ioi.make_data(40, seed=0, tokenizer=WordTokenizer(), templates=[15])
    assert set(d.columns["template"]) == {15} and d.columns["text"][0].startswith("When ")
    for order, group in d.columns.groupby("order"):
        assert group[["io_pos", "s1_pos", "s2_pos", "end_pos"]].nunique().max() == 1, order


def test_suite_data_gives_every_feature_agreeing_examples():
    d = gpt2_ioi.make_data(500, seed=1234, tokenizer=WordTokenizer(), **gpt2_ioi.SUITE_DATA)
    for f in (gpt2_ioi.names_feature, gpt2_ioi.io_feature, gpt2_ioi.s_feature):
        counts = f(d).value_counts()
        assert (counts[f(d)].to_numpy() > 1).mean() > 0.9, f.__name__


def test_ioi_data_refuses_multi_token_names():
    with pytest.raises(ValueError, match="'Mary'|' Mary'"):
        gpt2_ioi.make_data(4, 0, tokenizer=WordTokenizer(split="Mary"))
    with pytest.raises(ValueError, match="templates"):
        gpt2_ioi.make_data(4, 0, tokenizer=WordTokenizer(), templates=[99])


def test_attn_2l_data_has_the_induction_columns():
    d = attn_2l.make_data(32, seed=0)
    assert d.tokens.shape == (32, 64) and int(d.tokens.max()) < 50257
    for col in ("label", "current_token", "prev_token"):
        assert col in d.columns
    assert torch.equal(d.tokens[:, -1], torch.tensor(d.columns["current_token"].to_numpy()))
    rows = torch.arange(32)
    prev = torch.tensor(d.columns["prev_occurrence"].to_numpy())
    assert torch.equal(d.tokens[rows, prev], d.tokens[:, -1])
    assert torch.equal(d.tokens[rows, prev + 1], d.labels)


# -- end to end on a tiny random GPT-2 -----------------------------------------------------------
def _tiny_gpt2(folder):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = {"<|endoftext|>"}
    for text in TEMPLATES + tuple(NAMES) + PLACES + OBJECTS:
        words |= set(re.findall(r"\w+|[^\w\s]", text.replace("{", "").replace("}", "")))
    vocab = {w: i for i, w in enumerate(sorted(words, key=lambda w: (w != "<|endoftext|>", w)))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|endoftext|>", eos_token="<|endoftext|>").save_pretrained(folder)
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=12, n_head=12, n_embd=24, vocab_size=len(vocab), n_positions=40, bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(cfg).save_pretrained(folder)


def test_ioi_end_to_end_on_a_tiny_local_gpt2(offline_empty):
    """Loader (via $SCRUB_GPT2_PATH), tokenizer, the suite's data and the circuit through scrub.run."""
    _tiny_gpt2(offline_empty)
    assert gpt2_ioi.unavailable() is None
    model = gpt2_ioi.load_model()
    assert (model.cfg.n_layers, model.cfg.n_heads) == (12, 12)
    data = gpt2_ioi.make_data(24, seed=0, names=NAMES[:3], templates=[15])  # tokenizer: the same local copy
    assert set(data.columns["order"]) == {"ABB", "BAB"}
    result = scrub.run(model, gpt2_ioi.circuit(), data, seed=0)
    assert np.isfinite(result.loss_scrubbed) and np.isfinite(result.loss_model)
    assert result.loss_scrubbed != pytest.approx(result.loss_model, abs=1e-6)  # really resampled
    everything = scrub.Hypothesis("all exact")
    everything.output().add("all", model=[c for c in gpt2_ioi.graph().components if c != "out"])
    exact = scrub.run(model, everything, data, seed=0)
    assert exact.loss_scrubbed == pytest.approx(exact.loss_model, abs=1e-4)


def test_ioi_loader_rejects_a_model_of_the_wrong_shape(offline_empty):
    from transformers import GPT2Config, GPT2LMHeadModel

    _tiny_gpt2(offline_empty)
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=12, n_embd=24, vocab_size=300, n_positions=40)).save_pretrained(offline_empty)
    with pytest.raises(ValueError, match="2 layers x 12 heads"):
        gpt2_ioi.load_model()


def test_ioi_hypotheses_run_on_a_random_gpt2_through_from_hf():
    """No weights at all: GPT-2's architecture and shape with random weights, built by scrub.from_hf."""
    model = gpt2_ioi.random_model(d_model=24, vocab_size=400, n_ctx=40)
    assert model.cfg.architecture == "GPT2LMHeadModel" and (model.cfg.n_layers, model.cfg.n_heads) == (12, 12)
    assert scrub.ModelGraph.from_model(model).inputs == ("embed", "pos")
    data = gpt2_ioi.make_data(24, seed=0, tokenizer=WordTokenizer(), names=NAMES[:3], templates=[15])
    results = scrub.run_many(model, [make() for make in IOI_HYPOTHESES], data, seed=0, n_boot=200,
                             metric=gpt2_ioi.logit_difference)
    for r in results:
        assert np.isfinite(r.loss_recovered) and r.loss_scrubbed != pytest.approx(r.loss_model, abs=1e-6)
    everything = scrub.Hypothesis("all exact")
    everything.output().add("all", model=[c for c in gpt2_ioi.graph().components if c != "out"])
    exact = scrub.run(model, everything, data, seed=0, metric=gpt2_ioi.logit_difference, n_boot=200)
    np.testing.assert_allclose(exact.table().loss_scrubbed, exact.table().loss_model, atol=1e-5, rtol=0)
