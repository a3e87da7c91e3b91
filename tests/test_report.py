"""The HTML report: its structure, its escaping, and that it renders in headless Chromium."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pandas as pd
import pytest

import scrub
from hypotheses.induction import load_model, make_data
from hypotheses.induction.hypotheses import HEADS, naive
from scrub.report import node_colours, render_html, write_html

SVG = "{http://www.w3.org/2000/svg}"
WIDTH, HEIGHT = 1280, 1600


@pytest.fixture(scope="module")
def result() -> scrub.Result:
    return scrub.run(load_model(), naive(), make_data(200, seed=0), seed=0, n_seeds=1)


@pytest.fixture
def breakdown() -> pd.DataFrame:
    """A hand-set claim breakdown in the shape scrub.breakdown returns (the report only formats it)."""
    return pd.DataFrame({
        "claim": ["current token", "previous tokens", "token values"],
        "alone": [0.125, 0.5, 0.25], "alone_lo": [0.1, 0.45, 0.2], "alone_hi": [0.15, 0.55, 0.3],
        "without": [0.75, 0.375, 0.625], "without_lo": [0.7, 0.3, 0.6], "without_hi": [0.8, 0.45, 0.65],
        "lost": [0.15, 0.525, 0.275],
    })


def _svgs(page: str) -> dict[str, ET.Element]:
    """Every top-level inline SVG, parsed as XML, by its class."""
    found = re.findall(r"<svg\b.*?</svg>", page, flags=re.S)
    parsed = [ET.fromstring(s) for s in found]  # raises if any is not well-formed XML
    return {el.get("class"): el for el in parsed}


def _drawn_nodes(svg: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-node"): g for g in svg.iter(f"{SVG}g") if g.get("data-node") is not None}


def test_report_structure(result, breakdown):
    page = render_html(result, breakdown=breakdown)
    svgs = _svgs(page)
    assert {"interpretation-dag", "model-graph", "histogram", "loss-line", "bar"} <= set(svgs)
    colours = node_colours(result.spec)

    # every interpretation node is drawn, in its colour
    dag = _drawn_nodes(svgs["interpretation-dag"])
    assert set(dag) == {"output", "induction heads", "current token", "previous tokens", "token values"}
    for name, g in dag.items():
        assert colours[name] in {r.get("fill") for r in g.iter(f"{SVG}rect")}, name

    # every model node is drawn; each mapped one carries the colour of every node mapping to it
    model = _drawn_nodes(svgs["model-graph"])
    assert set(model) == {"embed", "pos", "out"} | {f"a{layer}.{head}" for layer in range(2) for head in range(4)}
    fills = {n: {r.get("fill") for r in g.iter(f"{SVG}rect")} for n, g in model.items()}
    assert fills["embed"] >= {colours["current token"], colours["token values"]}
    for head in HEADS["induction"]:
        assert colours["induction heads"] in fills[head]
    for head in HEADS["prev_token"]:
        assert colours["previous tokens"] in fills[head]
    for idle in ("pos", "a0.0", "a0.1"):
        assert not fills[idle] & set(colours.values()), idle
    # the claimed paths: 4 heads into out.in, embed into 4 x q and 4 x v, 2 previous-token heads into 4 x k
    paths = [p.findtext(f"{SVG}title") for p in svgs["model-graph"].iter(f"{SVG}path") if p.get("marker-end")]
    assert len(paths) == 20
    assert sum(t.endswith(".k") for t in paths) == 8 and sum(t.endswith(".in") for t in paths) == 4
    assert "previous tokens: a0.3 -> a1.2.k" in paths

    # the score, its interval and the three losses, as the Result has them
    m = re.search(r"<div id='score' data-value='([^']*)'>([^<]*)</div>", page)
    assert float(m.group(1)) == result.loss_recovered
    assert m.group(2) == f"{result.loss_recovered:.1%}"
    lo, hi = result.ci
    assert f"95% CI {lo:.1%} .. {hi:.1%}</div>" in page
    for v in (result.loss_model, result.loss_scrubbed, result.loss_baseline):
        assert f">{v:.4f}<" in page

    # the histogram counts every row once; the share below zero is reported
    bars = [t.text for t in svgs["histogram"].iter(f"{SVG}title")]
    assert sum(int(t.rsplit(": ", 1)[1]) for t in bars) == len(result.table()) == 200
    table = result.table()
    diff = table["loss_scrubbed"] - table["loss_model"]
    assert f"<b>{(diff < 0).mean():.1%}</b> of rows" in page

    # the breakdown, the per-example summary and the record
    assert "50.0% <span class='note'>(45.0% .. 55.0%)</span>" in page
    assert all(f"<span class='nm'>{c}</span>" in page for c in breakdown["claim"])
    assert f"<td class='num'>{table['loss_scrubbed'].std():.4f}</td>" in page
    assert result.record["weights_sha256"] in page and result.record["data_sha256"] in page
    assert f"torch {result.record['versions']['torch']}" in page


def test_report_without_breakdown_or_spec(result):
    """No breakdown section without a breakdown; a result without its hypothesis still renders."""
    page = render_html(result)
    assert "Claim breakdown" not in page and "Interpretation DAG" in page
    bare = render_html(dataclasses.replace(result, spec=None, graph=None))
    assert "carries no hypothesis" in bare and "interpretation-dag" not in bare
    assert f"{result.loss_recovered:.1%}" in bare


def test_every_user_string_is_escaped(result, breakdown):
    evil = "<script>alert(1)</script>"
    h = scrub.Hypothesis(evil)
    ind = h.output().add("<img src=x onerror=alert(1)>", model=HEADS["induction"], agree="label")
    ind.add('a "quoted" & <b>bold</b> node', model="embed", port="q", agree="current_token")
    frame = breakdown.assign(claim=["<b>claim</b>", "<i>two</i>", "x' onmouseover='y"])
    page = render_html(dataclasses.replace(result, hypothesis=h.name, spec=h), breakdown=frame, title="Tom & Jerry <i>")
    assert "<script" not in page.lower() and "<img" not in page and "<b>bold" not in page and "<b>claim" not in page
    assert "<i>two" not in page and "onmouseover='y" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>Tom &amp; Jerry &lt;i&gt;</title>" in page
    # the names survive the round trip through the (still well-formed) SVG
    dag = _drawn_nodes(_svgs(page)["interpretation-dag"])
    assert set(dag) == {"output", "<img src=x onerror=alert(1)>", 'a "quoted" & <b>bold</b> node'}


# -- headless Chromium -------------------------------------------------------------------------
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("no Chromium on PATH, and CI is set: .ci/run installs Debian's `chromium`")
    pytest.skip("no Chromium on PATH (chromium, chromium-browser or google-chrome); `apt-get install chromium`")


def _read_png(path) -> np.ndarray:
    """Decode an 8-bit RGB(A), non-interlaced PNG into ``[height, width, channels]`` uint8 (zlib + numpy)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    i, idat, header = 8, [], None
    while i < len(data):
        n, kind = struct.unpack(">I4s", data[i : i + 8])
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data[i + 8 : i + 8 + n])
        elif kind == b"IDAT":
            idat.append(data[i + 8 : i + 8 + n])
        i += 12 + n
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    bpp = 3 if colour_type == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for r in range(height):
        kind, line = raw[r * (stride + 1)], np.frombuffer(raw, np.uint8, stride, r * (stride + 1) + 1)
        if kind == 0:
            out[r] = line
        elif kind == 1:  # Sub: a running sum along the row, per channel
            out[r] = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:  # Up
            out[r] = line + prev
        else:  # Average, Paeth: sequential along the row
            cur, up = bytearray(line.tobytes()), prev.tobytes()
            for x in range(stride):
                a = cur[x - bpp] if x >= bpp else 0
                if kind == 3:
                    pred = (a + up[x]) >> 1
                else:
                    b, c = up[x], (up[x - bpp] if x >= bpp else 0)
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (cur[x] + pred) & 255
            out[r] = np.frombuffer(bytes(cur), np.uint8)
        prev = out[r]
    return out.reshape(height, width, bpp)


def test_report_renders_in_headless_chromium(result, breakdown, tmp_path):
    browser = _chromium()
    page = write_html(tmp_path / "out" / "report.html", result, breakdown=breakdown)
    assert page.read_text(encoding="utf-8") == render_html(result, breakdown=breakdown)
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.exists(), f"Chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
    assert struct.unpack(">II", shot.read_bytes()[16:24]) == (WIDTH, HEIGHT)

    pixels = _read_png(shot)[..., :3].astype(np.uint32)
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    colours, counts = np.unique(packed, return_counts=True)
    assert len(colours) > 200, f"only {len(colours)} colours: a blank or unstyled page"
    assert packed[5, 5] == 0xF4F6F8  # the page background, from the inline CSS
    assert counts.max() < 0.8 * packed.size  # no single colour fills the page
    # every interpretation node's colour is painted (the SVG boxes rendered), and the idle grey
    present = dict(zip(colours.tolist(), counts.tolist()))
    for name, hex_colour in {**node_colours(result.spec), "idle model node": "#eef0f2"}.items():
        assert present.get(int(hex_colour[1:], 16), 0) > 300, f"{name}: {hex_colour} is not on the screenshot"
