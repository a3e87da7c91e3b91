"""Regression suites: circuit claims kept as code.

A suite is a plain Python module (or package) with a module-level ``CASES`` list of
:class:`Case`. Each case says how to load a model, make data, build a hypothesis, and the range
its fraction of loss recovered is expected to fall in::

    CASES = [
        Case("induction/naive", model=load_model, data=make_data, hypothesis=naive,
             expected=(0.84, 0.92), n=1000, n_seeds=2),
    ]

``hypotheses/`` is itself such a suite: ``scrub suite hypotheses``.

>>> cases = load_suite("hypotheses")                     # a path, a .py file or a module name
>>> outcome = run_suite(select(cases, "induction"))      # doctest: +SKIP
>>> outcome.ok, outcome.table()                          # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pandas as pd

from scrub._ablation import check_ablation
from scrub._dataset import Dataset
from scrub._hypothesis import Hypothesis
from scrub._options import RunOptions
from scrub._result import Result
from scrub.errors import HypothesisError, ScrubError

__all__ = [
    "Case", "CaseResult", "SuiteResult", "SuiteError",
    "load_suite", "find_case", "collect", "select", "run_suite", "compare", "read_results",
]

#: Row fields of a case's outcome, in table order (``to_json``/``to_csv`` write these).
COLUMNS = [
    "name", "kind", "status", "score", "ci_lo", "ci_hi", "expected_lo", "expected_hi",
    "loss_model", "loss_scrubbed", "loss_baseline", "n", "n_seeds", "seed", "seconds", "message",
]


class SuiteError(ScrubError, ValueError):
    """A suite that cannot be loaded (no module there, an import that fails, no ``CASES`` list,
    duplicate case names), a malformed :class:`Case`, or a results file that cannot be read."""


@dataclass
class Case:
    """One hypothesis about one model, with the score range it is expected to keep.

    Attributes:
        name: unique within the suite, e.g. ``"induction/naive"``.
        model: a function of no arguments returning the model.
        data: a function ``(n, seed) -> Dataset``.
        hypothesis: a function of no arguments returning the :class:`~scrub.Hypothesis`.
        expected: ``(low, high)``: the point estimate of the fraction of loss recovered must lie
            in this range, measured with ``n`` examples and ``n_seeds`` seeds.
        kind: ``"true"``, ``"refined"``, ``"false"`` or ``"path"`` (what the zoo claims it is).
        n, n_seeds, seed, data_seed: the run's size and seeds.
        metric: passed to :func:`scrub.run`.
        baseline: a function of no arguments returning a baseline hypothesis, or None (fully scrubbed).
        ablation: None (resampling: causal scrubbing), or :class:`~scrub.Mean` / :class:`~scrub.Zero`
            to score the case with unclaimed inputs fixed to their mean or to zero (not causal
            scrubbing; the record says so).
        skip: a function of no arguments returning a reason to skip (e.g. weights not available
            offline), or None when the case can run.
        notes: one line for reports.
        tags: free labels; ``-k`` matches them as well as the name.
    """

    name: str
    model: Callable[[], Any]
    data: Callable[[int, int], Dataset]
    hypothesis: Callable[[], Hypothesis]
    expected: tuple[float, float]
    kind: str = "true"
    n: int = 1000
    n_seeds: int = 2
    seed: int = 0
    data_seed: int = 1234
    metric: str | Callable = "loss"
    baseline: Callable[[], Hypothesis] | None = None
    ablation: Any = None
    skip: Callable[[], str | None] | None = None
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SuiteError(f"a case's name must be a non-empty string, got {self.name!r}")
        try:
            lo, hi = (float(v) for v in self.expected)
        except (TypeError, ValueError):
            raise SuiteError(f"case {self.name!r}: expected must be a pair (low, high) of numbers, got {self.expected!r}") from None
        if not lo <= hi:
            raise SuiteError(f"case {self.name!r}: expected range {self.expected} has low > high")
        if self.kind not in {"true", "refined", "false", "path"}:
            raise SuiteError(f"case {self.name!r}: kind must be true, refined, false or path, got {self.kind!r}")
        for attr in ("model", "data", "hypothesis"):
            if not callable(getattr(self, attr)):
                raise SuiteError(f"case {self.name!r}: {attr} must be a function, got {type(getattr(self, attr)).__name__}")
        for attr in ("baseline", "skip"):
            if getattr(self, attr) is not None and not callable(getattr(self, attr)):
                raise SuiteError(f"case {self.name!r}: {attr} must be a function or None")
        try:
            self.ablation = check_ablation(self.ablation)
        except ScrubError as exc:
            raise SuiteError(f"case {self.name!r}: {exc}") from None
        for attr, least in (("n", 2), ("n_seeds", 1), ("seed", 0), ("data_seed", 0)):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise SuiteError(f"case {self.name!r}: {attr} must be an int of at least {least}, got {v!r}")

    def contains(self, score: float) -> bool:
        """Is ``score`` inside the expected range (bounds included)?"""
        lo, hi = self.expected
        return lo <= score <= hi

    def skip_reason(self) -> str | None:
        """Why the case cannot run here (None when it can)."""
        return None if self.skip is None else self.skip()

    def load(self, *, n: int | None = None, cache: dict | None = None) -> tuple[Any, Dataset]:
        """The case's model and its data of ``n`` examples (default ``self.n``), from ``cache`` when there."""
        cache = {} if cache is None else cache
        n = self.n if n is None else n
        mkey, dkey = ("model", self.model), ("data", self.data, n, self.data_seed)
        if mkey not in cache:
            cache[mkey] = self.model()
        if dkey not in cache:
            cache[dkey] = self.data(n, self.data_seed)
        return cache[mkey], cache[dkey]

    def run(
        self,
        *,
        n: int | None = None,
        n_seeds: int | None = None,
        seed: int | None = None,
        progress: bool | None = False,
        cache: dict | None = None,
        ray: str | None = None,
    ) -> Result:
        """Score the case: :func:`scrub.run` on its model, data and hypothesis.

        ``n``, ``n_seeds`` and ``seed`` override the case's own. ``cache`` (any dict, shared
        between calls) keeps loaded models and made data, keyed by loader and size. ``ray``
        scores on a Ray cluster (as for :func:`scrub.run`).
        """
        from scrub._experiment import run

        opts = self.options(n_seeds=n_seeds, seed=seed, progress=progress, ray=ray)
        model, data = self.load(n=n, cache=cache)
        hypothesis = self.hypothesis()
        if not isinstance(hypothesis, Hypothesis):
            raise HypothesisError(
                f"case {self.name!r}: hypothesis() returned {type(hypothesis).__name__}, not a scrub.Hypothesis"
            )
        return run(model, hypothesis, data, options=opts, baseline=None if self.baseline is None else self.baseline())

    def options(self, *, n_seeds: int | None = None, seed: int | None = None, progress: bool | None = False,
                ray: str | None = None) -> RunOptions:
        """The :class:`~scrub.RunOptions` the case is scored with (``n_seeds`` and ``seed`` override its own)."""
        return RunOptions(seed=self.seed if seed is None else seed, n_seeds=self.n_seeds if n_seeds is None else n_seeds,
                          metric=self.metric, progress=progress, ray=ray, ablation=self.ablation)


@dataclass
class CaseResult:
    """The outcome of one case in a suite run.

    Attributes:
        case: the :class:`Case`.
        status: ``"pass"`` (score in the expected range), ``"fail"`` (outside it), ``"skip"``
            (``case.skip`` gave a reason) or ``"error"`` (it raised; ``message`` says what).
        result: the :class:`~scrub.Result` (None when skipped or errored).
        message: why it failed, errored or was skipped.
        seconds: wall time of the case, loading included.
        n, n_seeds, seed: what the case was run with (overrides applied).
    """

    case: Case
    status: str
    result: Result | None
    message: str
    seconds: float
    n: int
    n_seeds: int
    seed: int

    @property
    def score(self) -> float:
        """The fraction of loss recovered (NaN without a result)."""
        return math.nan if self.result is None else self.result.loss_recovered

    @property
    def ci(self) -> tuple[float, float]:
        """The 95% interval of the score (NaNs without a result)."""
        return (math.nan, math.nan) if self.result is None else self.result.ci

    def to_row(self) -> dict[str, Any]:
        """The outcome as one flat row (the keys of :data:`COLUMNS`)."""
        r = self.result
        lo, hi = self.ci
        return {
            "name": self.case.name,
            "kind": self.case.kind,
            "status": self.status,
            "score": self.score,
            "ci_lo": lo,
            "ci_hi": hi,
            "expected_lo": float(self.case.expected[0]),
            "expected_hi": float(self.case.expected[1]),
            "loss_model": math.nan if r is None else r.loss_model,
            "loss_scrubbed": math.nan if r is None else r.loss_scrubbed,
            "loss_baseline": math.nan if r is None else r.loss_baseline,
            "n": self.n,
            "n_seeds": self.n_seeds,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            "message": self.message,
        }


@dataclass
class SuiteResult:
    """The outcomes of a suite run, in case order."""

    cases: list[CaseResult]
    source: str = ""

    @property
    def ok(self) -> bool:
        """True when no case failed or errored (skips are fine)."""
        return all(c.status in ("pass", "skip") for c in self.cases)

    @property
    def failed(self) -> list[CaseResult]:
        """The cases that left their expected range or raised."""
        return [c for c in self.cases if c.status in ("fail", "error")]

    def table(self) -> pd.DataFrame:
        """One row per case, columns :data:`COLUMNS`."""
        return pd.DataFrame([c.to_row() for c in self.cases], columns=COLUMNS)

    def to_json(self, path: str | Path) -> Path:
        """Write the outcomes (rows plus each run's reproduction record) as JSON; :func:`compare` reads it."""
        from scrub import __version__

        rows = []
        for c in self.cases:
            row = {k: _json_value(v) for k, v in c.to_row().items()}
            row["record"] = {} if c.result is None else c.result.record
            rows.append(row)
        doc = {"scrub": __version__, "suite": self.source, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cases": rows}
        path = Path(path)
        path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        return path

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`table` as CSV."""
        path = Path(path)
        self.table().to_csv(path, index=False)
        return path


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


# -- loading -------------------------------------------------------------------------------
def load_suite(target: str | Path | ModuleType) -> list[Case]:
    """The cases of a suite: ``CASES`` of a module.

    ``target`` is a module object, a path to a ``.py`` file, a path to a package directory
    (imported under its directory name, its parent put on ``sys.path``), or a dotted module
    name (``"hypotheses"``, ``"mypkg.suite"``). Case names must be unique.
    """
    module = target if isinstance(target, ModuleType) else _import(target)
    if not hasattr(module, "CASES"):
        raise SuiteError(f"suite {module.__name__!r} ({getattr(module, '__file__', '?')}) defines no CASES list")
    if isinstance(module.CASES, (str, bytes, Mapping)) or not isinstance(module.CASES, Iterable):
        raise SuiteError(
            f"suite {module.__name__!r}: CASES must be a list of scrub.suite.Case, got {type(module.CASES).__name__}"
        )
    cases = list(module.CASES)
    bad = [c for c in cases if not isinstance(c, Case)]
    if bad:
        raise SuiteError(f"suite {module.__name__!r}: CASES holds {type(bad[0]).__name__}, not scrub.suite.Case")
    seen: set[str] = set()
    for c in cases:
        if c.name in seen:
            raise SuiteError(f"suite {module.__name__!r}: two cases are named {c.name!r}")
        seen.add(c.name)
    return cases


def _import(target: str | Path) -> ModuleType:
    """Import a suite's module, turning every failure (not found, a syntax error, an exception raised
    while importing) into a :class:`SuiteError` that names it."""
    if not isinstance(target, (str, Path)) or not str(target).strip():
        raise SuiteError(f"no suite at {target!r}: name a .py file, a package directory or a module name")
    try:
        return _import_module(target)
    except SuiteError:
        raise
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name and str(target).replace("/", ".").startswith(exc.name):
            raise SuiteError(f"no suite at {str(target)!r}: no module named {exc.name!r}") from exc
        where = f"line {exc.lineno}: " if isinstance(exc, SyntaxError) and exc.lineno else ""
        raise SuiteError(
            f"importing the suite {str(target)!r} failed: {where}{type(exc).__name__}: {exc}"
        ) from exc


def _import_module(target: str | Path) -> ModuleType:
    path = Path(target)
    if path.suffix == ".py" and path.is_file():
        name = f"_scrub_suite_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path.resolve())
        if spec is None or spec.loader is None:
            raise SuiteError(f"{path}: Python cannot load this file as a module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    if path.is_dir():
        if not (path / "__init__.py").is_file():
            raise SuiteError(f"{path} is a directory but not a package (no __init__.py)")
        parent = str(path.resolve().parent)
        if parent not in sys.path:
            sys.path.insert(0, parent)
        return importlib.import_module(path.resolve().name)
    name = str(target)
    if not name.replace(".", "").replace("_", "").isalnum():
        raise SuiteError(f"no suite at {name!r}: not a file, a package directory or a module name")
    if importlib.util.find_spec(name.split(".")[0]) is None:
        raise SuiteError(f"no suite at {name!r}: not a file, a package directory or an importable module")
    return importlib.import_module(name)


def find_case(target: str) -> Case:
    """The case that ``MODULE:NAME`` names (what ``scrub run`` scores).

    ``MODULE`` is a dotted module name or a path to a ``.py`` file. ``NAME`` is, in this order:

    - an attribute that is a :class:`Case`: that case;
    - an attribute that is a :class:`~scrub.Hypothesis` or a function of no arguments returning
      one: scored on ``load_model()`` and ``make_data(n, seed)`` found in ``MODULE`` or the nearest
      package above it that defines both (e.g. ``hypotheses.induction.hypotheses:naive`` uses
      ``hypotheses.induction``), with the :class:`Case` defaults (1000 examples, 2 seeds) and no
      expected range;
    - the name of one of ``MODULE.CASES`` (``hypotheses:induction/naive``).
    """
    if ":" not in target:
        raise SuiteError(f"{target!r}: expected MODULE:NAME (a Case, a hypothesis function or a case name)")
    where, attr = target.rsplit(":", 1)
    if not where.strip() or not attr.strip():
        raise SuiteError(
            f"{target!r}: expected MODULE:NAME with both parts, e.g. hypotheses.induction.hypotheses:naive"
        )
    module = _import(where)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None) if part.isidentifier() else None
        if obj is None:
            break
    if obj is None:
        cases = getattr(module, "CASES", None) or []
        if not isinstance(cases, (list, tuple)):
            raise SuiteError(
                f"{where!r} has no attribute {attr!r}, and its CASES is a {type(cases).__name__}, not a list of "
                "scrub.suite.Case"
            )
        for case in cases:
            if isinstance(case, Case) and case.name == attr:
                return case
        names = ", ".join(c.name for c in cases if isinstance(c, Case)) or "none"
        raise SuiteError(f"{where!r} has no attribute {attr!r} and no case of that name (its cases: {names})")
    if isinstance(obj, Case):
        return obj
    if isinstance(obj, Hypothesis):
        hypothesis: Callable[[], Hypothesis] = lambda: obj
    elif callable(obj):
        hypothesis = cast(Callable[[], Hypothesis], obj)
    else:
        raise SuiteError(f"{target!r} is a {type(obj).__name__}: name a Case, a Hypothesis or a function returning one")
    load_model, make_data = _loaders(module, target)
    return Case(target, model=load_model, data=make_data, hypothesis=hypothesis, expected=(-math.inf, math.inf))


def _loaders(module: ModuleType, target: str) -> tuple[Callable, Callable]:
    parts = module.__name__.split(".")
    for k in range(len(parts), 0, -1):
        name = ".".join(parts[:k])
        m = module if k == len(parts) else importlib.import_module(name)
        if callable(getattr(m, "load_model", None)) and callable(getattr(m, "make_data", None)):
            return m.load_model, m.make_data
    raise SuiteError(
        f"{target!r}: no load_model() and make_data(n, seed) in {module.__name__!r} or a package above it; "
        "define them there, or name a scrub.suite.Case"
    )


def collect(package: str, submodule: str = "suite") -> list[Case]:
    """The ``CASES`` of every ``<package>.<entry>.<submodule>`` that exists, in entry-name order.

    A zoo package uses this for its own ``CASES``: entries without a suite module are skipped,
    but an entry whose suite module exists and fails to import raises (nothing vanishes silently).
    """
    import pkgutil

    pkg = importlib.import_module(package)
    cases: list[Case] = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        entry_dir = Path(getattr(info.module_finder, "path", "")) / info.name
        if not ((entry_dir / f"{submodule}.py").is_file() or (entry_dir / submodule / "__init__.py").is_file()):
            continue
        module = importlib.import_module(f"{package}.{info.name}.{submodule}")
        cases.extend(load_suite(module))
    return cases


def select(cases: Sequence[Case], pattern: str | Iterable[str] | None) -> list[Case]:
    """The cases matching ``pattern`` (several patterns: any of them).

    A pattern with ``*``, ``?`` or ``[`` is a glob on the case name; otherwise it is a
    case-insensitive substring of the name, a tag or the kind. A leading ``not `` inverts it.
    """
    if pattern is None:
        return list(cases)
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    if not patterns:
        return list(cases)
    return [c for c in cases if any(_matches(c, p) for p in patterns)]


def _matches(case: Case, pattern: str) -> bool:
    p = pattern.strip()
    if p.lower().startswith("not "):
        return not _matches(case, p[4:])
    if any(ch in p for ch in "*?["):
        return fnmatch.fnmatchcase(case.name.lower(), p.lower())
    p = p.lower()
    return p in case.name.lower() or p == case.kind or any(p in t.lower() for t in case.tags)


# -- running -------------------------------------------------------------------------------
def run_suite(
    cases: Sequence[Case],
    *,
    n: int | None = None,
    n_seeds: int | None = None,
    seed: int | None = None,
    source: str = "",
    on_start: Callable[[Case], None] | None = None,
    on_done: Callable[[CaseResult], None] | None = None,
    cache: dict | None = None,
    ray: str | None = None,
) -> SuiteResult:
    """Run every case (``n``, ``n_seeds``, ``seed`` override the cases' own), models and data
    loaded once per loader. A case that raises is recorded as ``"error"``; the run goes on.
    ``on_start``/``on_done`` are called around each case (progress bars); ``cache`` (a dict) keeps
    the loaded models and data for the caller. ``ray`` (``"auto"`` or ``HOST:PORT``) scores every
    case on that Ray cluster (see :func:`scrub.run`); it is connected to before any case runs, and a
    cluster that does not answer raises :class:`~scrub.ClusterError` instead of failing every case."""
    cache = {} if cache is None else cache
    if ray is not None:
        from scrub._distributed import connect

        address = RunOptions(ray=ray).ray  # validated: "auto", HOST:PORT or ray://HOST:PORT
        assert address is not None
        connect(address)
    out: list[CaseResult] = []
    for case in cases:
        if on_start is not None:
            on_start(case)
        used = (case.n if n is None else n, case.n_seeds if n_seeds is None else n_seeds, case.seed if seed is None else seed)
        t0 = time.perf_counter()
        result, message = None, ""
        try:
            reason = case.skip_reason()
            if reason:
                status, message = "skip", reason
            else:
                result = case.run(n=used[0], n_seeds=used[1], seed=used[2], cache=cache, ray=ray)
                lo, hi = case.expected
                if case.contains(result.loss_recovered):
                    status = "pass"
                else:
                    status = "fail"
                    side = "below" if result.loss_recovered < lo else "above"
                    message = f"score {result.loss_recovered:.1%} is {side} the expected range {lo:.1%} .. {hi:.1%}"
        except Exception as exc:  # a broken case is a result, not the end of the run
            status, message = "error", f"{type(exc).__name__}: {exc}"
        cr = CaseResult(case, status, result, message, time.perf_counter() - t0, *used)
        out.append(cr)
        if on_done is not None:
            on_done(cr)
    return SuiteResult(out, source=source)


# -- comparing with an earlier run ---------------------------------------------------------
def read_results(path: str | Path) -> pd.DataFrame:
    """The case rows of a JSON file written by :meth:`SuiteResult.to_json`."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read the results file ({exc})") from None
    if not text.strip():
        raise SuiteError(f"{path} is empty; pass a file written by --json")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path} is not JSON ({exc}); pass a file written by --json") from None
    rows = doc.get("cases") if isinstance(doc, dict) else doc
    if not isinstance(rows, list) or not rows:
        raise SuiteError(f"{path} holds no case results (a 'cases' list); pass a file written by --json")
    bad = [r for r in rows if not isinstance(r, dict) or not isinstance(r.get("name"), str)]
    if bad:
        raise SuiteError(f"{path}: a case result is not an object with a 'name' ({str(bad[0])[:60]})")
    table = pd.DataFrame([{k: r.get(k) for k in COLUMNS} for r in rows], columns=COLUMNS)
    try:
        return table.astype({k: float for k in ("score", "ci_lo", "ci_hi")})
    except (TypeError, ValueError) as exc:
        raise SuiteError(f"{path}: a case's score or interval is not a number ({exc})") from None


def compare(new: SuiteResult | pd.DataFrame, old: SuiteResult | pd.DataFrame | str | Path) -> pd.DataFrame:
    """Which cases moved between two runs by more than their intervals allow.

    Each score's 95% interval gives a half-width ``w``; treating the two runs as independent,
    the difference's 95% half-width is ``sqrt(w_new**2 + w_old**2)``. A case is ``moved`` when
    ``|new - old|`` exceeds it (identical code, data and seeds give identical scores).

    Returns one row per case name in either run: ``name, old, old_lo, old_hi, new, new_lo,
    new_hi, delta, allowed, moved, note`` (``note``: ``"new"``, ``"gone"``, ``"no score"`` or ``""``).
    """
    new_t = new.table() if isinstance(new, SuiteResult) else new
    old_t = old.table() if isinstance(old, SuiteResult) else old if isinstance(old, pd.DataFrame) else read_results(old)
    olds = {r["name"]: r for r in old_t.to_dict("records")}
    news = {r["name"]: r for r in new_t.to_dict("records")}
    rows = []
    for name in list(news) + [k for k in olds if k not in news]:
        a, b = olds.get(name), news.get(name)
        row = {"name": name}
        for tag, r in (("old", a), ("new", b)):
            row[tag], row[f"{tag}_lo"], row[f"{tag}_hi"] = (
                (math.nan,) * 3 if r is None else (_f(r["score"]), _f(r["ci_lo"]), _f(r["ci_hi"]))
            )
        row["delta"] = row["new"] - row["old"]
        w_old, w_new = (row["old_hi"] - row["old_lo"]) / 2, (row["new_hi"] - row["new_lo"]) / 2
        row["allowed"] = math.hypot(w_old, w_new)
        row["moved"] = bool(abs(row["delta"]) > row["allowed"]) if math.isfinite(row["delta"]) else False
        row["note"] = "new" if a is None else "gone" if b is None else "" if math.isfinite(row["delta"]) else "no score"
        rows.append(row)
    cols = ["name", "old", "old_lo", "old_hi", "new", "new_lo", "new_hi", "delta", "allowed", "moved", "note"]
    return pd.DataFrame(rows, columns=cols)


def _f(v: Any) -> float:
    return math.nan if v is None else float(v)
