"""The documentation is tested like code.

- Every fenced ``python`` block of README.md and docs/*.md runs, in page order, each page in its own
  namespace and its own temporary working directory (a block sees what the blocks above it on the
  same page defined). A block preceded by the line ``<!-- no-test -->`` is skipped; use it only for
  code that cannot run here (downloaded weights, a GPU).
- Every docstring example (doctest) in the ``scrub`` package runs.
- The API reference covers every public name of ``scrub``; the README stays a front page (at most
  8 KB) that links to every reference page; every page is in the site's navigation; the generated
  tables are what their sources say.
"""

from __future__ import annotations

import csv
import doctest
import importlib
import os
import pkgutil
import re
import sys
from pathlib import Path

import pytest
import torch

import scrub

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
NO_TEST = "<!-- no-test -->"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md")), *sorted((DOCS / "reference").glob("*.md"))]


def python_blocks(path: Path) -> list[tuple[int, str, bool]]:
    """``(line, code, skipped)`` for every fenced python block of ``path``, in order."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) not in ("python", "py"):
            continue
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        out.append((line, m.group(2), before == NO_TEST))
    return out


BLOCKS = [(p, line, code, skipped) for p in pages() for line, code, skipped in python_blocks(p)]


class _Page:
    """One page's namespace, working directory and how many of its blocks have run."""

    def __init__(self, tmp: Path) -> None:
        self.namespace: dict = {"__name__": "__docs__"}
        self.tmp = tmp
        self.done = 0


_PAGES: dict[Path, _Page] = {}


_MODELS: dict = {}


def _cached_induction_model():
    """``hypotheses.induction.load_model`` loaded once for all pages (the examples never modify it)."""
    if "induction" not in _MODELS:
        _MODELS["induction"] = _load_induction()
    return _MODELS["induction"]


import hypotheses.induction as _induction  # noqa: E402

_load_induction = _induction.load_model


def _run(path: Path, line: int, code: str) -> None:
    cwd = os.getcwd()
    os.chdir(_PAGES[path].tmp)
    _induction.load_model = _cached_induction_model
    # the examples' models are tiny: one thread is as fast alone, and much faster on a shared machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # padded so that tracebacks give the line in the page
        exec(compile("\n" * line + code, str(path.relative_to(ROOT)), "exec"), _PAGES[path].namespace)
    finally:
        torch.set_num_threads(threads)
        _induction.load_model = _load_induction
        os.chdir(cwd)


@pytest.mark.parametrize(
    "path, line, code, skipped",
    [pytest.param(*b, id=f"{b[0].relative_to(ROOT)}:{b[1]}") for b in BLOCKS],
)
def test_code_block(path: Path, line: int, code: str, skipped: bool, tmp_path_factory) -> None:
    if skipped:
        pytest.skip(f"marked {NO_TEST}")
    if path not in _PAGES:
        _PAGES[path] = _Page(tmp_path_factory.mktemp(path.stem))
    page = _PAGES[path]
    # the blocks above this one on the page, when they have not run yet (e.g. under -k)
    earlier = [b for b in python_blocks(path) if b[0] < line]
    for bline, bcode, bskipped in earlier[page.done:]:
        if not bskipped:
            _run(path, bline, bcode)
    _run(path, line, code)
    page.done = len(earlier) + 1


def test_blocks_are_found() -> None:
    """The extractor sees the examples: the README's and the guide's at least, none marked by accident."""
    by_page = {p.name: [b for b in BLOCKS if b[0] == p] for p in pages()}
    assert len(by_page["README.md"]) >= 1
    assert len(by_page["guide.md"]) >= 5
    skipped = [f"{p.relative_to(ROOT)}:{line}" for p, line, _, s in BLOCKS if s]
    assert len(skipped) <= 2, f"too many blocks opted out of testing: {skipped}"


def test_no_test_marker_only_before_fences() -> None:
    """A marker must sit directly above a python fence, or it silently marks nothing."""
    for p in pages():
        lines = p.read_text(encoding="utf-8").split("\n")
        for i, text in enumerate(lines):
            if text.strip() == NO_TEST:
                nxt = lines[i + 1] if i + 1 < len(lines) else ""
                assert re.match(r"```(python|py)\b", nxt), f"{p.name}:{i + 1}: {NO_TEST} not directly above a python block"


# -- doctests -------------------------------------------------------------------------------------

MODULES = sorted(m.name for m in pkgutil.walk_packages(scrub.__path__, "scrub."))


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):  # each in a copy of its module's globals
        runner.run(test, out=sys.stdout.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples of {name} failed (see the output)"


def test_doctests_exist() -> None:
    """The package has docstring examples to run (so the test above can fail)."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    n = sum(
        len([e for t in finder.find(importlib.import_module(m), m) for e in t.examples])
        for m in MODULES
    )
    assert n >= 3


# -- the reference and the README ---------------------------------------------------------------

def _directives() -> set[str]:
    out = set()
    for p in (DOCS / "reference").glob("*.md"):
        out |= set(re.findall(r"^::: ([\w.]+)", p.read_text(encoding="utf-8"), re.MULTILINE))
    return out


def _exports(target: str) -> set[str]:
    """The ``__all__`` of ``target`` when it names a module (a ``:::`` on a module renders those)."""
    try:
        return set(getattr(importlib.import_module(target), "__all__", ()))
    except ImportError:
        return set()


def test_reference_covers_every_public_name() -> None:
    """Every name of ``scrub.__all__`` has a reference entry: as ``scrub.NAME``, at the path where it is
    defined, or through a module page whose ``__all__`` lists it."""
    documented = _directives()
    listed = set().union(*(_exports(t) for t in documented))
    missing = []
    for name in scrub.__all__:
        obj = getattr(scrub, name)
        module = getattr(obj, "__module__", "") or ""
        if not ({f"scrub.{name}", f"{module}.{name}"} & documented or name in listed):
            missing.append(name)
    assert not missing, f"public names with no ::: entry under docs/reference/: {missing}"


def test_reference_names_exist() -> None:
    """Every ::: directive names something importable (mkdocs would fail the build otherwise, too)."""
    for target in sorted(_directives()):
        parts = target.split(".")
        for k in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:k]))
            except ImportError:
                continue
            for attr in parts[k:]:
                obj = getattr(obj, attr)
            break
        else:  # pragma: no cover
            pytest.fail(f"{target}: no such module")


def test_readme_is_a_front_page() -> None:
    size = len(README.read_bytes())
    assert size <= 8192, f"README.md is {size} bytes; the front page must stay within 8 KB (move detail to docs/)"


def test_readme_links_resolve_and_reach_every_reference_page() -> None:
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    broken = [link for link in local if not (ROOT / link).exists()]
    assert not broken, f"README links to files that do not exist: {broken}"
    pages_linked = {(ROOT / link).resolve() for link in local}
    unlinked = [p.name for p in (DOCS / "reference").glob("*.md") if p.resolve() not in pages_linked]
    assert not unlinked, f"README does not link to these reference pages: {unlinked}"


def test_nav_lists_every_page() -> None:
    nav = re.findall(r"^\s*-\s+(?:[^:\n]+:\s+)?([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)
    files = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert set(nav) == files, f"only in nav: {sorted(set(nav) - files)}; not in nav: {sorted(files - set(nav))}"


def _project_files():
    skip = {".venv", ".git", "site", "build", "dist", ".pytest_cache", ".hypothesis"}
    for p in ROOT.rglob("*"):
        rel = p.relative_to(ROOT)
        if p.is_file() and p.suffix in {".py", ".md", ".toml", ".yml", ".cfg"} and not skip & set(rel.parts[:-1]) \
                and p != Path(__file__).resolve():
            yield p


def test_no_reference_outside_the_repository() -> None:
    """Code, docstrings, README and docs speak for themselves: no file outside the repository is cited."""
    files = list(_project_files())
    assert any(f.name == "executor.py" or f.name == "_executor.py" for f in files)
    for p in files:
        text = p.read_text(encoding="utf-8")
        for bad in ("DESIGN.md", "shared/", "TRANSFORMERLENS-4"):
            assert bad not in text, f"{p.relative_to(ROOT)} mentions {bad!r}, which is not in the repository"


# -- generated tables -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gen():
    sys.path.insert(0, str(DOCS))
    try:
        yield importlib.import_module("gen")
    finally:
        sys.path.remove(str(DOCS))


def test_zoo_table_is_every_case(gen) -> None:
    import hypotheses

    table = gen.zoo_table()
    rows = [r for r in table.split("\n")[2:]]
    assert len(rows) == len(hypotheses.CASES) > 0
    for case, row in zip(hypotheses.CASES, rows, strict=True):
        lo, hi = case.expected
        assert row.startswith(f"| `{case.name}` | {case.kind} | ")
        assert f"{gen._pct(lo)} .. {gen._pct(hi)}" in row and f"{case.n} × {case.n_seeds}" in row
    summary = gen.zoo_summary()
    assert f"| **all** | **{len(hypotheses.CASES)}** |" in summary


def test_pct_formats() -> None:
    sys.path.insert(0, str(DOCS))
    try:
        from gen import _pct
    finally:
        sys.path.remove(str(DOCS))
    assert (_pct(0.86), _pct(1.0), _pct(-0.05), _pct(0.995)) == ("86%", "100%", "-5%", "99.5%")


def test_benchmark_table_is_the_csv(gen) -> None:
    with (ROOT / "benchmarks" / "results" / "summary.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    table = gen.bench_table().split("\n")[2:]
    assert len(table) == len(rows) > 0
    for r, line in zip(rows, table, strict=True):
        assert f"| {gen._num(r['median'])} |" in line and r["metric"].replace("|", "\\|") in line
    headline = gen.bench_headline()
    assert "speed-up vs naive recursion" in headline and "log-log slope" in headline
    assert gen._num("76.25220810934655") == "76.3" and gen._num("341.18") == "341"


def test_other_benchmark_files_are_rendered(gen, tmp_path) -> None:
    head = "figure,case,n,metric,median,min,max,reps\n"
    (tmp_path / "summary.csv").write_text(head + "overhead,skipped,1,x,1,1,1,1\n")
    (tmp_path / "quick").mkdir()
    (tmp_path / "quick" / "positions.csv").write_text(head + "pruning,induction,200,instances | pruned,51.0,50,52.5,3\n")
    (tmp_path / "quick" / "positions.md").write_text("# Varying targets\n\n`python -m benchmarks.positions --quick`; N = 200.\n")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")  # not in the summary's format: left out
    monkey = gen.ROOT
    try:
        gen.ROOT = tmp_path
        text = gen.bench_more(tmp_path)
    finally:
        gen.ROOT = monkey
    assert text.startswith("### Varying targets")
    assert "From `quick/positions.csv`. `python -m benchmarks.positions --quick`; N = 200." in text
    assert "| induction | 200 | instances \\| pruned | 51 | 50..52.5 | 3 |" in text
    assert "skipped" not in text and "other.csv" not in text
    assert gen.bench_more(tmp_path / "quick" / "nothing") == "No other benchmark results are committed."


def test_errors_tree_is_the_hierarchy(gen) -> None:
    tree = gen.errors_tree()

    def subclasses(c: type) -> list[type]:
        return [s for d in c.__subclasses__() for s in (d, *subclasses(d))]

    names = [c.__name__ for c in subclasses(scrub.ScrubError)]
    assert len(names) >= 10 and "HypothesisError" in names
    for name in names:
        assert re.search(rf"[├└]── {name}\b", tree), f"{name} missing from the generated errors tree"
    assert "│   └── GraphError" in tree  # nested under HypothesisError
    assert "├── HypothesisError (ValueError)" in tree


def test_sphinx_roles_become_links_or_code() -> None:
    sys.path.insert(0, str(DOCS))
    try:
        from griffe_roles import convert, documented
    finally:
        sys.path.remove(str(DOCS))
    targets = {"scrub.run", "scrub.Result"}
    text = "See :func:`scrub.run`, :class:`~scrub.Result`, :meth:`Hypothesis.only` and :func:`run`."
    assert convert(text, targets) == (
        "See [`scrub.run`][scrub.run], [`Result`][scrub.Result], `Hypothesis.only` and [`run`][scrub.run]."
    )
    assert "scrub.run" in documented() and "scrub.Dataset" in documented()


def test_markers_expand(gen) -> None:
    used = set()
    for p in DOCS.glob("*.md"):
        used |= set(gen.MARKER.findall(p.read_text(encoding="utf-8")))
    assert used and used <= set(gen.TABLES), f"unknown generated tables: {used - set(gen.TABLES)}"
    assert "<!-- gen:" not in gen.expand("a\n<!-- gen:bench-setup -->\nb")
    with pytest.raises(KeyError, match="unknown generated table"):
        gen.expand("<!-- gen:nonsense -->")


def test_architecture_table_is_the_matrix(gen) -> None:
    table = gen.architectures()
    rows = [ln for ln in table.splitlines()[2:] if ln.startswith("| `")]
    expected = scrub.supported_architectures()
    assert [r.split("`")[1] for r in rows] == list(expected.architecture)
    exact = [r for r in rows if "**exact**" in r]
    assert len(exact) == int((expected.status == "exact").sum()) and all("—" not in r.split("|")[7] for r in exact)
