"""The pytest plugin: in-process with pytester, and in a fresh project that only pip-installs scrub."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hypotheses.induction import load_model, make_data
from hypotheses.induction.hypotheses import naive
from scrub import testing

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]

# Measured on the shipped induction model, naive hypothesis, N=200 (data seed 1234), seed 0:
# 88.2% recovered, 95% CI 86.9% .. 89.5%; without 'token values' 5.1% (the claim losing the most).
TESTS = textwrap.dedent("""
    import pytest
    import torch

    from hypotheses.induction import load_model, make_data
    from hypotheses.induction.hypotheses import naive
    from scrub.testing import assert_faithful

    torch.set_num_threads(1)


    def test_faithful(scrub_options):
        assert (scrub_options.n, scrub_options.n_seeds) == (200, 1)  # from --scrub-n / --scrub-seeds
        result = assert_faithful(load_model(), naive(), make_data, at_least=0.85, n=5000, n_seeds=4, seed=0)
        assert result.n_examples == 200 and result.seeds == [0]


    @pytest.mark.scrub
    def test_not_that_faithful():
        assert_faithful(load_model(), naive(), make_data, at_least=0.95, seed=0, explain=EXPLAIN)


    def test_unrelated():
        pass
""")


@pytest.fixture(scope="module")
def model():
    """Loaded before pytester's in-process runs: they unload every module imported inside them, so
    a model first built there would import transformer-lens's lazy modules again in each run."""
    import torch

    torch.set_num_threads(1)
    return load_model()


def test_plugin_in_process(pytester, model):
    pytester.makepyfile(test_scrub_claims=TESTS.replace("EXPLAIN", "True"))
    before = testing.options()
    res = pytester.runpytest_inprocess("--scrub-n", "200", "--scrub-seeds", "1", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=2, failed=1)
    res.stdout.fnmatch_lines([
        "*ScrubAssertionError: hypothesis 'induction: naive' is not as faithful as asserted: "
        "lower bound of the 95% CI 86.9% < at_least 95.0%",
        "*fraction of loss recovered: 88.2% (95% CI 86.9% .. 89.5%; N=200, seeds=[[]0[]])",
        "*loss: model 0.3112, scrubbed 0.9565, baseline 5.7877 (fully scrubbed)",
        "*claim losing the most: 'token values' (without it 5.1%: +83.1% lost, 95% CI *",
    ])
    assert testing.options() == before  # the inner session's overrides are undone
    # the marker: explicit on one test, added to the one using the scrub_options fixture
    res = pytester.runpytest_inprocess("-m", "not scrub", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, deselected=2)
    res = pytester.runpytest_inprocess("--markers")
    res.stdout.fnmatch_lines(["@pytest.mark.scrub:*"])
    res = pytester.runpytest_inprocess("--scrub-n", "0")
    assert res.ret != 0


def test_at_most_checks_the_upper_bound(model):
    data = make_data(200, seed=1234)
    with pytest.raises(testing.ScrubAssertionError, match=r"upper bound of the 95% CI 89\.5% > at_most 89\.0%") as info:
        # the point estimate (88.2%) is below 89%, but the interval reaches above it
        testing.assert_faithful(model, naive(), data, at_least=None, at_most=0.89, explain=False)
    assert info.value.result.loss_recovered < 0.89 and info.value.breakdown is None
    with pytest.raises(ValueError, match="at_least, at_most"):
        testing.assert_faithful(model, naive(), data, at_least=None)


def _source_copy(dest: Path) -> Path:
    """What an sdist would hold: the package metadata and sources, no caches or build output."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for pkg in ("scrub", "hypotheses"):
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=ignore)
    return dest


def _fresh_venv(path: Path) -> Path:
    """A venv that sees this interpreter's packages (torch, transformer-lens, pytest, pip, setuptools)
    but not scrub: a .pth file lists every site-packages directory on sys.path. This works whether
    this interpreter is a system python or itself a venv (as in CI), where --system-site-packages
    would reach the base interpreter's packages instead of this one's."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    dirs = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    Path(purelib, "_parent_env.pth").write_text("\n".join(dirs) + "\n")
    return python


def test_plugin_in_a_fresh_project(tmp_path):
    python = _fresh_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_ADDOPTS")}
    env["OMP_NUM_THREADS"] = "1"
    src = _source_copy(tmp_path / "src")
    # offline: no dependencies, no isolated build env (setuptools >= 70.1, the `test` extra, builds the wheel)
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                          "--ignore-installed", "--disable-pip-version-check", str(src)],
                         env=env, cwd=tmp_path, capture_output=True, text=True)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    project = tmp_path / "project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_claims.py").write_text(TESTS.replace("EXPLAIN", "False") + textwrap.dedent("""

        def test_scrub_is_the_installed_copy():
            import scrub
            assert "venv" in scrub.__file__ and "src" not in scrub.__file__, scrub.__file__
    """))
    out = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--scrub-n", "200",
                          "--scrub-seeds", "1"], cwd=project, env=env, capture_output=True, text=True)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "1 failed, 3 passed" in text, text
    assert "lower bound of the 95% CI 86.9% < at_least 95.0%" in text, text
    assert "fraction of loss recovered: 88.2% (95% CI 86.9% .. 89.5%; N=200, seeds=[0])" in text, text
