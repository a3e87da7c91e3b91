"""The pytest plugin of scrub, registered through the ``pytest11`` entry point (active wherever scrub is installed).

- ``--scrub-n N`` / ``--scrub-seeds K``: override the number of examples and of sampling seeds
  of every :func:`scrub.testing.assert_faithful` and :func:`scrub.testing.assert_case` in the run.
- marker ``scrub``: marks a causal scrubbing test (``pytest -m scrub`` selects them,
  ``-m "not scrub"`` leaves them out); tests that use the ``scrub_options`` fixture get it
  automatically, and so do the parameters from :func:`scrub.testing.case_params`.
- fixture ``scrub_options``: the :class:`scrub.testing.Options` in force (``.n``, ``.n_seeds``;
  None where the command line sets nothing), e.g. to size data made inside a test.

Disable it with ``-p no:scrub``.
"""

from __future__ import annotations

import argparse

import pytest

from scrub import testing

__all__ = ["scrub_options"]

_PREVIOUS = pytest.StashKey[testing.Options]()


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("scrub", "causal scrubbing (scrub)")
    group.addoption("--scrub-n", type=_positive, default=None, metavar="N", dest="scrub_n",
                    help="number of examples for every scrub assertion (overrides the tests' own)")
    group.addoption("--scrub-seeds", type=_positive, default=None, metavar="K", dest="scrub_seeds",
                    help="number of sampling seeds for every scrub assertion (overrides the tests' own)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scrub: a causal scrubbing test (select with -m scrub)")
    config.stash[_PREVIOUS] = testing.configure(n=config.getoption("scrub_n"), n_seeds=config.getoption("scrub_seeds"))


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(_PREVIOUS, None)
    if previous is not None:
        testing.configure(n=previous.n, n_seeds=previous.n_seeds)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "scrub_options" in getattr(item, "fixturenames", ()) and item.get_closest_marker("scrub") is None:
            item.add_marker(pytest.mark.scrub)


@pytest.fixture
def scrub_options() -> testing.Options:
    """The example and seed overrides from ``--scrub-n``/``--scrub-seeds`` (None where unset)."""
    return testing.options()

