"""report.html: the page has one plot per section, escapes names from the model, fetches nothing,
and renders in a real browser (headless Chromium) without errors.

The browser tests skip when Chromium is absent; .ci/run installs it. Screenshots land in
tests/_artifacts/ (gitignored) for a human to look at.
"""

from __future__ import annotations

import copy
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import imccompile
from imccompile.outputs.html_report import render_html
from imccompile.outputs.report import build_report, dumps, graph_report

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ARTIFACTS = Path(__file__).resolve().parent / "_artifacts"
EVIL = "<script>alert(1)</script>"


def plot_ids(page: str) -> list[str]:
    return re.findall(r'<div class="plot" id="plot-([a-z]+)">', page)


def with_search(report: dict) -> dict:
    """The report plus a search section of the shape the search issue will add."""
    r = copy.deepcopy(report)
    trials = [{"trial": i, "values": {"energy_j": 1e-7 * (1 + i % 7) * (1 + i // 7),
                                      "accuracy": 0.9 + 0.01 * (i % 7) - 0.002 * (i // 7)}}
              for i in range(21)]
    pareto = [t for t in trials if not any(
        o is not t and o["values"]["energy_j"] <= t["values"]["energy_j"]
        and o["values"]["accuracy"] >= t["values"]["accuracy"] for o in trials)]
    r["search"] = {"objectives": ["energy_j", "accuracy"], "directions": ["minimize", "maximize"],
                   "pareto": pareto, "chosen": pareto[1]["trial"], "trials": trials}
    return r


@pytest.fixture(scope="module")
def cnn_report() -> dict:
    res = imccompile.compile(EXAMPLES / "digits_cnn.onnx", "pcm",
                             data=EXAMPLES / "digits_cnn.npz", seeds=3, samples=60)
    return json.loads(dumps(build_report(res)))  # exactly what report.json holds


# ---------------------------------------------------------------- page content

def test_plots_of_a_real_report(cnn_report: dict) -> None:
    page = render_html(cnn_report)
    assert plot_ids(page) == ["energy", "latency", "area", "utilization", "accuracy"]
    for name in ("digits_cnn", "pcm", "/features/features.3/Conv", "energy per inference"):
        assert name in page
    # one coloured cell per used array (7 on pcm), the 57 unused ones in one grey path
    hm = page.split('id="plot-utilization"')[1].split("</svg>")[0]
    assert hm.count("<rect") - 2 == cnn_report["totals"]["arrays"]  # minus the legend's two
    assert len(page) < 200_000


@pytest.mark.parametrize("model,target", [("digits_transformer", "rram"), ("karate_gcn", "sram")])
def test_other_models_and_targets(model: str, target: str) -> None:
    rep = build_report(imccompile.compile(EXAMPLES / f"{model}.onnx", target))
    page = render_html(rep)
    assert plot_ids(page) == ["energy", "latency", "area", "utilization"]
    if model == "digits_transformer":  # 45 digital ops merged into one bar
        assert "digital ops (45)" in page


def test_search_adds_a_pareto_plot(cnn_report: dict) -> None:
    rep = with_search(cnn_report)
    page = render_html(rep)
    assert plot_ids(page)[-1] == "pareto"
    assert f"chosen: trial {rep['search']['chosen']}" in page
    assert "plot-pareto" not in render_html(cnn_report)
    broken = dict(cnn_report, search={"objectives": [], "pareto": None})  # unusable: skipped
    assert "plot-pareto" not in render_html(broken)


def test_names_are_escaped(cnn_report: dict) -> None:
    rep = copy.deepcopy(cnn_report)
    rep["model"] = EVIL
    rep["layers"][0]["name"] = EVIL
    rep["layers"][1]["op_type"] = EVIL
    rep["warnings"].append(f"layer {EVIL}: array utilization 0.1%")
    rep["target"]["description"] = '"><img src=x onerror=alert(1)>'
    rep["totals"]["energy_breakdown_j"][EVIL] = 1e-9
    rep["schedule"]["critical_path"].append(EVIL)
    rep = with_search(rep)
    rep["search"]["objectives"].append(EVIL)
    page = render_html(rep)
    assert EVIL not in page and "<img" not in page
    assert "<script" not in page.lower()
    assert html.escape(EVIL) in page


def test_self_contained(cnn_report: dict) -> None:
    page = render_html(with_search(cnn_report))
    urls = set(re.findall(r"[a-z]+://[^\s\"'<>)]+", page)) - {"http://www.w3.org/2000/svg"}
    assert not urls
    assert not re.search(r"<(script|link|img|iframe|object)\b|@import|\bsrc=", page, re.IGNORECASE)
    assert set(re.findall(r"url\(([^)]*)\)", page)) <= {"#imc-viridis"}


def test_from_json_alone_and_partial_reports(cnn_report: dict) -> None:
    assert render_html(json.loads(json.dumps(cnn_report))) == render_html(cnn_report)
    graph = imccompile.import_model(EXAMPLES / "digits_cnn.onnx")
    assert "digits_cnn" in render_html(graph_report(graph))  # import only: no target, no cost
    assert render_html({}).startswith("<!DOCTYPE html>")
    rep = copy.deepcopy(cnn_report)
    del rep["target"]["hierarchy"], rep["accuracy"]
    for row in rep["layers"]:
        row.pop("first_array", None)
    assert plot_ids(render_html(rep)) == ["energy", "latency", "area"]


def test_many_arrays_are_aggregated(cnn_report: dict) -> None:
    rep = copy.deepcopy(cnn_report)
    rep["target"]["hierarchy"] = {"arrays_per_core": 8, "cores_per_tile": 12,
                                  "tiles_per_chip": 168}
    nxt = 0
    for row in rep["layers"]:
        if row["kind"] != "digital":
            row["arrays"], row["first_array"] = 4000, nxt
            nxt += 4000
    page = render_html(rep)
    assert "one cell per tile (96 arrays)" in page and "on 2 chips" in page
    assert len(page) < 300_000


# ---------------------------------------------------------------- CLI and browser

@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html") / "run"
    env = dict(os.environ, NO_COLOR="1", PYTHONWARNINGS="ignore")
    res = subprocess.run([sys.executable, "-m", "imccompile.cli", EXAMPLES / "digits_cnn.onnx",
                          "--target", "pcm", "--data", EXAMPLES / "digits_cnn.npz", "--seeds", "5",
                          "-o", out, "-q"], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    return out


def test_cli_out_writes_report_html(out_dir: Path) -> None:
    page = (out_dir / "report.html").read_text(encoding="utf-8")
    report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    assert page == render_html(report)  # regenerable from report.json
    assert plot_ids(page) == ["energy", "latency", "area", "utilization", "accuracy"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe and Path("/usr/bin/chromium").exists():
        exe = "/usr/bin/chromium"
    if not exe:
        pytest.skip("chromium not installed (.ci/run installs it: apt-get install -y chromium)")
    return exe


# Injected into a copy of the page only (report.html itself has no script): records errors and
# fetched resources, then measures every plot after layout.
PROBE = """<script>
window.__errors = [];
addEventListener("error", e => __errors.push(String(e.message || (e.target && (e.target.src ||
  e.target.href)) || e.type)), true);
const __ce = console.error;
console.error = (...a) => { __errors.push(a.join(" ")); __ce(...a); };
addEventListener("load", () => setTimeout(() => {
  const plots = [...document.querySelectorAll("div.plot")].map(d => {
    const s = d.querySelector("svg"), r = s ? s.getBoundingClientRect() : {width: 0, height: 0};
    const shapes = s ? [...s.querySelectorAll("rect,circle,path,line")] : [];
    return {id: d.id, w: r.width, h: r.height, shapes: shapes.length,
            drawn: shapes.filter(e => { const b = e.getBBox(); return b.width + b.height > 0; })
                         .length};
  });
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({plots, errors: __errors,
    resources: performance.getEntriesByType("resource").map(e => e.name)});
  document.body.appendChild(pre);
}, 0));
</script>"""


class _Pre(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inside, self.text = False, ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.inside = tag == "pre" and ("id", "probe") in attrs

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.text += data


def run_chromium(exe: str, url: str, *extra: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={profile}", "--hide-scrollbars", *extra, url],
            capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", ["cli", "search"])
def test_renders_in_chromium(out_dir: Path, tmp_path: Path, case: str) -> None:
    exe = chromium()
    page = (out_dir / "report.html").read_text(encoding="utf-8")
    expected = ["energy", "latency", "area", "utilization", "accuracy"]
    if case == "search":
        report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
        page = render_html(with_search(report))
        expected.append("pareto")
    src = tmp_path / "report.html"
    src.write_text(page, encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")

    res = run_chromium(exe, probed.as_uri(), "--enable-logging=stderr", "--v=0",
                       "--virtual-time-budget=5000", "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    console = [ln for ln in res.stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    parser = _Pre()
    parser.feed(res.stdout)
    assert parser.text, "the probe did not run:\n" + res.stdout[:500]
    probe = json.loads(parser.text)
    assert probe["errors"] == [] and probe["resources"] == []
    assert [p["id"] for p in probe["plots"]] == [f"plot-{p}" for p in expected]
    for p in probe["plots"]:  # laid out, with visible marks
        assert p["w"] > 300 and p["h"] > 150 and p["drawn"] >= 5, p

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"report_{case}.png"
    shot.unlink(missing_ok=True)
    res = run_chromium(exe, src.as_uri(), f"--screenshot={shot}", "--window-size=1400,2400")
    assert res.returncode == 0 and shot.stat().st_size > 20_000, res.stderr[-2000:]
    shutil.copy(src, ARTIFACTS / f"report_{case}.html")
