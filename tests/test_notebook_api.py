"""Notebook-friendly results (issue 17 item 8): short repr, HTML repr, DataFrames, CSV.

References: the report (report.json's layers and totals) for the per-layer rows, the stored
study for the trial rows; pandas' own CSV reader for to_csv.
"""

from __future__ import annotations

import io
import sys

import pandas as pd
import pytest

import imccompile
from imccompile.errors import UsageError
from imccompile.outputs.report import build_report
from imccompile.search import SearchConfig, search

from search_helpers import ROOT

CNN = ROOT / "examples" / "digits_cnn.onnx"
DATA = ROOT / "examples" / "digits_cnn.npz"


@pytest.fixture(scope="module")
def res():
    return imccompile.compile(CNN, "pcm", data=DATA, samples=60, sensitivity=True)


@pytest.fixture(scope="module")
def sres():
    return search(SearchConfig(model=str(CNN), target="pcm", data=str(DATA), samples=60), 4)


def test_short_repr_and_html(res, sres) -> None:
    text = repr(res)
    assert len(text) < 600 and "weight" not in text.lower()  # no arrays (was 43,925 chars)
    assert "digits_cnn" in text and "pcm" in text and "accuracy (top1)" in text
    page = res._repr_html_()
    assert page.startswith("<table>") and "digits_cnn" in page and "&lt;" not in text
    stext = repr(sres)
    assert len(stext) < 600 and stext.startswith("SearchResult(") and "rule=" in stext
    assert sres._repr_html_().startswith("<table>")


def test_layers_frame_matches_the_report(res) -> None:
    df = res.layers_frame()
    rep = build_report(res)
    assert isinstance(df, pd.DataFrame) and len(df) == len(rep["layers"])
    assert list(df["name"]) == [r["name"] for r in rep["layers"]]
    assert df["energy_j"].sum() == pytest.approx(rep["totals"]["energy_j"], rel=1e-12)
    mats = df[df["kind"] != "digital"]
    assert list(mats["label"]) == [f"L{i + 1}" for i in range(len(mats))]
    assert (mats["area_mm2"] > 0).all() and mats["area_mm2"].sum() <= rep["totals"]["area_mm2"]
    assert mats["sensitivity_drop"].notna().all()
    back = pd.read_csv(io.StringIO(res.to_csv()))
    assert list(back.columns) == list(df.columns) and len(back) == len(df)


def test_trials_frame_has_every_trial(sres, tmp_path) -> None:
    df = sres.trials_frame()
    assert list(df["trial"]) == [t.number for t in sres.study.trials]
    assert {"state", "accuracy", "energy_j", "latency_s", "area_mm2", "arrays"} <= set(df.columns)
    assert df["chosen"].sum() == (1 if sres.chosen else 0)
    path = tmp_path / "t.csv"
    sres.to_csv(path)
    assert len(pd.read_csv(path)) == len(df)


def test_without_pandas_the_error_says_how_to_get_it(res, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    with pytest.raises(UsageError, match=r"pip install 'imccompile\[pandas\]'"):
        res.layers_frame()
    assert res.to_csv().startswith("label,name,kind")  # CSV needs no pandas
