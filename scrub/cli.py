"""The ``scrub`` command line.

- ``scrub demo``: score the naive induction hypothesis on the shipped model.
- ``scrub run MODULE:NAME``: score one hypothesis (``NAME``: a ``Case``, a hypothesis function
  whose module or a package above it has ``load_model()``/``make_data(n, seed)``, or the name of
  one of ``MODULE.CASES``; see :func:`scrub.suite.find_case`).
- ``scrub discover MODULE``: discover a circuit on ``MODULE.load_model()`` and
  ``MODULE.make_data(n, seed)`` (:func:`scrub.discover`); print it, its scores, cost and controls.
- ``scrub suite PATH``: run every case of a suite, print a table, exit 1 when any case leaves its
  expected range, raises, or (with ``--compare``) moved more than its intervals allow.
- ``scrub controls MODULE:NAME``: negative controls for one hypothesis (:func:`scrub.controls`):
  its score among random hypotheses of the same shape, identifiability of its features, cancellation.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from scrub.suite import CaseResult

app = typer.Typer(help="Causal scrubbing for TransformerLens models.", no_args_is_help=True, add_completion=False)


@app.callback()
def _main() -> None:
    """Causal scrubbing for TransformerLens models."""


@app.command()
def demo(
    n: int = typer.Option(1000, min=2, help="number of examples (at least 2)"),
    seed: int = typer.Option(0, min=0, help="sampling seed"),
    n_seeds: int = typer.Option(2, min=1, max=1000, help="seeds to pool (1..1000)"),
) -> None:
    """Score the naive induction hypothesis on the shipped 2-layer attention-only model."""
    import scrub
    from hypotheses.induction import load_model, make_data
    from hypotheses.induction.hypotheses import naive

    warnings.filterwarnings("ignore", message="Moving model")
    model = load_model()
    data = make_data(n, seed=1234)
    h = naive()
    typer.echo(f"model: hypotheses/induction (2-layer attention-only); data: {data}")
    typer.echo(h.describe())
    result = scrub.run(model, h, data, seed=seed, n_seeds=n_seeds)
    typer.echo(result.summary())
    typer.echo(f"  {result.ci_method}; plan: {result.plan_size}")


# -- shared options ------------------------------------------------------------------------
_N = typer.Option(None, "--n", min=2, help="number of examples, at least 2 (overrides each case's)")
_SEEDS = typer.Option(None, "--seeds", min=1, max=1000, help="number of sampling seeds, 1..1000 (overrides each case's)")
_SEED = typer.Option(None, "--seed", min=0, help="first sampling seed (overrides each case's)")
_JSON = typer.Option(None, "--json", help="write the results as JSON (readable by --compare)", dir_okay=False)
_CSV = typer.Option(None, "--csv", help="write the results as CSV", dir_okay=False)
_COMPARE = typer.Option(None, "--compare", exists=True, dir_okay=False,
                        help="an earlier --json file: flag cases whose score moved more than their intervals allow")
_RAY = typer.Option(None, "--ray", metavar="auto|ADDRESS",
                    help="score on a Ray cluster (pip install 'scrub[ray]'): auto (the cluster this machine belongs to, "
                    "or RAY_ADDRESS) or the HOST:PORT that `ray start --head` printed; the scores are the same")


@app.command("run")
def run_one(
    target: str = typer.Argument(..., help="MODULE:NAME, e.g. hypotheses.induction.hypotheses:naive"),
    n: int | None = _N,
    seeds: int | None = _SEEDS,
    seed: int | None = _SEED,
    breakdown: bool | None = typer.Option(
        None, "--breakdown/--no-breakdown", help="score each claim alone and the hypothesis without it "
        "(default: only with --html)"),
    json_path: Path | None = _JSON,
    csv_path: Path | None = _CSV,
    compare_path: Path | None = _COMPARE,
    html: Path | None = typer.Option(None, "--html", dir_okay=False, help="write an HTML report of the result"),
    ray: str | None = _RAY,
) -> None:
    """Score one hypothesis: a Case, a hypothesis function next to load_model()/make_data(n, seed), or a case name.

    MODULE is a dotted module name or a path to a .py file. Examples:
    scrub run hypotheses.induction.hypotheses:naive; scrub run hypotheses:induction/naive.
    """
    from scrub.suite import run_suite

    _quiet()
    console, err = _consoles()
    case = _case(target)
    _check_paths(json_path, csv_path, html, compare_path)
    _connect(ray)
    with _progress(err) as bar:
        task = bar.add_task(f"scoring {case.name}", total=None)
        cache: dict = {}
        outcome = run_suite([case], n=n, n_seeds=seeds, seed=seed, source=target, cache=cache, ray=ray)
        cr = outcome.cases[0]
        table = None
        if cr.result is not None and (breakdown or (breakdown is None and html is not None)):
            table = _breakdown(cr, cache, bar, task, ray)
    r = cr.result
    if r is None:
        err.print(f"[bold red]{cr.status}[/]: {cr.message}")
        raise typer.Exit(1)
    console.print(f"{r.hypothesis}  [dim]({case.name}; {cr.seconds:.1f} s)[/]")
    console.print(r.summary(), markup=False, highlight=False)
    if math.isfinite(case.expected[0]) or math.isfinite(case.expected[1]):
        mark = "[green]inside[/]" if cr.status == "pass" else "[bold red]outside[/]"
        console.print(f"  expected: {case.expected[0]:.1%} .. {case.expected[1]:.1%} ({mark})")
    if table is not None:
        console.print(_breakdown_table(table))
    moved = _write_outputs(outcome, console, json_path, csv_path, compare_path, breakdowns={case.name: table})
    if html is not None:
        _write_html(html, r, table, title=case.name)
        console.print(f"wrote {html}")
    if cr.status != "pass" or moved:
        raise typer.Exit(1)


@app.command("discover")
def discover_cmd(
    module: str = typer.Argument(..., help="a module with load_model() and make_data(n, seed), e.g. hypotheses.induction"),
    n: int = typer.Option(400, "--n", min=4, help="number of examples (half are held out)"),
    seed: int = typer.Option(0, "--seed", min=0, help="seed of the data, the split and the sampling"),
    threshold: float = typer.Option(0.95, "--threshold", min=0.0, max=1.0, help="fraction of loss recovered to keep"),
    granularity: str = typer.Option("port", "--granularity", help="component, port, position, neuron or subspace"),
    metric: str = typer.Option("loss", "--metric", help="loss, kl or accuracy"),
    controls: bool = typer.Option(True, "--controls/--no-controls", help="also search random weights and shuffled labels"),
    python: Path | None = typer.Option(None, "--python", dir_okay=False, help="write the hypothesis as Python source"),
    json_path: Path | None = typer.Option(None, "--json", dir_okay=False, help="write the hypothesis as JSON"),
    curve: Path | None = typer.Option(None, "--curve", dir_okay=False, help="write the faithfulness-vs-size curve (CSV)"),
) -> None:
    """Discover a circuit whose score clears --threshold, and print it.

    Example: scrub discover hypotheses.induction --n 400 --no-controls --python found.py
    """
    import importlib

    import scrub
    from scrub.errors import ScrubError

    _quiet()
    console, err = _consoles()
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        _usage(f"cannot import {module!r}: {exc}", "MODULE")
    if not (callable(getattr(mod, "load_model", None)) and callable(getattr(mod, "make_data", None))):
        _usage(f"{module!r} has no load_model() and make_data(n, seed)", "MODULE")
    try:
        model, data = mod.load_model(), mod.make_data(n, seed)
        found = scrub.discover(model, data, threshold=threshold, granularity=granularity, metric=metric, seed=seed,
                               controls=controls)
    except ScrubError as exc:
        err.print(f"[bold red]{type(exc).__name__}[/]: {exc}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    console.print(found.hypothesis.describe(), markup=False, highlight=False)
    console.print(found.summary(), markup=False, highlight=False)
    if python is not None:
        python.write_text(scrub.to_python(found.hypothesis))
        console.print(f"wrote {python}")
    if json_path is not None:
        json_path.write_text(scrub.to_json(found.hypothesis))
        console.print(f"wrote {json_path}")
    if curve is not None:
        found.curve.to_csv(curve, index=False)
        console.print(f"wrote {curve}")
    if found.flagged:
        raise typer.Exit(1)


@app.command("suite")
def run_suite_cmd(
    path: str = typer.Argument(..., help="a suite: a package directory, a .py file or a module name with CASES"),
    k: list[str] | None = typer.Option(
        None, "-k", help="run only cases whose name, tag or kind contains this (globs: *, ?; 'not X'); repeatable"),
    n: int | None = _N,
    seeds: int | None = _SEEDS,
    seed: int | None = _SEED,
    json_path: Path | None = _JSON,
    csv_path: Path | None = _CSV,
    compare_path: Path | None = _COMPARE,
    html: Path | None = typer.Option(None, "--html", file_okay=False,
                                        help="write one HTML report per case into this directory"),
    ray: str | None = _RAY,
) -> None:
    """Run every case of a suite and print a table; exit 1 when any case leaves its expected range."""
    from scrub.suite import SuiteError, compare, load_suite, run_suite, select

    _quiet()
    console, err = _consoles()
    try:
        cases = select(load_suite(path), k)
    except SuiteError as exc:
        _usage(str(exc), "PATH")
    _check_paths(json_path, csv_path, None, compare_path)
    if not cases:
        err.print(f"[bold red]no cases[/] in {path}" + (f" match -k {' -k '.join(k)}" if k else ""))
        raise typer.Exit(1)
    _connect(ray)
    with _progress(err) as bar:
        task = bar.add_task("suite", total=len(cases))

        def start(case) -> None:
            bar.update(task, description=case.name)

        outcome = run_suite(cases, n=n, n_seeds=seeds, seed=seed, source=str(path), on_start=start,
                            on_done=lambda _: bar.advance(task), ray=ray)
    diff = compare(outcome, compare_path) if compare_path is not None else None
    table = _suite_table(outcome.cases, diff, title=f"scrub suite {path}")
    # never squeeze the table below its natural width (that would truncate numbers): let it overflow
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    console.width = max(console.width, natural)
    console.print(table, crop=False)
    skipped: dict[str, list[str]] = {}
    for cr in outcome.cases:
        if cr.status in ("fail", "error"):
            console.print(f"[bold red]{cr.status.upper()}[/] {cr.case.name}: {cr.message}", highlight=False)
        elif cr.status == "skip":
            skipped.setdefault(cr.message, []).append(cr.case.name)
    for reason, names in skipped.items():  # one line per reason: they are often long and shared
        first = re.split(r"(?<=\.)\s|\n", reason.strip(), maxsplit=1)[0] or "(no reason given)"
        console.print(f"[yellow]SKIP[/] {len(names)} case(s) ({names[0]}{', ...' if len(names) > 1 else ''}): {first}",
                      highlight=False)
    moved = _write_outputs(outcome, console, json_path, csv_path, None, diff=diff)
    if html is not None:
        html.mkdir(parents=True, exist_ok=True)
        for cr in outcome.cases:
            if cr.result is not None:
                _write_html(html / (re.sub(r"[^A-Za-z0-9_.-]+", "_", cr.case.name) + ".html"), cr.result, None,
                            title=cr.case.name)
        console.print(f"wrote reports into {html}/")
    counts = {s: sum(c.status == s for c in outcome.cases) for s in ("pass", "fail", "error", "skip")}
    summary = ", ".join(f"{v} {s}" for s, v in counts.items() if v)
    if moved:
        summary += f", {moved} moved"
    console.print(f"{len(outcome.cases)} case(s): {summary}")
    if not outcome.ok or moved:
        raise typer.Exit(1)


@app.command("controls")
def controls_cmd(
    target: str = typer.Argument(..., help="MODULE:NAME, as for scrub run, e.g. hypotheses:paren/false_swapped"),
    n: int | None = _N,
    seed: int | None = _SEED,
    n_random: int = typer.Option(20, "--n-random", min=1, help="random hypotheses of the same shape to score"),
    kinds: list[str] | None = typer.Option(
        None, "--kind", help="kind of random hypothesis: nodes, permuted, random (repeatable; default permuted and random)"),
    strict: bool = typer.Option(False, "--strict", help="exit 1 when any control raises a flag"),
    html: Path | None = typer.Option(None, "--html", dir_okay=False, help="write an HTML report with the controls"),
    json_path: Path | None = typer.Option(None, "--json", dir_okay=False,
                                          help="write the scores, identifiability table and cancellation as JSON"),
) -> None:
    """Negative controls for one hypothesis: random hypotheses of its shape, identifiability, cancellation.

    Example: scrub controls hypotheses:paren/false_swapped --n 300 --n-random 20
    """
    import dataclasses
    import json

    from scrub._controls import KINDS, controls

    _quiet()
    console, err = _consoles()
    case = _case(target)
    bad = [k for k in kinds or [] if k not in KINDS]
    if bad:
        _usage(f"{bad[0]!r} is not a kind of random hypothesis; choose from {', '.join(KINDS)}", "--kind")
    _check_paths(json_path, None, html, None)
    with _progress(err) as bar:
        bar.add_task(f"controls for {case.name}", total=None)
        model, data = case.load(n=n)
        c = controls(model, case.hypothesis(), data, n_random=n_random, kinds=kinds or ("permuted", "random"),
                     options=case.options(seed=seed), baseline=None if case.baseline is None else case.baseline())
    console.print(f"{case.name}  [dim](N={len(data)})[/]")
    console.print(c.summary(), markup=False, highlight=False)
    if json_path is not None:
        doc = {"case": case.name, "result": c.result.to_dict(), "percentile": c.percentile,
               "percentile_ci": list(c.percentile_ci), "p_value": c.p_value,
               "random": json.loads(c.random.to_json(orient="records") or "[]"),
               "identifiability": json.loads(c.identifiability.to_json(orient="records") or "[]"),
               "cancellation": dataclasses.asdict(c.cancellation), "flags": c.flags}
        Path(json_path).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        console.print(f"wrote {json_path}")
    if html is not None:
        from scrub.report import write_html

        write_html(html, c.result, title=case.name, controls=c)
        console.print(f"wrote {html}")
    if strict and c.flags:
        raise typer.Exit(1)


# -- helpers ---------------------------------------------------------------------------------
def _case(target: str):
    """The suite case ``target`` names, or a usage error naming TARGET."""
    from scrub.suite import SuiteError, find_case

    try:
        return find_case(target)
    except SuiteError as exc:
        _usage(str(exc), "TARGET")


def _usage(message: str, param: str) -> NoReturn:
    """A usage mistake: one line on stderr naming the argument, exit status 2."""
    typer.echo(f"Error: {param}: " + " ".join(message.split()), err=True)
    raise typer.Exit(2)


def _check_paths(json_path, csv_path, html, compare_path) -> None:
    """Before anything runs: every output can be written, and the --compare file is a results file."""
    from scrub.suite import SuiteError, read_results

    for flag, p in (("--json", json_path), ("--csv", csv_path), ("--html", html)):
        if p is None:
            continue
        parent = Path(p).parent
        if not parent.is_dir():
            _usage(f"the directory {parent} does not exist (create it first)", flag)
        if not os.access(parent, os.W_OK):
            _usage(f"the directory {parent} is not writable", flag)
    if compare_path is not None:
        try:
            read_results(compare_path)
        except SuiteError as exc:
            _usage(str(exc), "--compare")


def _connect(ray: str | None) -> None:
    """With --ray, connect before anything runs: a cluster that does not answer is a usage error (exit 2)."""
    if ray is None:
        return
    from scrub._distributed import connect
    from scrub._options import RunOptions
    from scrub.errors import ClusterError, RunOptionsError

    try:
        address = RunOptions(ray=ray).ray
        assert address is not None
        connect(address)
    except (ClusterError, RunOptionsError) as exc:
        _usage(str(exc), "--ray")


def _quiet() -> None:
    warnings.filterwarnings("ignore", message="Moving model")


def _consoles() -> tuple[Console, Console]:
    from rich.console import Console

    out = Console()
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(width=160)  # logs (CI): wide enough for the case names of the zoo
    return out, Console(stderr=True)


@contextmanager
def _progress(console: Console):
    """A transient progress bar on stderr (drawn only on a terminal, after a second)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)
    with bar:
        yield bar


def _breakdown(cr: CaseResult, cache: dict, bar, task, ray: str | None = None) -> pd.DataFrame:
    from scrub._breakdown import breakdown

    case, r = cr.case, cr.result
    assert r is not None  # called only for cases that produced a result
    bar.update(task, total=1, completed=0)
    model, data = case.load(n=cr.n, cache=cache)
    table = breakdown(model, r.spec, data, full=r, seed=cr.seed, n_seeds=cr.n_seeds, metric=case.metric,
                      baseline=None if case.baseline is None else case.baseline(), ray=ray,
                      on_step=lambda label: bar.update(task, description=f"breakdown: {label}"))
    bar.update(task, completed=1)
    return table


def _pct(x: float) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.1%}"


def _breakdown_table(table: pd.DataFrame):
    from rich.table import Table

    t = Table(title=f"claims of {table.attrs.get('hypothesis', '')} (full: {_pct(table.attrs.get('full', math.nan))})")
    for col in ("claim", "alone", "95% CI", "without", "95% CI ", "lost", "95% CI  "):
        t.add_column(col, justify="left" if col == "claim" else "right")
    for row in table.to_dict("records"):
        t.add_row(str(row["claim"]), _pct(row["alone"]), f"{_pct(row['alone_lo'])} .. {_pct(row['alone_hi'])}",
                  _pct(row["without"]), f"{_pct(row['without_lo'])} .. {_pct(row['without_hi'])}", _pct(row["lost"]),
                  f"{_pct(row['lost_lo'])} .. {_pct(row['lost_hi'])}")
    return t


_STYLE = {"pass": "green", "fail": "bold red", "error": "bold magenta", "skip": "yellow"}


def _suite_table(cases: list[CaseResult], diff: pd.DataFrame | None, title: str):
    from rich import box
    from rich.table import Table

    moves = {} if diff is None else {r["name"]: r for r in diff.to_dict("records")}
    header = ["case", "kind", "score", "95% CI", "expected", "result"]
    header += ["old", "change"] if diff is not None else []
    header += ["N x seeds", "time"]
    rows = []
    for cr in cases:
        lo, hi = cr.ci
        elo, ehi = cr.case.expected
        row = [cr.case.name, cr.case.kind, _pct(cr.score), f"{_pct(lo)} .. {_pct(hi)}" if cr.result else "—",
               f"{_pct(elo)} .. {_pct(ehi)}", f"[{_STYLE[cr.status]}]{cr.status}[/]"]
        if diff is not None:
            m = moves.get(cr.case.name, {})
            change = f"{m['delta']:+.1%}" if m.get("note", "new") == "" else m.get("note", "new")
            if m.get("moved"):
                change = f"[bold red]{change} moved[/]"
            row += [_pct(m.get("old", math.nan)), change]
        row += [f"{cr.n} x {cr.n_seeds}", f"{cr.seconds:.1f} s"]
        rows.append(row)
    t = Table(title=title, box=box.SIMPLE_HEAD)
    for col in header:
        t.add_column(col, justify="left" if col in ("case", "kind", "result") else "right", no_wrap=True)
    for row in rows:
        t.add_row(*row)
    return t


def _write_outputs(outcome, console, json_path, csv_path, compare_path, *, diff=None, breakdowns=None) -> int:
    """Write --json/--csv; return the number of cases that moved against --compare."""
    import json

    from scrub.suite import compare

    if json_path is not None:
        outcome.to_json(json_path)
        if breakdowns and any(v is not None for v in breakdowns.values()):
            doc = json.loads(Path(json_path).read_text())
            for row in doc["cases"]:
                b = breakdowns.get(row["name"])
                if b is not None:
                    row["breakdown"] = json.loads(b.to_json(orient="records"))
            Path(json_path).write_text(json.dumps(doc, indent=2) + "\n")
        console.print(f"wrote {json_path}")
    if csv_path is not None:
        outcome.to_csv(csv_path)
        console.print(f"wrote {csv_path}")
    if compare_path is not None:
        diff = compare(outcome, compare_path)
        for row in diff.to_dict("records"):
            if row["note"] == "":
                flag = "[bold red]moved[/]" if row["moved"] else "within intervals"
                console.print(f"vs {compare_path}: {row['name']}: {_pct(row['old'])} -> {_pct(row['new'])} "
                              f"({row['delta']:+.1%}, allowed ±{row['allowed']:.1%}): {flag}")
    return 0 if diff is None else int(diff["moved"].to_numpy().sum())


def _write_html(path: Path, result, table, *, title: str) -> None:
    try:
        from scrub.report import write_html
    except ModuleNotFoundError as exc:
        if exc.name != "scrub.report":
            raise
        typer.echo("--html needs scrub.report.write_html, which is not installed here", err=True)
        raise typer.Exit(2) from None
    write_html(path, result, breakdown=table, title=title)


if __name__ == "__main__":
    app()
