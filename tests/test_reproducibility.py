"""Reproducibility and memory: a Result's record reruns the same scrub bit for bit; a pass that
does not fit in memory is retried at a smaller batch size, with a warning that says which."""

import json
import warnings
from importlib import metadata

import pandas as pd
import pytest
import torch

import scrub
from hypotheses.induction import load_model, make_data
from hypotheses.induction.hypotheses import naive


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model, data = load_model(), make_data(120, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = scrub.run(model, naive(), data, seed=3, n_seeds=2, batch_size=4000, n_boot=200)
    return model, data, result


def _same(a: scrub.Result, b: scrub.Result) -> None:
    assert a.loss_recovered == b.loss_recovered  # bit for bit, not approximately
    assert a.ci == b.ci
    pd.testing.assert_frame_equal(a.table(), b.table(), check_exact=True)


def test_the_record_names_everything_a_rerun_needs(setup):
    _, _, r = setup
    rec = r.record
    assert rec["seed"] == 3 and rec["n_seeds"] == 2 and rec["batch_size"] == 4000 and rec["n_boot"] == 200
    assert rec["hypothesis"] == "induction: naive" and rec["baseline"] == "fully scrubbed" and rec["metric"] == "loss"
    assert len(rec["weights_sha256"]) == 64 and len(rec["data_sha256"]) == 64
    assert rec["versions"]["torch"] == metadata.version("torch")
    assert rec["score"] == {"loss_model": r.loss_model, "loss_scrubbed": r.loss_scrubbed,
                            "loss_baseline": r.loss_baseline, "loss_recovered": r.loss_recovered, "ci": list(r.ci)}
    assert rec["hypothesis_fingerprint"] == scrub._experiment.hypothesis_fingerprint(naive())
    assert rec["hypothesis_fingerprint"] != scrub._experiment.hypothesis_fingerprint(naive().without("token values"))
    assert rec["baseline_fingerprint"] == scrub._experiment.hypothesis_fingerprint(scrub.fully_scrubbed())
    json.dumps(rec)  # JSON-able as it is


def test_a_record_reproduces_the_score_bit_for_bit(setup):
    model, _data, r = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = scrub.reproduce(json.dumps(r.record), model, naive(), make_data(120, seed=7))
    _same(r, again)
    assert again.record == r.record


def test_a_different_seed_is_a_different_run(setup):
    """The bit-for-bit check above can fail: another seed moves the score."""
    model, data, r = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = scrub.run(model, naive(), data, seed=4, n_seeds=2, batch_size=4000, n_boot=200)
    assert other.loss_recovered != r.loss_recovered


def test_reproduce_names_what_does_not_match(setup):
    model, data, r = setup
    with pytest.raises(scrub.ReproductionError, match="data_sha256"):
        scrub.reproduce(r, model, naive(), make_data(120, seed=8))
    h = naive()
    h.name = "renamed"
    with pytest.raises(scrub.ReproductionError, match=r"hypothesis.*'renamed'"):
        scrub.reproduce(r, model, h, data)
    changed = load_model()
    with torch.no_grad():
        next(changed.parameters())[0, 0] += 1e-3
    with pytest.raises(scrub.ReproductionError, match="weights_sha256"):
        scrub.reproduce(r, changed, naive(), data)
    with pytest.raises(scrub.ReproductionError, match="lacks"):
        scrub.reproduce({"seed": 0}, model, naive(), data)


def test_reproduce_checks_the_rerun_against_the_recorded_score(setup):
    """An edited seed passes every hash check; the recorded score is what catches it."""
    model, data, r = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(scrub.ReproductionError, match=r"rerun does not give the recorded score: loss_scrubbed"):
            scrub.reproduce({**r.record, "seed": 4}, model, naive(), data)


def test_out_of_memory_retries_at_a_smaller_batch_and_says_so(setup, monkeypatch):
    """Passes over 100 rows "run out of memory" (the clean run of all 120 examples is the widest pass):
    the run warns, halves until every pass fits, records the batch size it used, and gives the same
    numbers as asking for that batch size directly."""
    from scrub import _executor as executor

    model, data, _ = setup
    original = executor._forward

    def small_memory(model, tokens, attention_mask, hooks, *rest):
        if tokens.shape[0] > 100:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return original(model, tokens, attention_mask, hooks, *rest)

    monkeypatch.setattr(executor, "_forward", small_memory)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = scrub.run(model, naive(), data, seed=1, batch_size=6000, n_boot=200)
    said = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert "batch_size=6000 rows ran out of memory" in said[0] and "retrying with batch_size=3000" in said[0]
    assert [m.split("retrying with batch_size=")[1].split(" ")[0] for m in said] == ["3000", "1500", "750", "375", "187", "93"]
    used = r.record["batch_size"]
    assert used == 93  # 6000 halved until the clean run's passes hold at most 100 rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = scrub.run(model, naive(), data, seed=1, batch_size=used, n_boot=200)
    _same(r, direct)


def test_out_of_memory_even_one_reference_at_a_time_is_a_clear_error(setup, monkeypatch):
    from scrub import _executor as executor

    model, data, _ = setup

    def no_memory(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(executor, "_forward", no_memory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(MemoryError, match="even one reference at a time"):
            scrub.run(model, naive(), data, batch_size=64)


def test_other_runtime_errors_are_not_swallowed(setup, monkeypatch):
    from scrub import _executor as executor

    model, data, _ = setup

    def broken(*a, **k):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(executor, "_forward", broken)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        scrub.run(model, naive(), data)


def test_run_many_equals_run_and_shares_the_clean_run_and_baseline(setup, monkeypatch):
    """Several hypotheses in one call: each Result is bit for bit what run() gives alone, while
    the model's clean run happens once and the baseline once per seed (not once per hypothesis)."""
    from scrub import _experiment as experiment

    model, data, _ = setup
    hs = [naive(), naive().without("token values"), naive().only("current token")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = [scrub.run(model, h, data, seed=3, n_seeds=2, batch_size=4000, n_boot=200) for h in hs]
        calls = {"clean": 0, "plan": 0}
        clean, plan = experiment.run_clean, experiment.run_plan

        def count_clean(*a, **k):
            calls["clean"] += 1
            return clean(*a, **k)

        def count_plan(*a, **k):
            calls["plan"] += 1
            return plan(*a, **k)

        monkeypatch.setattr(experiment, "run_clean", count_clean)
        monkeypatch.setattr(experiment, "run_plan", count_plan)
        together = scrub.run_many(model, hs, data, seed=3, n_seeds=2, batch_size=4000, n_boot=200)
    assert calls == {"clean": 1, "plan": 2 + 3 * 2}  # baseline per seed, each hypothesis per seed
    for a, b in zip(alone, together, strict=False):
        _same(a, b)
        assert a.record == b.record
    assert len({r.loss_recovered for r in together}) == 3
