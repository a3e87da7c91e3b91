"""Unit tests of the metrics: each built-in against its formula, and the checks on custom ones."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import scrub
from scrub.errors import MetricError
from scrub._metrics import check_metric, metric_name, per_example


@pytest.fixture
def setup():
    g = torch.Generator().manual_seed(0)
    data = scrub.Dataset(torch.randint(0, 5, (6, 3), generator=g), labels=torch.tensor([0, 1, 2, 3, 4, 0]))
    return data, torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)


def test_loss_is_cross_entropy_at_the_label(setup):
    data, logits, model_logits = setup
    got = per_example("loss", logits, data, model_logits)
    want = -F.log_softmax(logits, -1)[torch.arange(6), data.labels].double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_accuracy_is_scored_as_error_rate(setup):
    data, logits, model_logits = setup
    logits = logits.clone()
    logits[:3, :] = 0
    logits[torch.arange(3), data.labels[:3]] = 1.0  # the first three are right
    logits[3:, :] = 0
    logits[torch.arange(3, 6), (data.labels[3:] + 1) % 5] = 1.0  # the others wrong
    np.testing.assert_array_equal(per_example("accuracy", logits, data, model_logits), [0, 0, 0, 1, 1, 1])


def test_kl_is_zero_on_the_model_and_matches_its_formula(setup):
    data, logits, model_logits = setup
    np.testing.assert_allclose(per_example("kl", model_logits, data, model_logits), 0, atol=1e-6)
    p, q = F.log_softmax(model_logits, -1), F.log_softmax(logits, -1)
    want = (p.exp() * (p - q)).sum(-1).double().numpy()
    got = per_example("kl", logits, data, model_logits)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert (got > 0).all()


def test_custom_metrics_are_checked(setup):
    data, logits, model_logits = setup

    def margin(lg, d):
        return -lg[torch.arange(len(d)), d.labels]

    assert metric_name(margin) == "margin" and metric_name("kl") == "kl"
    np.testing.assert_allclose(per_example(margin, logits, data, model_logits), margin(logits, data).double().numpy())
    with pytest.raises(MetricError, match="shape"):
        per_example(lambda lg, d: lg, logits, data, model_logits)
    with pytest.raises(MetricError, match="non-finite"):
        per_example(lambda lg, d: torch.full((len(d),), float("nan")), logits, data, model_logits)
    with pytest.raises(MetricError, match="unknown metric"):
        check_metric("los", data)
    with pytest.raises(MetricError, match="raised ZeroDivisionError"):
        check_metric(lambda lg, d: 1 / 0, data, n_outputs=5)
    unlabelled = scrub.Dataset(data.tokens)
    with pytest.raises(MetricError, match="needs labels"):
        check_metric("loss", unlabelled)
    with pytest.raises(MetricError, match="unknown metric"):
        scrub.RunOptions(metric="los")
