"""report.html layout fixes (issue 17 item 7), on a real search report with a long per-layer
pipeline, one noise seed and the sensitivity: static checks of the page, then headless Chromium
at 1400 px (no horizontal overflow, every plot axis titled; screenshots in tests/_artifacts/).
The browser part skips without Chromium (.ci/run installs it)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from imccompile.outputs.html_report import render_html

from cli_helpers import cli
from search_helpers import ROOT
from test_html_report import ARTIFACTS, _Pre, chromium, run_chromium

CNN = ROOT / "examples" / "digits_cnn.onnx"
DATA = ROOT / "examples" / "digits_cnn.npz"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("html") / "out"
    r = cli(CNN, "--target", "pcm", "--data", DATA, "--samples", "90", "--search", "8",
            "--sensitivity", "-o", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert len(rep["pipeline"]) > 200  # per-layer quantize passes: the string that overflowed
    return rep


def svg_of(page: str, pid: str) -> str:
    return page.split(f'id="plot-{pid}">')[1].split("</svg>")[0]


def test_static_content(report: dict) -> None:
    page = render_html(report)
    # layer names: the heat map's L-labels, the name cut from the right (never "…/Conv")
    energy = svg_of(page, "energy")
    labels = re.findall(r'rotate\(-40\)" text-anchor="end"><title>[^<]*</title>([^<]*)</text>',
                        energy)
    assert labels[0].startswith("L1 /features/feat") and not any(x.startswith("…") for x in labels)
    # Pareto x axis (accuracy) does not run past 1; baseline marked; no label over the front
    pareto = svg_of(page, "pareto")
    ticks = [float(t) for t in re.findall(r'text-anchor="middle">([0-9.]+)</text>', pareto)]
    assert ticks and max(ticks) <= 1.0
    assert "baseline: trial 0" in pareto and "chosen: trial" in pareto
    assert "chosen (trial" not in page
    assert "knobs and per-layer pipeline" in page  # the Pareto table has the settings
    # one seed: no empty per-seed plot, the numbers in words
    assert 'id="plot-accuracy"' not in page and "over one noise seed" in page
    # headline card with the float accuracy; area per layer; sensitivity; the command
    assert "top1 (float model)" in page
    assert 'id="plot-area"' in page and "<th>area</th>" in page
    assert 'id="plot-sensitivity"' in page
    assert 'id="command"' in page and report["search"]["recreate_command"] in page.replace(
        "&#x27;", "'")


PROBE = """<script>
addEventListener("load", () => setTimeout(() => {
  const plots = [...document.querySelectorAll("div.plot")].map(d => ({id: d.id,
    titles: [...d.querySelectorAll("svg text.axt")].map(t => t.textContent),
    w: d.querySelector("svg").getBoundingClientRect().width}));
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({scroll: document.scrollingElement.scrollWidth,
                                    inner: innerWidth, plots});
  document.body.appendChild(pre);
}, 0));
</script>"""


def test_in_chromium_at_1400px(report: dict, tmp_path) -> None:
    exe = chromium()
    page = render_html(report)
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    res = run_chromium(exe, probed.as_uri(), "--window-size=1400,2400",
                       "--virtual-time-budget=5000", "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    parser = _Pre()
    parser.feed(res.stdout)
    probe = json.loads(parser.text)
    assert probe["inner"] == 1400
    assert probe["scroll"] <= 1400, probe  # no horizontal overflow
    plots = {p["id"][len("plot-"):]: p for p in probe["plots"]}
    assert {"energy", "latency", "area", "utilization", "sensitivity", "pareto"} <= set(plots)
    for pid, p in plots.items():
        if pid == "utilization":  # a map of the chip: no axes
            continue
        assert len(p["titles"]) == 2 and all(t.strip() for t in p["titles"]), p  # x and y
    units = " ".join(plots["energy"]["titles"] + plots["pareto"]["titles"])
    assert "J)" in units and "(J," in units  # energy axes carry their unit
    ARTIFACTS.mkdir(exist_ok=True)
    src = tmp_path / "report.html"
    src.write_text(page, encoding="utf-8")
    shot = ARTIFACTS / "report_search_1400.png"
    shot.unlink(missing_ok=True)
    res = run_chromium(exe, src.as_uri(), f"--screenshot={shot}", "--window-size=1400,4000")
    assert res.returncode == 0 and shot.stat().st_size > 20_000, res.stderr[-2000:]
    shutil.copy(src, ARTIFACTS / "report_search_1400.html")
