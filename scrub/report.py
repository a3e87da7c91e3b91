"""The HTML report: one self-contained page per scored hypothesis.

The page shows the interpretation DAG drawn beside the model graph it maps to (each
interpretation node and the model nodes it maps to share a colour; claimed edges carry their
ports), the score with its interval and the three losses, the claim breakdown, a histogram of
per-example loss differences (scrubbed minus model) and the run's record. Everything is inline
(CSS and SVG drawn here from networkx layouts): no scripts, no external resources.

>>> path = write_html("report.html", result, breakdown=frame)  # doctest: +SKIP
"""

from __future__ import annotations

import colorsys
import html
import json
import math
import pathlib
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

__all__ = ["render_html", "write_html", "node_colours"]

_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
)
_OUTPUT_COLOUR = "#34495e"
_IDLE_FILL, _IDLE_STROKE, _IDLE_TEXT = "#eef0f2", "#b8bec6", "#7a828c"
_FONT = "-apple-system, 'Segoe UI', 'DejaVu Sans', Helvetica, Arial, sans-serif"
_CHAR_W = 6.6  # approximate width of one character at 11px (names: 7.6 at 12px bold), to size boxes without a browser


def node_colours(hypothesis) -> dict[str, str]:
    """The colour (``#rrggbb``) of each interpretation node, by name, as the report draws it.

    The output node is slate; the others take a ten-colour qualitative palette in the order
    :meth:`~scrub.Hypothesis.nodes` lists them, then evenly spaced hues beyond ten.
    """
    out: dict[str, str] = {}
    k = 0
    for n in hypothesis.nodes():
        if n is hypothesis.root:
            out[n.name] = _OUTPUT_COLOUR
            continue
        if k < len(_PALETTE):
            out[n.name] = _PALETTE[k]
        else:  # golden-angle hues, fixed saturation and lightness
            r, g, b = colorsys.hls_to_rgb(((k - len(_PALETTE)) * 0.381966) % 1.0, 0.45, 0.65)
            out[n.name] = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
        k += 1
    return out


def render_html(
    result, *, breakdown: pd.DataFrame | None = None, title: str | None = None, controls=None
) -> str:
    """The report for ``result`` (a :class:`scrub.Result`) as one self-contained HTML string.

    Args:
        result: what :func:`scrub.run` returned; its ``spec`` (the hypothesis) and ``graph``
            (the model graph) are drawn when present.
        breakdown: optional claim breakdown, one row per claim (columns ``claim``, ``alone``,
            ``alone_lo``, ``alone_hi``, ``without``, ``without_lo``, ``without_hi``, ``lost``;
            other columns are shown as they are).
        title: the page title (default: ``"scrub report: <hypothesis name>"``).
        controls: optional :class:`scrub.Controls` (from :func:`scrub.controls`): adds a section with
            the score among random hypotheses of the same shape, the flagged feature pairs and the
            cancellation check.
    """
    title = title if title is not None else f"scrub report: {result.hypothesis}"
    spec, graph = result.spec, _model_graph(result)
    colours = node_colours(spec) if spec is not None else {}
    table = result.table()
    parts = [
        f"<header><h1>{_e(title)}</h1>",
        f"<p class='sub'>hypothesis <b>{_e(result.hypothesis)}</b> &middot; baseline <b>{_e(result.baseline)}</b>"
        f" &middot; metric <b>{_e(result.metric)}</b></p></header>",
        _score_section(result),
        _drawings_section(spec, graph, colours),
        _breakdown_section(breakdown, colours),
        _controls_section(controls),
        _histogram_section(table, result.metric),
        _summary_section(table),
        _record_section(result),
        "<footer>Written by scrub.report. Causal scrubbing: Chan et al., Redwood Research, 2022.</footer>",
    ]
    body = "\n".join(p for p in parts if p)
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def write_html(
    path: str | pathlib.Path, result, *, breakdown: pd.DataFrame | None = None, title: str | None = None,
    controls=None,
) -> pathlib.Path:
    """Write :func:`render_html`'s page to ``path`` (UTF-8, parent folders created); return the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(result, breakdown=breakdown, title=title, controls=controls), encoding="utf-8")
    return path


# -- sections ------------------------------------------------------------------------------
def _score_section(result) -> str:
    lo, hi = result.ci
    m, s, b = result.loss_model, result.loss_scrubbed, result.loss_baseline
    metric = _e(result.metric)
    ablation = getattr(result, "ablation", None)
    rows = "".join(
        f"<tr><th>{label}</th><td class='num'>{_num(v)}</td><td class='note'>{note}</td></tr>"
        for label, v, note in (
            (f"{metric}, model", m, "the unmodified model"),
            (f"{metric}, scrubbed", s, "claimed paths fed agreeing inputs, the rest resampled" if ablation is None
             else f"claimed paths fed agreeing inputs, the rest {_e(ablation)}-ablated (not causal scrubbing)"),
            (f"{metric}, baseline", b, f"{_e(result.baseline)} (0% recovered)"),
        )
    )
    warning = "" if ablation is None else (
        f"<p class='ablation' id='ablation' data-ablation='{_e(ablation)}'><strong>{_e(ablation)} ablation of unclaimed "
        "inputs: not causal scrubbing.</strong> Unclaimed inputs took each component's "
        f"{'mean output over the dataset' if ablation == 'mean' else 'zero output'} instead of their value on a random "
        "example.</p>"
    )
    fixed = (result.record or {}).get("fixed_claims") or {}
    if fixed:
        warning += (
            "<p class='ablation' id='fixed-claims'><strong>claims fixed to a mean or zero: not causal scrubbing.</strong> "
            + _e(", ".join(f"{name} ({kind})" for name, kind in fixed.items())) + "</p>"
        )
    return (
        f"{warning}<section class='score'><div class='big'>"
        f"<div id='score' data-value='{float(result.loss_recovered)!r}'>{result.loss_recovered:.1%}</div>"
        f"<div class='what'>of {metric} recovered</div>"
        f"<div id='ci' data-lo='{float(lo)!r}' data-hi='{float(hi)!r}'>95% CI {lo:.1%} .. {hi:.1%}</div>"
        f"<div class='note'>N = {result.n_examples} examples, seeds {_e(', '.join(map(str, result.seeds)))}</div></div>"
        f"<div class='losses'><table>{rows}</table>{_loss_line(m, s, b)}"
        f"<p class='note'>fraction recovered = (baseline &minus; scrubbed) / (baseline &minus; model); "
        f"interval: {_e(result.ci_method)}. Plan: {_e(', '.join(f'{k} {v}' for k, v in result.plan_size.items()))}.</p>"
        "</div></section>"
    )


def _loss_line(m: float, s: float, b: float) -> str:
    """A number line from the baseline's loss to the model's, with the scrubbed loss marked on it."""
    w, h, pad = 500, 62, 62
    lo, hi = min(m, s, b), max(m, s, b)
    span = (hi - lo) or 1.0

    def x(v: float) -> float:  # baseline on the left, model on the right when baseline > model
        t = (v - lo) / span
        return pad + (1 - t if b >= m else t) * (w - 2 * pad)

    items = [f"<line x1='{pad}' y1='30' x2='{w - pad}' y2='30' stroke='#9aa3ad' stroke-width='2'/>"]
    xb, xm, xs = x(b), x(m), x(s)
    items.append(f"<rect x='{min(xb, xs):.1f}' y='25' width='{abs(xs - xb):.1f}' height='10' fill='#2ca02c' opacity='0.55'/>")
    for v, xv, label, colour, dy in ((b, xb, "baseline", "#7f7f7f", 14), (m, xm, "model", "#34495e", 14), (s, xs, "scrubbed", "#d62728", -10)):
        items.append(f"<line x1='{xv:.1f}' y1='20' x2='{xv:.1f}' y2='40' stroke='{colour}' stroke-width='3'/>")
        y = 30 + dy + (14 if dy > 0 else 0)
        items.append(f"<text x='{xv:.1f}' y='{y}' text-anchor='middle' fill='{colour}'>{label} {_num(v)}</text>")
    return _svg(w, h, "".join(items), "loss-line", "the scrubbed loss on the line from the baseline's loss to the model's")


def _drawings_section(spec, graph, colours: dict[str, str]) -> str:
    if spec is None:
        return "<section><h2>Hypothesis</h2><p class='note'>This result carries no hypothesis (spec) to draw.</p></section>"
    dag = _interpretation_svg(spec, graph, colours)
    model = _model_svg(spec, graph, colours) if graph is not None else "<p class='note'>No model graph in this result.</p>"
    return (
        "<section><h2>Hypothesis and the model graph it maps to</h2><div class='pair'>"
        f"<figure><figcaption>Interpretation DAG <span class='note'>(parent above child; edges labelled with the "
        f"parent's input ports the child is claimed to feed)</span></figcaption>{dag}</figure>"
        f"<figure><figcaption>Model graph <span class='note'>(inputs at the bottom; coloured nodes are mapped from "
        f"the interpretation node of the same colour; grey nodes are resampled from random examples; arrows are the "
        f"claimed paths, labelled with the receiving node's port)</span></figcaption>{model}</figure>"
        f"</div>{_nodes_table(spec, colours)}</section>"
    )


def _nodes_table(spec, colours: dict[str, str]) -> str:
    rows = []
    for n in spec.nodes():
        port = "all" if n.port is None else ", ".join(n.port)
        pos = "all" if n.positions is None else (_fn_name(n.positions) if callable(n.positions) else ", ".join(map(str, n.positions)))
        role = "output" if n is spec.root else ("open (children removed)" if getattr(n, "open", False) else ("leaf" if not n.children else "inner"))
        rows.append(
            f"<tr><td>{_swatch(colours.get(n.name))}<span class='nm'>{_e(n.name)}</span></td>"
            f"<td>{_e(n.describe_model() if hasattr(n, 'describe_model') else ', '.join(n.model))}</td>"
            f"<td>{_e(port)}</td><td>{_e(pos)}</td>"
            f"<td>{_e(_feature_name(n.agree))}</td><td>{_e(role)}</td></tr>"
        )
    return (
        "<table class='grid nodes'><thead><tr><th>interpretation node</th><th>model nodes</th>"
        "<th>port into parent</th><th>positions</th><th>feature (agree=)</th><th>role</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _breakdown_section(breakdown: pd.DataFrame | None, colours: dict[str, str]) -> str:
    if breakdown is None:
        return ""
    cols = [str(c) for c in breakdown.columns]
    frame = breakdown.copy()
    frame.columns = cols
    groups: list[tuple[str, list[str]]] = []
    used: set[str] = set()
    for c in cols:
        if c in used:
            continue
        if c != "claim" and f"{c}_lo" in cols and f"{c}_hi" in cols:
            groups.append((c, [c, f"{c}_lo", f"{c}_hi"]))
            used.update((c, f"{c}_lo", f"{c}_hi"))
        else:
            groups.append((c, [c]))
            used.add(c)
    head = "".join(f"<th>{_e(name)}{' (95% CI)' if len(g) == 3 else ''}</th>" for name, g in groups)
    lost_max = None
    if "lost" in cols and pd.api.types.is_numeric_dtype(frame["lost"]):
        lost = np.abs(frame["lost"].to_numpy(dtype=float))
        finite = lost[np.isfinite(lost)]
        lost_max = float(finite.max()) if len(finite) else None
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for name, g in groups:
            v = row[g[0]]
            if name == "claim":
                cells.append(f"<td>{_swatch(colours.get(str(v)))}<span class='nm'>{_e(v)}</span></td>")
            elif len(g) == 3:
                bar = _lost_bar(v, lost_max) if name == "lost" and lost_max else ""
                cells.append(f"<td class='num'>{_pct(v)} <span class='note'>({_pct(row[g[1]])} .. {_pct(row[g[2]])})</span>{bar}</td>")
            elif name == "lost" and lost_max:
                cells.append(f"<td class='num'>{_pct(v)} {_lost_bar(v, lost_max)}</td>")
            else:
                cells.append(f"<td class='num'>{_pct(v) if _is_number(v) else _e(v)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        "<section><h2>Claim breakdown</h2>"
        "<p class='note'>Each claim (leaf of the hypothesis) scored alone (only it, its ancestors and subtree kept) "
        "and removed (the hypothesis without it); <i>lost</i> is how much of the full score goes when it is removed. "
        f"Fractions of loss recovered{_full_note(breakdown)}.</p>"
        f"<table class='grid'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _controls_section(controls) -> str:
    if controls is None:
        return ""
    own = float(controls.result.loss_recovered)
    rnd = controls.random
    lo, hi = controls.percentile_ci
    canc = controls.cancellation
    swatches = dict(zip(rnd["kind"].unique(), _PALETTE, strict=False))  # the strip's dot colours
    kinds = "".join(
        f"<tr><td>{_swatch(swatches.get(k))}{_e(k)}</td><td class='num'>{len(g)}</td><td class='num'>{_pct(float(g['score'].median()))}</td>"
        f"<td class='num'>{_pct(float(g['score'].max()))}</td></tr>"
        for k, g in rnd.groupby("kind", sort=False)
    )
    ident = controls.identifiability
    flagged = ident[ident["flag"] != ""]
    pairs = "".join(
        f"<tr><td>{_e(r['flag'])}</td><td>{_e(r['a'])}</td><td>{_e(r['b'])}{' (column)' if r['b_is_column'] else ''}</td>"
        f"<td class='num'>{r['p_b_given_a']:.2f} <span class='note'>(base {r['p_b']:.2f})</span></td>"
        f"<td class='num'>{r['p_a_given_b']:.2f} <span class='note'>(base {r['p_a']:.2f})</span></td>"
        f"<td class='num'>{r['cramers_v']:.2f}</td><td class='note'>{_e(r['advice'])}</td></tr>"
        for r in flagged.to_dict("records")
    )
    pair_table = (
        "<table class='grid'><thead><tr><th>flag</th><th>A</th><th>B</th><th>P(agree B | agree A)</th>"
        f"<th>P(agree A | agree B)</th><th>Cramér's V</th><th>what would separate them</th></tr></thead><tbody>{pairs}</tbody></table>"
        if len(flagged) else "<p class='note'>No pair of features is flagged.</p>"
    )
    verdict = "flag" if lo < 0.5 else "ok"
    return (
        "<section id='controls'><h2>Negative controls</h2>"
        f"<p>Among <b>{len(rnd)}</b> random hypotheses of the same shape (seed {controls.seed}) the score "
        f"{_pct(own)} sits at percentile <b id='percentile' data-value='{controls.percentile!r}' data-verdict='{verdict}'>"
        f"{_pct(controls.percentile)}</b> (95% CI {_pct(lo)} .. {_pct(hi)}; p = {controls.p_value:.3g}).</p>"
        f"{_strip_svg(rnd, own)}"
        "<table class='grid'><thead><tr><th>random kind</th><th>n</th><th>median score</th><th>max score</th></tr></thead>"
        f"<tbody>{kinds}</tbody></table>"
        f"<h2>Identifiability</h2><p class='note'>{len(ident)} feature pairs compared; a pair is "
        f"<i>indistinguishable</i> when a resample agreeing on one agrees on the other at least "
        f"{ident.attrs.get('threshold', 0.9):g} of the time both ways, <i>correlated</i> when Cramér's V is at least "
        f"{ident.attrs.get('association', 0.3):g}.</p>{pair_table}"
        f"<h2>Cancellation</h2><p id='cancellation' data-flag='{str(canc.flag).lower()}'>{_e(canc.describe())}</p>"
        "</section>"
    )


def _strip_svg(rnd: pd.DataFrame, own: float) -> str:
    """A dot strip: each random hypothesis's score (by kind), the hypothesis's own score as a red bar."""
    w, h, left, right = 760, 70, 40, 20
    scores = [float(v) for v in rnd["score"] if math.isfinite(float(v))] + [own]
    lo, hi = min(0.0, *scores), max(1.0, *scores)
    colours = dict(zip(rnd["kind"].unique(), _PALETTE, strict=False))

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (w - left - right)

    parts = [f"<line x1='{left}' x2='{w - right}' y1='40' y2='40' stroke='#9aa3ad'/>"]
    for t in _ticks(lo, hi, 8):
        parts.append(f"<text x='{x(t):.1f}' y='62' class='tick' text-anchor='middle'>{t:.0%}</text>")
    for row in rnd.to_dict("records"):
        v = float(row["score"])
        if math.isfinite(v):
            parts.append(f"<circle cx='{x(v):.1f}' cy='40' r='4' fill='{colours.get(row['kind'], '#555')}' opacity='0.7'>"
                         f"<title>{_e(row['hypothesis'])}: {v:.1%}</title></circle>")
    parts.append(f"<line x1='{x(own):.1f}' x2='{x(own):.1f}' y1='22' y2='50' stroke='#d62728' stroke-width='3'/>")
    parts.append(f"<text x='{x(own):.1f}' y='16' text-anchor='middle' fill='#d62728'>hypothesis {own:.1%}</text>")
    return _svg(w, h, "".join(parts), "controls-strip", "the score among random hypotheses of the same shape")


def _full_note(breakdown: pd.DataFrame) -> str:
    full = breakdown.attrs.get("full")
    return f"; the full hypothesis recovers {_pct(full)}" if _is_number(full) else ""


def _lost_bar(v, vmax: float) -> str:
    if not _is_number(v) or not math.isfinite(float(v)):
        return ""
    width = 90 * min(1.0, abs(float(v)) / vmax)
    colour = "#d62728" if float(v) >= 0 else "#1f77b4"
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='92' height='10' class='bar'>"
        f"<rect x='1' y='1' width='{width:.1f}' height='8' fill='{colour}'/></svg>"
    )


def _histogram_section(table: pd.DataFrame, metric: str) -> str:
    diff = (table["loss_scrubbed"] - table["loss_model"]).to_numpy(dtype=float)
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return "<section><h2>Per-example differences</h2><p class='note'>No finite per-example losses.</p></section>"
    neg, pos = diff[diff < 0], diff[diff > 0]
    gains, losses = float(-neg.sum()), float(pos.sum())
    cancel = gains / losses if losses > 0 else float("nan")
    stats = (
        f"<ul class='stats'><li>{len(diff)} rows (one per example and seed); mean difference <b>{_num(diff.mean())}</b>, "
        f"median {_num(float(np.median(diff)))}</li>"
        f"<li><b>{len(neg) / len(diff):.1%}</b> of rows have the scrubbed model <i>better</i> than the model "
        f"(difference &lt; 0), {len(pos) / len(diff):.1%} worse</li>"
        f"<li>summed gains {_num(gains)} against summed losses {_num(losses)}: the gains cancel "
        f"<b>{_pct(cancel)}</b> of the losses</li></ul>"
    )
    return (
        f"<section><h2>Per-example {_e(metric)} differences: scrubbed minus model</h2>"
        f"{_histogram_svg(diff)}"
        "<p class='caption'>The score is a ratio of means, so it can hide cancellation. If the hypothesis holds example "
        "by example, the bars form one narrow peak at or just right of zero. A <b>two-sided</b> histogram, with real "
        "mass well left of zero (examples on which scrubbing <i>lowers</i> the loss) beside mass to the right, means the "
        "mean difference, and so the fraction recovered, nets gains against losses that cancel: the score can look good "
        "while the hypothesis is wrong on many examples.</p>"
        f"{stats}</section>"
    )


def _summary_section(table: pd.DataFrame) -> str:
    cols = [c for c in ("loss_model", "loss_scrubbed", "loss_baseline") if c in table.columns]
    frame = table[cols].copy()
    if {"loss_scrubbed", "loss_model"} <= set(cols):
        frame["scrubbed - model"] = frame["loss_scrubbed"] - frame["loss_model"]
    if {"loss_baseline", "loss_model"} <= set(cols):
        frame["baseline - model"] = frame["loss_baseline"] - frame["loss_model"]
    desc = frame.describe()
    head = "".join(f"<th>{_e(c)}</th>" for c in desc.columns)
    rows = "".join(
        f"<tr><th>{_e(stat)}</th>"
        + "".join(f"<td class='num'>{int(v) if stat == 'count' else _num(v)}</td>" for v in desc.loc[stat])
        + "</tr>"
        for stat in desc.index
    )
    return (
        "<section><h2>Per-example table</h2><p class='note'>Summary of <code>result.table()</code> "
        f"({len(table)} rows: one per example and seed).</p>"
        f"<table class='grid'><thead><tr><th></th>{head}</tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _record_section(result) -> str:
    record = dict(result.record or {})
    rows: list[tuple[str, str]] = []
    cfg = record.pop("model_config", None)
    if isinstance(cfg, dict):
        shape = ", ".join(
            f"{k} {cfg[k]}" for k in ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "d_vocab", "n_ctx", "act_fn", "normalization_type")
            if k in cfg and not (k == "d_mlp" and cfg.get("attn_only"))
        )
        rows.append(("model", ("attention-only, " if cfg.get("attn_only") else "") + shape))
    if "weights_sha256" in record:
        rows.append(("model weights sha256", str(record.pop("weights_sha256"))))
    rows.append(("data", f"N = {result.n_examples} examples"))
    if "data_sha256" in record:
        rows.append(("data sha256", str(record.pop("data_sha256"))))
    rows.append(("seeds", ", ".join(map(str, result.seeds))))
    for shown in ("seed", "n_seeds"):  # shown as the seeds row
        record.pop(shown, None)
    versions = record.pop("versions", None)
    if isinstance(versions, dict):
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    for k, v in record.items():
        rows.append((str(k), v if isinstance(v, str) else json.dumps(v, default=str, sort_keys=True)))
    if isinstance(cfg, dict):
        rows.append(("model config", json.dumps(cfg, default=str, sort_keys=True)))
    body = "".join(f"<tr><th>{_e(k)}</th><td class='mono'>{_e(v)}</td></tr>" for k, v in rows)
    return f"<section><h2>Record</h2><table class='grid record'><tbody>{body}</tbody></table></section>"


# -- drawings ------------------------------------------------------------------------------
def _model_graph(result):
    """The result's model graph, or one rebuilt from the recorded model config."""
    if result.graph is not None:
        return result.graph
    cfg = (result.record or {}).get("model_config")
    if isinstance(cfg, dict) and {"n_layers", "n_heads"} <= set(cfg):
        from scrub._graph import ModelGraph

        rotary = cfg.get("positional_embedding_type") == "rotary"
        return ModelGraph.build(int(cfg["n_layers"]), int(cfg["n_heads"]), bool(cfg.get("attn_only", False)),
                                inputs=("embed",) if rotary else ("embed", "pos"))
    return None


def _model_positions(graph) -> dict[str, tuple[float, float]]:
    """Component positions from ``nx.multipartite_layout``: one row per forward-pass stage, heads in order."""
    comps = graph.graph.subgraph(graph.components).copy()
    pos = nx.multipartite_layout(comps, subset_key="stage", align="horizontal")
    out: dict[str, tuple[float, float]] = {}
    for stage in {graph.stage(n) for n in comps}:
        members = [n for n in comps if graph.stage(n) == stage]
        xs = sorted(float(pos[n][0]) for n in members)  # the layout's slots, filled in head order
        for n, x in zip(sorted(members, key=lambda n: (graph.head(n) or 0, n)), xs, strict=True):
            out[n] = (x, float(pos[n][1]))
    return out


def _claimed_edges(spec, graph) -> dict[tuple[str, str, str, str], None]:
    """Every model path the hypothesis claims, as ``(upstream, node, port, child name)``, in order."""
    edges: dict[tuple[str, str, str, str], None] = {}
    for parent in spec.nodes():
        for child in parent.children:
            try:
                claims = spec.claims(parent, child, graph)
            except ValueError:  # an invalid hypothesis: draw what is valid
                continue
            for c in claims:
                edges[(c.up, c.node, c.port, child.name)] = None
    return edges


def _model_svg(spec, graph, colours: dict[str, str]) -> str:
    pos = _model_positions(graph)
    mapped: dict[str, list[str]] = {}
    for n in spec.nodes():
        for m in n.model:
            if m in pos and n.name not in mapped.setdefault(m, []):
                mapped[m].append(n.name)
    stages = sorted({graph.stage(n) for n in pos})
    per_stage = max(sum(1 for n in pos if graph.stage(n) == s) for s in stages)
    bw, bh, gap_x, gap_y, margin, left = 64, 34, 20, 66, 22, 58
    width = max(360, per_stage * (bw + gap_x) - gap_x + 2 * margin + left)
    height = (len(stages) - 1) * gap_y + bh + 2 * margin
    xs = [p[0] for p in pos.values()]
    x_lo, x_hi = min(xs), max(xs)
    row = {s: i for i, s in enumerate(stages)}

    def place(n: str) -> tuple[float, float]:
        span = x_hi - x_lo
        x = (left + width - margin) / 2 if span == 0 else left + bw / 2 + (pos[n][0] - x_lo) / span * (width - margin - left - bw)
        return x, height - margin - bh / 2 - row[graph.stage(n)] * gap_y

    def port_x(n: str, port: str) -> float:
        ports = graph.ports(n)
        k = ports.index(port) if port in ports else 0
        return xy[n][0] + (k - (len(ports) - 1) / 2) * (bw / (len(ports) + 0.5))

    xy = {n: place(n) for n in pos}
    edges = _claimed_edges(spec, graph)
    claimed_ports = {(node, port) for _, node, port, _ in edges}
    parts = [_arrow_defs("m", colours)]
    for s in stages:  # stage labels in the left margin
        first = next(n for n in pos if graph.stage(n) == s)
        kind = graph.kind(first)
        label = {"input": "inputs", "output": "output", "attn": f"layer {graph.layer(first)}", "mlp": f"MLP {graph.layer(first)}"}[kind]
        parts.append(f"<text x='4' y='{xy[first][1] + 4:.1f}' class='stage'>{label}</text>")
    sites: dict[str, str] = {}  # claimed residual sites: a dashed line at their layer boundary
    for up, _, _, child in edges:
        if graph.is_site(up):
            sites.setdefault(up, child)
    for n in spec.nodes():
        for m in n.model:
            if graph.is_site(m):
                sites.setdefault(m, n.name)
    site_y: dict[str, float] = {}
    for site, owner in sites.items():
        stage = graph.stage(site)
        anchor = next((n for n in pos if graph.stage(n) == stage), None)
        if anchor is None:
            continue
        y = xy[anchor][1] + gap_y / 2
        site_y[site] = y
        colour = colours.get(owner, "#555")
        parts.append(
            f"<g class='site' data-site='{_e(site)}'><title>{_e(site)}: the residual stream before "
            f"{'the unembedding' if graph.site_layer(site) == graph.n_layers else f'layer {graph.site_layer(site)}'}"
            f" (claimed by {_e(owner)})</title><line x1='{left}' y1='{y:.1f}' x2='{width - margin}' y2='{y:.1f}' "
            f"stroke='{colour}' stroke-width='2' stroke-dasharray='6 4'/>"
            f"<text x='{width - margin:.1f}' y='{y - 3:.1f}' text-anchor='end' fill='{colour}' class='mport'>{_e(site)}</text></g>"
        )
    fan: dict[str, int] = {}
    for up, node, port, child in edges:  # claimed paths, each into its port
        if node not in xy or (up not in xy and up not in site_y):
            continue  # paths into a site: the site's line stands for them
        k = fan.get(up, 0)
        fan[up] = k + 1
        colour = colours.get(child, "#555")
        if up in site_y:  # from the site's line, straight below the port
            xa, ya = port_x(node, port), site_y[up] + bh / 2
        else:
            (xa, ya) = xy[up]
        x0, y0 = xa + ((k % 5) - 2) * 3, ya - bh / 2
        x1, y1 = port_x(node, port), xy[node][1] + bh / 2 + 2
        ym = (y0 + y1) / 2
        parts.append(
            f"<path d='M{x0:.1f},{y0:.1f} C{x0:.1f},{ym:.1f} {x1:.1f},{ym:.1f} {x1:.1f},{y1:.1f}' fill='none' "
            f"stroke='{colour}' stroke-width='1.5' opacity='0.8' marker-end='url(#m-{_cid(colour)})'>"
            f"<title>{_e(child)}: {_e(up)} -> {_e(node)}.{_e(port)}</title></path>"
        )
    for n, (x, y) in xy.items():
        names = mapped.get(n, [])
        x0, y0 = x - bw / 2, y - bh / 2
        tip = f"<title>{_e(n)}: {_e(', '.join(names)) if names else 'unclaimed (resampled)'}</title>"
        if names:
            w = bw / len(names)
            fills = "".join(
                f"<rect x='{x0 + i * w:.1f}' y='{y0:.1f}' width='{w:.1f}' height='{bh}' fill='{colours.get(nm, '#555')}'/>"
                for i, nm in enumerate(names)
            )
            ink = _ink(colours.get(names[0], "#555")) if len(names) == 1 else "#ffffff"
            halo = " halo" if len(names) > 1 else ""
            body = (
                f"{fills}<rect x='{x0:.1f}' y='{y0:.1f}' width='{bw}' height='{bh}' fill='none' stroke='#222' stroke-width='1.2'/>"
                f"<text x='{x:.1f}' y='{y - 1:.1f}' class='mlabel{halo}' fill='{ink}'>{_e(n)}</text>"
            )
        else:
            ink, halo = _IDLE_TEXT, ""
            body = (
                f"<rect x='{x0:.1f}' y='{y0:.1f}' width='{bw}' height='{bh}' fill='{_IDLE_FILL}' stroke='{_IDLE_STROKE}'/>"
                f"<text x='{x:.1f}' y='{y + 4:.1f}' class='mlabel' fill='{ink}'>{_e(n)}</text>"
            )
        if any((n, p) in claimed_ports for p in graph.ports(n)):  # the ports, claimed ones bold
            body += "".join(
                f"<text x='{port_x(n, p):.1f}' y='{y + bh / 2 - 3:.1f}' class='mport{halo}{' on' if (n, p) in claimed_ports else ''}' "
                f"fill='{ink}'>{_e(p)}</text>"
                for p in graph.ports(n)
            )
        parts.append(f"<g class='mnode{'' if names else ' idle'}' data-node='{_e(n)}'>{tip}{body}</g>")
    return _svg(width, height, "".join(parts), "model-graph", "the model graph with the mapped nodes coloured")


def _interpretation_svg(spec, graph, colours: dict[str, str]) -> str:
    g = spec.to_networkx()
    by_id = {i: d["node"] for i, d in g.nodes(data=True)}
    gens = [list(gen) for gen in nx.topological_generations(g)]
    model_x = _model_positions(graph) if graph is not None else {}

    def key(i: int) -> float:  # order each generation like the model nodes it maps to, so the drawings line up
        xs = [model_x[m][0] for m in by_id[i].model if m in model_x]
        return float(np.mean(xs)) if xs else 0.0

    gens = [sorted(gen, key=key) for gen in gens]
    box_h, gap_y, margin = 40, 66, 16
    widths = {
        i: min(240.0, max(90.0, 7.6 * len(_short(by_id[i].name)) + 18, _CHAR_W * len(_short(_mapping(by_id[i]))) + 18))
        for i in g
    }
    row_w = [sum(widths[i] for i in gen) + 30 * (len(gen) - 1) for gen in gens]
    width = max(360.0, max(row_w) + 2 * margin)
    height = len(gens) * box_h + (len(gens) - 1) * (gap_y - box_h) + 2 * margin
    xy: dict[int, tuple[float, float]] = {}
    for r, gen in enumerate(gens):
        x = (width - row_w[r]) / 2
        for i in gen:
            xy[i] = (x + widths[i] / 2, margin + box_h / 2 + r * gap_y)
            x += widths[i] + 30
    parts = [_arrow_defs("i", colours)]
    labels = []
    for a, b in g.edges():
        child = by_id[b]
        colour = colours.get(child.name, "#555")
        (xa, ya), (xb, yb) = xy[a], xy[b]
        y1, y2 = ya + box_h / 2, yb - box_h / 2 - 3
        path = f"M{xa:.1f},{y1:.1f} C{xa:.1f},{(y1 + y2) / 2:.1f} {xb:.1f},{(y1 + y2) / 2:.1f} {xb:.1f},{y2:.1f}"
        parts.append(f"<path d='{path}' fill='none' stroke='{colour}' stroke-width='1.8' marker-end='url(#i-{_cid(colour)})'/>")
        port = "all ports" if child.port is None else ",".join(child.port)
        lx, ly = _bezier((xa, y1), (xa, (y1 + y2) / 2), (xb, (y1 + y2) / 2), (xb, y2), 0.5)
        labels.append(f"<text x='{lx:.1f}' y='{ly + 3.5:.1f}' class='port' fill='{colour}'>{_e(port)}</text>")
    for i, (x, y) in xy.items():
        n = by_id[i]
        colour = colours.get(n.name, "#555")
        w = widths[i]
        dash = " stroke-dasharray='4 3'" if getattr(n, "open", False) else ""
        parts.append(
            f"<g class='inode' data-node='{_e(n.name)}'><title>{_e(n.name)} -> {_e(_mapping(n))}; agree={_e(_feature_name(n.agree))}</title>"
            f"<rect x='{x - w / 2:.1f}' y='{y - box_h / 2:.1f}' width='{w:.1f}' height='{box_h}' rx='7' fill='{colour}' stroke='#222'{dash}/>"
            f"<text x='{x:.1f}' y='{y - 3:.1f}' class='iname' fill='{_ink(colour)}'>{_e(_short(n.name))}</text>"
            f"<text x='{x:.1f}' y='{y + 12:.1f}' class='imap' fill='{_ink(colour)}'>{_e(_short(_mapping(n)))}</text></g>"
        )
    parts.extend(labels)
    return _svg(int(width), int(height), "".join(parts), "interpretation-dag", "the interpretation DAG")


def _bezier(p0, p1, p2, p3, t: float) -> tuple[float, float]:
    u = 1 - t
    return (
        u ** 3 * p0[0] + 3 * u * u * t * p1[0] + 3 * u * t * t * p2[0] + t ** 3 * p3[0],
        u ** 3 * p0[1] + 3 * u * u * t * p1[1] + 3 * u * t * t * p2[1] + t ** 3 * p3[1],
    )


def _arrow_defs(prefix: str, colours: dict[str, str]) -> str:
    marks = "".join(
        f"<marker id='{prefix}-{_cid(c)}' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='5' markerHeight='5' "
        f"orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='{c}'/></marker>"
        for c in sorted(set(colours.values()) | {"#555"})
    )
    return f"<defs>{marks}</defs>"


def _histogram_svg(diff: np.ndarray) -> str:
    w, h = 760, 230
    left, right, top, bottom = 52, 16, 14, 40
    lo, hi = float(diff.min()), float(diff.max())
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    step = (hi - lo) / min(60, max(10, int(np.sqrt(diff.size) * 2)))
    edges = step * np.arange(math.floor(lo / step), math.ceil(hi / step) + 1)  # zero falls on a bin edge
    lo, hi = float(edges[0]), float(edges[-1])
    counts, edges = np.histogram(diff, bins=edges)
    cmax = max(1, int(counts.max())) * 1.08  # headroom above the tallest bar
    pw, ph = w - left - right, h - top - bottom

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * pw

    def y(c: float) -> float:
        return top + ph - c / cmax * ph

    parts = [f"<rect x='{left}' y='{top}' width='{pw}' height='{ph}' fill='#fafbfc' stroke='#d0d5db'/>"]
    for t in _ticks(0, cmax, 5):
        if t > cmax:
            continue
        parts.append(f"<line x1='{left}' x2='{left + pw}' y1='{y(t):.1f}' y2='{y(t):.1f}' stroke='#e3e7eb'/>")
        parts.append(f"<text x='{left - 6}' y='{y(t) + 4:.1f}' class='tick' text-anchor='end'>{t:g}</text>")
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        if c == 0:
            continue
        colour = "#1f77b4" if b <= 0 else ("#d62728" if a >= 0 else "#9467bd")
        parts.append(
            f"<rect x='{x(a) + 0.5:.1f}' y='{y(c):.1f}' width='{max(0.5, x(b) - x(a) - 1):.1f}' height='{y(0) - y(c):.1f}' "
            f"fill='{colour}'><title>{a:.3g} .. {b:.3g}: {c}</title></rect>"
        )
    for t in _ticks(lo, hi, 8):
        if lo - 1e-12 <= t <= hi + 1e-12:
            parts.append(f"<line x1='{x(t):.1f}' x2='{x(t):.1f}' y1='{top + ph}' y2='{top + ph + 4}' stroke='#555'/>")
            parts.append(f"<text x='{x(t):.1f}' y='{top + ph + 16}' class='tick' text-anchor='middle'>{t:g}</text>")
    parts.append(f"<line x1='{x(0):.1f}' x2='{x(0):.1f}' y1='{top}' y2='{top + ph}' stroke='#8a939c' stroke-width='1'/>")
    mean = float(diff.mean())
    parts.append(f"<line x1='{x(mean):.1f}' x2='{x(mean):.1f}' y1='{top}' y2='{top + ph}' stroke='#111' stroke-width='1.5' stroke-dasharray='4 3'/>")
    parts.append(f"<text x='{x(mean) + 4:.1f}' y='{top + 12}' class='tick' fill='#111'>mean {mean:.3g}</text>")
    parts.append(
        f"<text x='{left + pw / 2:.1f}' y='{h - 6}' class='axis' text-anchor='middle'>scrubbed minus model, per example "
        "(blue: scrubbing helps; red: scrubbing hurts)</text>"
    )
    parts.append(f"<text x='12' y='{top + ph / 2:.1f}' class='axis' text-anchor='middle' transform='rotate(-90 12 {top + ph / 2:.1f})'>rows</text>")
    return _svg(w, h, "".join(parts), "histogram", "histogram of per-example loss differences")


def _ticks(lo: float, hi: float, n: int) -> list[float]:
    """Round tick values covering ``[lo, hi]``, about ``n`` of them."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    out = []
    v = start
    while v <= hi + step * 1e-9:
        out.append(round(v, 10) + 0.0)
        v += step
    return out


# -- small helpers -------------------------------------------------------------------------
def _svg(width: float, height: float, inner: str, cls: str, label: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' class='{cls}' width='{width:.0f}' height='{height:.0f}' "
        f"viewBox='0 0 {width:.0f} {height:.0f}' role='img' aria-label='{_e(label)}'>{inner}</svg>"
    )


def _e(value: Any) -> str:
    """HTML-escape any value's text (quotes included): safe in element text and attributes, and valid XML."""
    return html.escape(str(value), quote=True)


def _num(v: Any) -> str:
    return _e(f"{float(v):.4f}") if _is_number(v) else _e(v)


def _pct(v: Any) -> str:
    if not _is_number(v):
        return _e(v)
    v = float(v)
    return "n/a" if not math.isfinite(v) else f"{v:.1%}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _swatch(colour: str | None) -> str:
    if colour is None:
        return ""
    return f"<span class='sw' style='background:{colour}'></span>"


def _ink(colour: str) -> str:
    """Black or white, whichever reads better on ``colour``."""
    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return "#111111" if 0.299 * r + 0.587 * g + 0.114 * b > 0.6 else "#ffffff"


def _cid(colour: str) -> str:
    return colour.lstrip("#")


def _short(text: str, n: int = 30) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _mapping(node) -> str:
    port = "" if node.port is None else "." + "|".join(node.port)
    model = ", ".join(node.model)
    if getattr(node, "neurons", None) is not None:
        model += f"[{len(node.neurons)} neurons]"
    if getattr(node, "subspace", None) is not None:
        model += f" (k={node.subspace.dim})"
    return model + port


def _fn_name(fn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _feature_name(agree) -> str:
    if isinstance(agree, str):
        return f"column {agree!r}"
    if callable(agree) and not isinstance(agree, type):
        return _fn_name(agree)
    return repr(agree)


_CSS = f"""
* {{ box-sizing: border-box; }}
body {{ margin: 0; background: #f4f6f8; color: #1d232a; font: 14px/1.45 {_FONT}; }}
main {{ max-width: 1240px; margin: 0 auto; padding: 18px 20px 30px; }}
header h1 {{ margin: 0 0 2px; font-size: 24px; }}
.sub {{ margin: 0 0 14px; color: #4a535d; }}
section {{ background: #fff; border: 1px solid #dde2e7; border-radius: 8px; padding: 12px 16px; margin: 0 0 14px; }}
h2 {{ font-size: 16px; margin: 0 0 8px; }}
.note {{ color: #66707a; font-size: 12.5px; }}
.ablation {{ background: #fff3cd; border: 1px solid #e0b84c; padding: 8px 12px; border-radius: 4px; }}
.caption {{ color: #333b44; font-size: 13px; max-width: 980px; }}
.score {{ display: flex; gap: 28px; align-items: center; flex-wrap: wrap; }}
.score .big {{ flex: 0 0 250px; }}
.score .losses {{ flex: 1 1 520px; min-width: 0; }}
#score {{ font-size: 46px; font-weight: 700; color: #1d6f3a; line-height: 1.05; }}
#ci {{ font-size: 16px; font-weight: 600; }}
.what {{ color: #4a535d; }}
.losses table th {{ text-align: left; font-weight: 600; padding-right: 12px; }}
.losses td {{ padding: 1px 10px 1px 0; }}
.pair {{ display: flex; gap: 14px; align-items: flex-start; flex-wrap: wrap; }}
figure {{ margin: 0; flex: 1 1 480px; min-width: 0; }}
figcaption {{ font-weight: 600; margin-bottom: 4px; }}
figcaption .note {{ font-weight: 400; }}
svg {{ max-width: 100%; height: auto; font-family: {_FONT}; }}
svg text {{ font-size: 11px; }}
svg .stage {{ fill: #7a828c; font-size: 10px; }}
svg .mlabel, svg .mport, svg .iname, svg .imap, svg .port {{ text-anchor: middle; }}
svg .mlabel {{ font-weight: 600; }}
svg .mport {{ font-size: 9.5px; opacity: 0.6; }}
svg .mport.on {{ font-weight: 700; opacity: 1; }}
svg .iname {{ font-weight: 700; font-size: 12px; }}
svg .imap {{ font-size: 10.5px; }}
svg .port, svg .halo {{ font-weight: 700; paint-order: stroke; stroke: #ffffff; stroke-width: 3px; }}
svg .halo {{ paint-order: stroke; stroke: #222; stroke-width: 2.5px; }}
svg .tick {{ fill: #4a535d; font-size: 10.5px; }}
svg .axis {{ fill: #333b44; font-size: 11.5px; }}
svg.bar {{ vertical-align: middle; margin-left: 6px; }}
table.grid {{ border-collapse: collapse; margin-top: 8px; font-size: 13px; }}
table.grid th, table.grid td {{ border: 1px solid #e1e5e9; padding: 3px 9px; text-align: left; }}
table.grid thead th {{ background: #f0f3f6; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
table.grid td.num {{ text-align: right; }}
.mono {{ font-family: 'DejaVu Sans Mono', Menlo, Consolas, monospace; font-size: 12px; word-break: break-all; }}
.record th {{ white-space: nowrap; }}
.sw {{ display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; border: 1px solid #0003; }}
.stats {{ margin: 6px 0 0; padding-left: 20px; }}
footer {{ color: #7a828c; font-size: 12px; text-align: center; }}
"""
