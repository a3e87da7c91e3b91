"""Generated tables of the documentation: the zoo from the suites' ``CASES``, the benchmarks from ``benchmarks/results/``.

Used two ways:

- as a mkdocs hook (``hooks:`` in ``mkdocs.yml``): a page line that is exactly ``<!-- gen:NAME -->``
  is replaced by the table ``NAME`` when the site is built, and the images the pages show from outside
  ``docs/`` (the benchmark scaling plot, the report screenshot) are added to the site;
- from the command line, to print one table: ``python docs/gen.py zoo`` (names: see ``TABLES``).

Nothing here runs a model: the zoo table imports the suite modules and reads each ``Case``'s fields
(name, kind, expected range, size, notes), and the benchmark tables read the CSV files that
``python -m benchmarks.run`` wrote. Building the site therefore works offline in a few seconds.
"""

from __future__ import annotations

import csv
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

#: Files outside ``docs/`` that pages show, as (path in the site, path in the repository).
ASSETS = [
    ("assets/scaling.png", RESULTS / "scaling.png"),
    ("assets/report.png", ROOT / "tests" / "screenshots" / "report.png"),
]

MARKER = re.compile(r"^<!-- gen:([a-z0-9-]+) -->$", re.MULTILINE)


def _cases() -> list:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import hypotheses

    return list(hypotheses.CASES)


def _cell(text: object) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if float(x).is_integer() or abs(100 * x - round(100 * x)) < 1e-9 else f"{100 * x:.1f}%"


def entry_of(name: str) -> str:
    """The zoo entry a case belongs to: its name up to the first ``/`` (two parts for ``published/``)."""
    parts = name.split("/")
    return "/".join(parts[:2]) if parts[0] == "published" and len(parts) > 2 else parts[0]


def zoo_summary(cases: list | None = None) -> str:
    """One row per zoo entry: how many cases of each kind."""
    cases = _cases() if cases is None else cases
    kinds = ["true", "refined", "path", "false"]
    rows: dict[str, dict[str, int]] = {}
    for c in cases:
        rows.setdefault(entry_of(c.name), dict.fromkeys(kinds, 0))[c.kind] += 1
    out = ["| entry | cases | " + " | ".join(kinds) + " |", "|---|---:|" + "---:|" * len(kinds)]
    for entry, counts in rows.items():
        out.append(f"| `{entry}` | {sum(counts.values())} | " + " | ".join(str(counts[k]) for k in kinds) + " |")
    out.append(f"| **all** | **{len(cases)}** | " + " | ".join(str(sum(r[k] for r in rows.values())) for k in kinds) + " |")
    return "\n".join(out)


def zoo_table(cases: list | None = None) -> str:
    """Every case of ``hypotheses.CASES``: kind, expected range of the score, size, notes."""
    cases = _cases() if cases is None else cases
    out = [
        "| case | kind | expected score | N × seeds | notes |",
        "|---|---|---|---|---|",
    ]
    for c in cases:
        lo, hi = c.expected
        out.append(
            f"| `{c.name}` | {c.kind} | {_pct(lo)} .. {_pct(hi)} | {c.n} × {c.n_seeds} | {_cell(c.notes)} |"
        )
    return "\n".join(out)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(s: str) -> str:
    """A measured figure to 3 significant digits (as benchmarks/run.py's summary does)."""
    if s in ("", None):
        return ""
    x = float(s)
    if not math.isfinite(x):
        return s
    if x != 0 and abs(x) < 1e-3:
        return f"{x:.2g}"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _summary_path() -> Path:
    return RESULTS / "summary.csv"


def bench_setup(path: Path | None = None) -> str:
    """One sentence: where and how the committed figures were measured (from the CSV's own columns)."""
    rows = _read_csv(path or _summary_path())
    r = rows[0]
    modes = sorted({row["mode"] for row in rows})
    return (
        f"Measured by `python -m benchmarks.run` ({', '.join(modes)} mode) on {r['device']}, "
        f"torch {r['torch']}, {r['threads']} thread(s); each figure is the median of its repeats "
        f"with min..max."
    )


def bench_table(path: Path | None = None) -> str:
    """Every row of ``benchmarks/results/summary.csv``."""
    rows = _read_csv(path or _summary_path())
    out = ["| figure | case | N | metric | median | min..max | repeats |", "|---|---|---:|---|---:|---|---:|"]
    for r in rows:
        n = r.get("n") or ""
        n = "" if n == "" else f"{float(n):,.0f}"
        out.append(
            f"| {r['figure']} | {_cell(r['case'])} | {n} | {_cell(r['metric'])} | {_num(r['median'])} | "
            f"{_num(r['min'])}..{_num(r['max'])} | {r['reps']} |"
        )
    return "\n".join(out)


def bench_headline(path: Path | None = None) -> str:
    """The figures with a target: the executor's overhead, its speed-up, the scaling slope; and the
    forward-pass equivalents of every case."""
    rows = _read_csv(path or _summary_path())
    keep = [
        r for r in rows
        if "target" in r["metric"] or r["figure"] == "scaling" or r["metric"].startswith(("speed-up vs oracle", "forward-pass"))
    ]
    out = ["| figure | case | median | min..max |", "|---|---|---:|---|"]
    for r in keep:
        out.append(f"| {_cell(r['metric'])} | {_cell(r['case'])} | **{_num(r['median'])}** | {_num(r['min'])}..{_num(r['max'])} |")
    return "\n".join(out)


def scaling_table(path: Path | None = None) -> str:
    """Time and peak memory against N and against the number of interpretation nodes (``scaling.csv``)."""
    rows = _read_csv(path or RESULTS / "scaling.csv")
    out = [
        "| sweep | N | nodes | instances | time (s) | µs per reference | peak RSS (MB) | of it scrub (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['sweep']} | {int(float(r['n'])):,} | {r['nodes']} | {r['instances']} | {_num(r['time_s'])} | "
            f"{_num(r['us_per_reference'])} | {_num(r['rss_peak_mb'])} | {_num(r['rss_scrub_mb'])} |"
        )
    return "\n".join(out)


def distributed_cost(path: Path | None = None) -> str:
    """Every row of ``benchmarks/results/distributed.csv`` (``python -m benchmarks.distributed``)."""
    path = path or RESULTS / "distributed.csv"
    if not path.exists():
        return "No distributed benchmark is committed: run `python -m benchmarks.distributed`."
    out = ["| what | case | median | min..max | repeats |", "|---|---|---:|---|---:|"]
    for r in _read_csv(path):
        out.append(f"| {_cell(r['metric'])} | {_cell(r['case'])} | {_num(r['median'])} | "
                   f"{_num(r['min'])}..{_num(r['max'])} | {r['reps']} |")
    return "\n".join(out)


def errors_tree() -> str:
    """The ``ScrubError`` hierarchy as a text tree, read from the classes (every scrub module imported)."""
    import importlib
    import pkgutil

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import scrub

    for m in pkgutil.walk_packages(scrub.__path__, "scrub."):
        importlib.import_module(m.name)
    lines = ["```text"]

    def walk(cls: type, prefix: str, last: bool, top: bool) -> None:
        builtin = [b.__name__ for b in cls.__bases__ if b.__module__ == "builtins" and b is not Exception]
        label = cls.__name__ + (f" ({', '.join(builtin)})" if builtin else "") + ("" if cls.__module__ == "scrub.errors" else f"  (defined in {cls.__module__})")
        lines.append(label if top else prefix + ("└── " if last else "├── ") + label)
        subs = sorted(cls.__subclasses__(), key=lambda c: (c.__module__ != "scrub.errors", c.__name__))
        for i, sub in enumerate(subs):
            walk(sub, "" if top else prefix + ("    " if last else "│   "), i == len(subs) - 1, False)

    walk(scrub.ScrubError, "", True, True)
    lines.append("```")
    return "\n".join(lines)


SUMMARY_COLUMNS = {"figure", "case", "metric", "median", "min", "max", "reps"}


def bench_more(results: Path | None = None) -> str:
    """Every other result file ``benchmarks/*`` wrote in the summary's format (e.g. ``positions.csv``),
    one section each: its title and setup line from the ``.md`` beside it, then its rows."""
    results = results or RESULTS
    out = []
    for path in sorted(results.rglob("*.csv")):
        if path.parent == results and path.name in ("summary.csv", "scaling.csv"):
            continue
        rows = _read_csv(path)
        if not rows or not set(rows[0]) >= SUMMARY_COLUMNS:
            continue
        rel = path.relative_to(ROOT).as_posix()
        md = path.with_suffix(".md")
        lines = md.read_text(encoding="utf-8").splitlines() if md.exists() else []
        title = next((ln.lstrip("# ").strip() for ln in lines if ln.startswith("# ")), path.stem)
        setup = next((ln.strip() for ln in lines if ln.startswith("`python")), "")
        out += [f"### {title}", "", f"From `{rel}`." + (f" {setup}" if setup else ""), ""]
        out += ["| case | N | metric | median | min..max | repeats |", "|---|---:|---|---:|---|---:|"]
        for r in rows:
            n = r.get("n") or ""
            n = "" if n == "" else f"{float(n):,.0f}"
            out.append(
                f"| {_cell(r['case'])} | {n} | {_cell(r['metric'])} | {_num(r['median'])} | "
                f"{_num(r['min'])}..{_num(r['max'])} | {r['reps']} |"
            )
        out.append("")
    return "\n".join(out).strip() or "No other benchmark results are committed."


def architectures(path: Path | None = None) -> str:
    """The supported-architecture table: :func:`scrub.supported_architectures` (the test matrix of
    ``tests/test_architectures.py``) joined to the figures ``python -m benchmarks.architectures`` measured."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import scrub

    measured: dict[str, list[dict[str, str]]] = {}
    for r in _read_csv(path or RESULTS / "architectures.csv"):
        measured.setdefault(r["architecture"], []).append(r)
    out = [
        "| architecture | family | status | positions | parallel blocks | graph | all-Exact vs the model's forward "
        "(max abs logit error) | executor vs oracle, 20 random hypotheses | notes |",
        "|---|---|---|---|---|---|---:|---:|---|",
    ]
    for row in scrub.supported_architectures().to_dict("records"):
        rows = measured.get(row["architecture"], [])
        exact = max((float(r["exact_err"]) for r in rows), default=math.nan)
        oracle = max((float(r["oracle_err"]) for r in rows), default=math.nan)
        variants = [r["model"].split("/", 1)[1] for r in rows if "/" in r["model"]]
        graphs = (rows[0]["graph"] if rows else "") + (f" (variants tested: {', '.join(variants)})" if variants else "")
        fmt = lambda x: "—" if math.isnan(x) else f"{x:.1e}"
        out.append(
            f"| `{_cell(row['architecture'])}` | {_cell(row['family'])} | **{row['status']}** | {_cell(row['positions'])} | "
            f"{'yes' if row['parallel'] else 'no'} | {_cell(graphs)} | {fmt(exact)} | {fmt(oracle)} | {_cell(row['notes'])} |"
        )
    return "\n".join(out)


TABLES: dict[str, Callable[[], str]] = {
    "architectures": architectures,
    "bench-more": bench_more,
    "errors-tree": errors_tree,
    "zoo-summary": zoo_summary,
    "zoo-table": zoo_table,
    "bench-setup": bench_setup,
    "bench-headline": bench_headline,
    "bench-table": bench_table,
    "scaling-table": scaling_table,
    "distributed-cost": distributed_cost,
}


def expand(markdown: str) -> str:
    """``markdown`` with every ``<!-- gen:NAME -->`` line replaced by its table (an unknown name raises)."""

    def one(m: re.Match) -> str:
        name = m.group(1)
        if name not in TABLES:
            raise KeyError(f"docs: unknown generated table {name!r}; known: {sorted(TABLES)}")
        return TABLES[name]()

    return MARKER.sub(one, markdown)


# --- mkdocs hook events -------------------------------------------------------------------------


def on_page_markdown(markdown: str, page, config, files) -> str:  # mkdocs' signature
    return expand(markdown)


def on_files(files, config):
    from mkdocs.structure.files import File

    for uri, path in ASSETS:
        if path.exists() and files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in TABLES:
        sys.exit(f"usage: python docs/gen.py {{{'|'.join(TABLES)}}}")
    print(TABLES[sys.argv[1]]())
