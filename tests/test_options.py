"""RunOptions: one validated value for how a hypothesis is scored, passed through every scoring call."""

import dataclasses

import numpy as np
import pytest
import torch

import scrub
from scrub.errors import RunOptionsError


def test_options_are_validated_frozen_and_replaceable():
    o = scrub.RunOptions(seed=np.int64(3), n_seeds=2)
    assert o.seed == 3 and type(o.seed) is int and o.seeds == [3, 4]
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.seed = 4  # type: ignore[misc]
    assert o.replace(n_boot=500).n_boot == 500 and o.n_boot == 1000
    for bad in (dict(seed=-1), dict(n_seeds=0), dict(batch_size=2.5), dict(n_boot=1), dict(device="meta"),
                dict(progress="yes")):
        with pytest.raises(RunOptionsError):
            scrub.RunOptions(**bad)
    with pytest.raises(RunOptionsError, match="options must be a scrub.RunOptions"):
        scrub.run(None, None, None, options={"seed": 1})  # type: ignore[arg-type]


def test_options_value_and_keywords_give_the_same_run(model, data):
    h = scrub.Hypothesis("h")
    h.output().add("A", model="a1.0", agree=lambda d: d.tokens[:, -1] % 3)
    opts = scrub.RunOptions(seed=4, n_seeds=2, n_boot=300)
    a = scrub.run(model, h, data, options=opts)
    b = scrub.run(model, h, data, seed=4, n_seeds=2, n_boot=300)
    assert a.table().equals(b.table()) and a.ci == b.ci
    c = scrub.run(model, h, data, options=opts, seed=5)  # a keyword overrides the value
    assert c.seeds == [5, 6]
    rec = a.record
    assert {k: rec[k] for k in ("seed", "n_seeds", "metric", "n_boot")} == {"seed": 4, "n_seeds": 2, "metric": "loss", "n_boot": 300}
    again = scrub.RunOptions.from_record(rec)
    assert (again.seed, again.n_seeds, again.n_boot, again.metric) == (4, 2, 300, "loss")


def test_a_case_scores_with_its_options():
    case = scrub.Case(name="t/x", model=lambda: None, data=lambda n, s: None, hypothesis=lambda: None,
                      expected=(0.0, 1.0), n=10, n_seeds=3, seed=2)
    o = case.options()
    assert (o.seed, o.n_seeds, o.metric, o.progress) == (2, 3, "loss", False)
    assert case.options(seed=9).seeds == [9, 10, 11]


def test_errors_deep_in_a_run_say_which_run(model, data):
    calls = []

    def flaky(logits, d):
        calls.append(len(logits))
        if len(calls) > 3:
            raise RuntimeError("metric broke")
        return torch.nn.functional.cross_entropy(logits, d.labels, reduction="none")

    h = scrub.Hypothesis("named one")
    h.output().add("A", model="a1.0", agree=lambda d: d.tokens[:, -1] % 3)
    with pytest.raises(RuntimeError, match="metric broke") as info:
        scrub.run(model, h, data, metric=flaky, n_seeds=2)
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "while scoring" in notes and f"on {len(data)} examples" in notes
