"""Scoring on a Ray cluster (``ray=``, ``scrub[ray]``) against a local two-CPU cluster started here.

The distributed numbers must be the local ones bit for bit (per-example losses, score and
interval), a worker that dies mid-run must not change them, and a cluster that does not answer
must be a ClusterError, not a hang. One cluster serves the module (starting one takes seconds).
"""

import json
import os
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]'): the ray= option is not tested")

import scrub  # noqa: E402
from hypotheses.induction import load_model, make_data  # noqa: E402
from hypotheses.induction.hypotheses import HEADS, naive, previous_tokens  # noqa: E402
from scrub.cli import app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# several chunks per plan (about 20 references per pass), so that plans are split over tasks
OPTS = scrub.RunOptions(seed=3, n_seeds=2, batch_size=1000, n_boot=200, progress=False)

torch.set_num_threads(1)  # the workers run one thread; so does the local run they are compared with


def losses(r: scrub.Result) -> torch.Tensor:
    return torch.tensor(r.table()[["loss_model", "loss_scrubbed", "loss_baseline"]].to_numpy())


def assert_same(here: scrub.Result, there: scrub.Result) -> None:
    assert torch.equal(losses(here), losses(there))
    assert (here.loss_model, here.loss_scrubbed, here.loss_baseline) == (there.loss_model, there.loss_scrubbed,
                                                                          there.loss_baseline)
    assert (here.loss_recovered, here.ci) == (there.loss_recovered, there.ci)
    assert {k: v for k, v in here.record.items() if k != "ran_on"} == {
        k: v for k, v in there.record.items() if k != "ran_on"}


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def data():
    return make_data(160, seed=1234)


def test_an_address_nothing_answers_at_is_a_clear_error(model, data):
    """Before any cluster is up (this test runs first): a refused address fails at once, naming it."""
    assert not ray.is_initialized()
    with pytest.raises(scrub.ClusterError, match=r"ray='127.0.0.1:1': no Ray cluster answers there.*ray start --head"):
        scrub.run(model, naive(), data, options=OPTS, ray="127.0.0.1:1")
    assert not ray.is_initialized()
    with pytest.raises(scrub.RunOptionsError, match="HOST:PORT"):
        scrub.run(model, naive(), data, options=OPTS, ray="my-cluster")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs, no dashboard, worker output not copied here; its address."""
    before = os.environ.get("PYTHONPATH")
    # the workers must import this checkout's scrub (not another installed copy): they inherit this
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *([before] if before else [])])
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def with_position_masks() -> scrub.Hypothesis:
    """Claims whose position masks change the score: K at the target only (a mask indexed by
    reference), V at the first 12 positions (a static mask). The plan carries both, keyed by node."""
    h = scrub.Hypothesis("masked claims")
    ind = h.output().add("induction heads", model=HEADS["induction"], agree="label")
    ind.add("current token", model="embed", port="q", agree="current_token")
    ind.add("previous tokens", model=HEADS["prev_token"], port="k", agree=scrub.at_target(previous_tokens))
    ind.add("token values", model="embed", port="v", agree="label", positions=list(range(12)))
    return h


def test_distributed_scores_equal_local_ones_bit_for_bit(cluster, model, data):
    hs = [naive(), with_position_masks()]
    here = scrub.run_many(model, hs, data, options=OPTS)
    there = scrub.run_many(model, hs, data, options=OPTS.replace(ray="auto"))
    for a, b in zip(here, there, strict=True):
        assert_same(a, b)
        assert a.record["ran_on"] == "here"
        assert b.record["ran_on"] == f"ray: 2 workers at {cluster}"
    assert 0.5 < there[0].loss_recovered < 1.0  # a real score, not a degenerate one
    # the record reproduces locally: the fingerprints and the score are those of a local run
    again = scrub.reproduce(there[1], model, hs[1], data)
    assert torch.equal(losses(again), losses(there[1]))


def test_breakdown_and_the_cli_run_on_the_cluster(cluster, model, data, tmp_path):
    h = naive()
    kw = dict(claims=["previous tokens"], seed=1, n_seeds=1, batch_size=1000, n_boot=200)
    here = scrub.breakdown(model, h, data, **kw)
    there = scrub.breakdown(model, h, data, **kw, ray=cluster)  # by address: the cluster this process is on
    assert here.equals(there) and here.attrs == there.attrs
    runner_args = ["run", "hypotheses.induction.hypotheses:naive", "--n", "160", "--seeds", "1", "--no-breakdown"]
    from typer.testing import CliRunner

    runner = CliRunner()
    local = runner.invoke(app, [*runner_args, "--json", str(tmp_path / "here.json")])
    remote = runner.invoke(app, [*runner_args, "--json", str(tmp_path / "there.json"), "--ray", "auto"])
    assert local.exit_code == remote.exit_code == 0, remote.output
    a, b = (json.loads((tmp_path / f).read_text())["cases"][0] for f in ("here.json", "there.json"))
    assert (a["score"], a["ci_lo"], a["ci_hi"]) == (b["score"], b["ci_lo"], b["ci_hi"])
    assert b["record"]["ran_on"] == f"ray: 2 workers at {cluster}"
    bad = runner.invoke(app, ["suite", "hypotheses", "-k", "induction/naive", "--ray", "127.0.0.1:1"])
    assert bad.exit_code == 2 and "--ray" in bad.output and "no Ray cluster answers" in bad.output


def test_a_worker_killed_mid_run_is_retried_and_changes_nothing(cluster, data, tmp_path):
    model = load_model()
    expected = scrub.run(model, naive(), data, options=OPTS)
    marker, driver = tmp_path / "killed", os.getpid()

    def die_once(module, args):
        """On a worker, the first forward pass of the run kills its process (os._exit: no cleanup)."""
        if os.getpid() == driver:
            return
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os._exit(1)

    model.register_forward_pre_hook(die_once)  # travels to the workers with the model
    got = scrub.run(model, naive(), data, options=OPTS.replace(ray="auto"))
    assert marker.exists()  # a worker did die mid-task
    assert_same(expected, got)


def test_a_second_cluster_address_is_refused(cluster, model, data):
    port = cluster.rsplit(":", 1)[1]
    with pytest.raises(scrub.ClusterError, match="already connected"):
        # something answers there, but it is not the address this process is connected to
        scrub.run(model, naive(), data, options=OPTS, ray=f"127.0.0.1:{port}")


def test_padded_data_and_mean_ablation_equal_local_ones(cluster):
    """Padded data (the executor sorts references by the positions they use and cuts chunks short,
    then writes each chunk's logits back in its references' rows) and a mean ablation (run_plan's
    ablation=, sent with every task)."""
    from hypotheses.paren import load_model as paren_model
    from hypotheses.paren import make_data as paren_data
    from hypotheses.paren.hypotheses import claim_1_2_3

    model, data = paren_model(), paren_data(120, seed=1234)
    assert data.attention_mask is not None and not bool(data.attention_mask.bool().all())
    opts = scrub.RunOptions(seed=0, batch_size=300, n_boot=200, progress=False)
    for extra in ({}, {"ablation": scrub.Mean()}):
        here = scrub.run(model, claim_1_2_3(), data, options=opts.replace(**extra))
        there = scrub.run(model, claim_1_2_3(), data, options=opts.replace(ray="auto", **extra))
        assert_same(here, there)
