"""Worked hypotheses shipped with scrub: small trained models with known circuits.

The package is itself a regression suite (``scrub suite hypotheses``): ``CASES`` gathers the
``CASES`` of every entry's ``suite`` module (``hypotheses/<entry>/suite.py``). An entry without a
suite module is skipped; a suite module that fails to import raises. ``CASES`` is collected on
first access, so ``import hypotheses`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CASES"]


def __getattr__(name: str) -> Any:
    if name == "CASES":
        from scrub.suite import collect

        try:
            cases = collect(__name__)
        except AttributeError as exc:  # would read as "no attribute CASES" through getattr
            raise ImportError(f"collecting the suites of {__name__!r} failed: {exc}") from exc
        globals()["CASES"] = cases
        return cases
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
