"""Accuracy metrics that fit the output (imccompile.metrics), checked against numpy references
computed here on the outputs onnxruntime gives for the source model and for the emitted
simulation model: a DBNet-like detector (sigmoid probability map with flat regions), an
embedding model, a two-output model and a classifier with labels; --ideal scores perfect on
every output; --metric picks the headline (CLI, compile(), a search study)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_builders as ob

import imccompile
from imccompile.cli import main as cli_main
from imccompile.errors import UsageError
from imccompile.metrics import PERFECT_SNR_DB, SNR_MAX_DB
from imccompile.options import IDEAL
from imccompile.simulate import simulation_model_of

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


# -- models -------------------------------------------------------------------------------------
def dbnet_like(rng: np.random.Generator) -> onnx.ModelProto:
    """Conv backbone, 1x1 head, Sigmoid: a (1, 1, 24, 24) text-probability map."""
    w1, b1 = ob.rand(rng, 8, 3, 3, 3) * 0.4, np.zeros(8, np.float32)
    w2, b2 = ob.rand(rng, 8, 8, 3, 3) * 0.2, np.zeros(8, np.float32)
    w3 = np.abs(ob.rand(rng, 1, 8, 1, 1))
    b3 = np.array([-6.0], np.float32)  # background (flat input) saturates near 0
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["prob"])]
    inits = [ob.init(k, v) for k, v in dict(w1=w1, b1=b1, w2=w2, b2=b2, w3=w3, b3=b3).items()]
    return ob.model(nodes, [ob.vi("x", (1, 3, 24, 24))], [ob.vi("prob", (1, 1, 24, 24))], inits)


def dbnet_data(rng: np.random.Generator, n: int = 6) -> np.ndarray:
    """Images that are flat (zero) but for a few bright 'text' boxes."""
    x = np.zeros((n, 1, 3, 24, 24), np.float32)
    for i in range(n):
        for _ in range(2):
            r, c = rng.integers(0, 18, 2)
            x[i, 0, :, r:r + 5, c:c + 6] = 2.0 + rng.random((3, 5, 6), dtype=np.float32)
    return x


def mlp_heads(rng: np.random.Generator, heads: tuple[str, ...]) -> onnx.ModelProto:
    """x (1, 32) -> Gemm 64 -> Relu, then per head: 'logits' Gemm 10 (class scores), 'emb'
    Gemm 16 -> Tanh (an embedding), 'score' Gemm 1 (one value)."""
    nodes = [helper.make_node("Gemm", ["x", "w0", "b0"], ["h0"]),
             helper.make_node("Relu", ["h0"], ["h"])]
    inits = [ob.init("w0", ob.rand(rng, 32, 64) * 0.3), ob.init("b0", ob.rand(rng, 64) * 0.1)]
    outs = []
    for name in heads:
        n = {"logits": 10, "emb": 16, "score": 1}[name]
        inits += [ob.init(f"w_{name}", ob.rand(rng, 64, n) * 0.3),
                  ob.init(f"b_{name}", ob.rand(rng, n) * 0.1)]
        pre = name if name != "emb" else "emb_pre"
        nodes.append(helper.make_node("Gemm", ["h", f"w_{name}", f"b_{name}"], [pre]))
        if name == "emb":
            nodes.append(helper.make_node("Tanh", [pre], ["emb"]))
        outs.append(ob.vi(name, (1, n)))
    return ob.model(nodes, [ob.vi("x", (1, 32))], outs, inits)


def _save(tmp: Path, m: onnx.ModelProto, name: str, **arrays: np.ndarray) -> tuple[Path, Path]:
    mp, dp = tmp / f"{name}.onnx", tmp / f"{name}.npz"
    onnx.save(m, mp)
    np.savez(dp, **arrays)
    return mp, dp


# -- independent references ---------------------------------------------------------------------
def _ort_outputs(model: onnx.ModelProto, xs: np.ndarray, name: str = "x") -> list[np.ndarray]:
    """Every output of ``model`` on every sample (one by one), stacked over the samples."""
    runs = [ob.run(model, {name: x}) for x in xs]
    return [np.stack([r[k] for r in runs]) for k in range(len(runs[0]))]


def _np_metrics(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    o, r = out.astype(np.float64), ref.astype(np.float64)
    cos = [float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b)))
           for a, b in zip(o, r)]
    err = np.sum((o - r) ** 2)
    return {"cosine": float(np.mean(cos)),
            "relerr": float(np.sqrt(err) / np.sqrt(np.sum(r ** 2))),
            "snr": float(min(10 * np.log10(np.sum(r ** 2) / err), SNR_MAX_DB)) if err > 0
            else SNR_MAX_DB}


def _np_agreement(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean(out.reshape(-1, out.shape[-1]).argmax(1)
                         == ref.reshape(-1, ref.shape[-1]).argmax(1)))


def _check_against_numpy(acc: dict, res, source: onnx.ModelProto, xs: np.ndarray) -> None:
    """The reported per-output metrics (seed 0) equal numpy's on onnxruntime's outputs."""
    ref = _ort_outputs(source, xs)
    hw = _ort_outputs(simulation_model_of(res, 0), xs)
    assert len(acc["outputs"]) == len(source.graph.output)
    for o, r, h in zip(acc["outputs"], ref, hw):
        assert o["name"] and h.shape == r.shape
        want = _np_metrics(h, r)
        got = {k: v["per_seed"][0] for k, v in o["metrics"].items()}
        assert got["cosine"] == pytest.approx(want["cosine"], rel=1e-5, abs=1e-6)
        assert got["relerr"] == pytest.approx(want["relerr"], rel=1e-4, abs=1e-7)
        assert got["snr"] == pytest.approx(want["snr"], abs=1e-3)
        if o["kind"] == "class_scores":
            assert got["agreement"] == pytest.approx(_np_agreement(h, r))
        else:
            assert "agreement" not in got


def _assert_perfect(acc: dict) -> None:
    for o in acc["outputs"]:
        m = o["metrics"]
        for key in ("top1", "agreement"):
            if key == "agreement" and key in m:
                assert m[key]["mean"] == 1.0, o
        assert m["cosine"]["mean"] >= 1 - 1e-6, o
        assert m["relerr"]["mean"] <= 1e-5, o
        assert m["snr"]["mean"] >= PERFECT_SNR_DB, o
    if acc["metric"] in ("agreement", "cosine"):
        assert acc["mean"] >= 1 - 1e-6
    assert acc["float"] == (0.0 if acc["metric"] == "relerr" else acc["float"])


# -- the DBNet-like detector --------------------------------------------------------------------
@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    rng = np.random.default_rng(3)
    m = dbnet_like(rng)
    xs = dbnet_data(rng)
    return m, xs, _save(tmp_path_factory.mktemp("det"), m, "det", x=xs)


def test_detector_map_is_scored_as_values_and_ideal_is_perfect(detector):
    m, xs, (mp, dp) = detector
    ref = _ort_outputs(m, xs)[0]
    assert (ref < 0.01).mean() > 0.5  # mostly flat background
    res = imccompile.compile(str(mp), "pcm", data=str(dp), sim_options=IDEAL)
    acc = res.accuracy
    assert acc is not None and acc["metric"] == "cosine" and acc["direction"] == "maximize"
    (out,) = acc["outputs"]
    assert out["name"] == "prob" and out["shape"] == [1, 1, 24, 24] and out["kind"] == "values"
    assert set(out["metrics"]) == {"cosine", "relerr", "snr"}
    _assert_perfect(acc)
    assert acc["mean"] == pytest.approx(1.0, abs=1e-6)


def test_detector_metrics_under_noise_match_numpy(detector):
    m, xs, (mp, dp) = detector
    res = imccompile.compile(str(mp), "pcm", data=str(dp), seeds=2)
    acc = res.accuracy
    assert acc is not None
    _check_against_numpy(acc, res, m, xs)
    o = acc["outputs"][0]["metrics"]
    assert acc["per_seed"] == [pytest.approx(v) for v in o["cosine"]["per_seed"]]
    assert 0 < o["relerr"]["mean"] < 1 and o["snr"]["mean"] < SNR_MAX_DB


# -- embedding, two outputs, labels -------------------------------------------------------------
def test_embedding_model_is_values_and_ideal_is_perfect(tmp_path):
    rng = np.random.default_rng(4)
    m = mlp_heads(rng, ("emb",))
    xs = ob.rand(rng, 12, 1, 32)
    mp, dp = _save(tmp_path, m, "emb", x=xs)
    ideal = imccompile.compile(str(mp), "pcm", data=str(dp), sim_options=IDEAL).accuracy
    assert ideal is not None and ideal["metric"] == "cosine"
    assert [o["kind"] for o in ideal["outputs"]] == ["values"]
    _assert_perfect(ideal)
    res = imccompile.compile(str(mp), "rram", data=str(dp))
    assert res.accuracy is not None
    _check_against_numpy(res.accuracy, res, m, xs)


def test_two_output_model_scores_every_output(tmp_path):
    rng = np.random.default_rng(5)
    m = mlp_heads(rng, ("logits", "emb"))
    xs = ob.rand(rng, 16, 1, 32)
    mp, dp = _save(tmp_path, m, "two", x=xs)
    ideal = imccompile.compile(str(mp), "pcm", data=str(dp), sim_options=IDEAL).accuracy
    assert ideal is not None
    assert [(o["name"], o["kind"]) for o in ideal["outputs"]] == [("logits", "class_scores"),
                                                                  ("emb", "values")]
    _assert_perfect(ideal)
    res = imccompile.compile(str(mp), "pcm", data=str(dp))
    acc = res.accuracy
    assert acc is not None and acc["metric"] == "cosine"  # mixed outputs: mean cosine
    _check_against_numpy(acc, res, m, xs)
    cos = [o["metrics"]["cosine"]["mean"] for o in acc["outputs"]]
    assert acc["mean"] == pytest.approx(np.mean(cos))
    rel = [o["metrics"]["relerr"]["mean"] for o in acc["outputs"]]
    assert acc["relative_error"] == pytest.approx(np.mean(rel))
    for metric in ("relerr", "snr", "agreement"):
        a = imccompile.compile(str(mp), "pcm", data=str(dp), metric=metric).accuracy
        assert a is not None and a["metric"] == metric
        assert a["direction"] == ("minimize" if metric == "relerr" else "maximize")
        assert a["mean"] == pytest.approx(np.mean(
            [o["metrics"][metric]["mean"] for o in a["outputs"]]))
    a = imccompile.compile(str(mp), "pcm", data=str(dp), metric="relerr",
                           sim_options=IDEAL).accuracy
    assert a is not None and a["float"] == 0.0 and a["mean"] <= 1e-6


def test_classifier_with_labels_keeps_top1_headline(tmp_path):
    src = onnx.load(str(EXAMPLES / "digits_cnn.onnx"))
    with np.load(EXAMPLES / "digits_cnn.npz") as z:
        xs, labels = z["input"][:48], z["labels"][:48]
    dp = tmp_path / "d.npz"
    np.savez(dp, input=xs, labels=labels)
    res = imccompile.compile(str(EXAMPLES / "digits_cnn.onnx"), "pcm", data=str(dp))
    acc = res.accuracy
    assert acc is not None and acc["metric"] == "top1"
    xs1 = xs[:, None]
    ref = _ort_outputs(src, xs1, "input")[0]
    hw = _ort_outputs(simulation_model_of(res, 0), xs1, "input")[0]
    assert acc["float"] == pytest.approx(np.mean(ref.reshape(-1, 10).argmax(1) == labels))
    assert acc["mean"] == pytest.approx(np.mean(hw.reshape(-1, 10).argmax(1) == labels))
    (out,) = acc["outputs"]
    assert out["kind"] == "class_scores" and {"top1", "agreement"} <= set(out["metrics"])
    assert out["metrics"]["agreement"]["mean"] == pytest.approx(_np_agreement(hw, ref))
    ideal = imccompile.compile(str(EXAMPLES / "digits_cnn.onnx"), "pcm", data=str(dp),
                               sim_options=IDEAL).accuracy
    assert ideal is not None
    _assert_perfect(ideal)
    assert ideal["mean"] == ideal["float"]


@pytest.mark.parametrize("name", ["digits_cnn", "digits_transformer", "karate_gcn"])
def test_examples_ideal_is_perfect_without_labels(name, tmp_path):
    with np.load(EXAMPLES / f"{name}.npz") as z:
        arrays = {k: z[k] if name == "karate_gcn" else z[k][:24] for k in z.files
                  if k != "labels"}
    np.savez(tmp_path / "x.npz", **arrays)
    acc = imccompile.compile(str(EXAMPLES / f"{name}.onnx"), "sram", data=str(tmp_path / "x.npz"),
                             sim_options=IDEAL).accuracy
    assert acc is not None
    _assert_perfect(acc)


# -- the flag, its errors, the report ------------------------------------------------------------
def test_metric_flag_in_report_and_terminal(tmp_path, capsys):
    rng = np.random.default_rng(6)
    mp, dp = _save(tmp_path, mlp_heads(rng, ("logits", "emb")), "two",
                   x=ob.rand(rng, 8, 1, 32))
    out = tmp_path / "r.json"
    assert cli_main([str(mp), "--target", "pcm", "--data", str(dp), "--metric", "snr",
                     "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "accuracy (snr)" in text and "accuracy per output" in text and "SNR dB" in text
    rep = json.loads(out.read_text())
    assert rep["accuracy"]["metric"] == "snr"
    assert [o["name"] for o in rep["accuracy"]["outputs"]] == ["logits", "emb"]
    folder = tmp_path / "o"
    assert cli_main([str(mp), "--target", "pcm", "--data", str(dp), "-o", str(folder),
                     "-q"]) == 0
    page = (folder / "report.html").read_text()
    assert "per output" in page and "emb" in page and "SNR dB" in page


@pytest.mark.parametrize("args, message", [
    (["--metric", "top1"], "--metric top1 is the accuracy against labels"),
    (["--metric", "agreement"], "output 'score' has one value along its last axis"),
    (["--metric", "psnr"], "invalid choice: 'psnr'"),
])
def test_metric_errors_are_clean(tmp_path, capsys, args, message):
    rng = np.random.default_rng(7)
    mp, dp = _save(tmp_path, mlp_heads(rng, ("logits", "score")), "m", x=ob.rand(rng, 4, 1, 32))
    assert cli_main([str(mp), "--target", "pcm", "--data", str(dp), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("imccompile: error: ") and message in err and "Traceback" not in err


def test_bad_metric_in_the_api_is_a_usage_error():
    with pytest.raises(UsageError, match=r"--metric bogus: expected one of auto, top1, "
                                         r"agreement, cosine, relerr, snr"):
        imccompile.compile(str(EXAMPLES / "digits_cnn.onnx"), "pcm", metric="bogus")


def test_search_uses_the_metric_with_its_direction(tmp_path):
    from imccompile.options import CompileOptions
    from imccompile.search import Evaluator, SearchConfig

    rng = np.random.default_rng(8)
    mp, dp = _save(tmp_path, mlp_heads(rng, ("logits", "emb")), "m", x=ob.rand(rng, 8, 1, 32))
    cfg = SearchConfig.from_options(str(mp), "pcm", str(dp),
                                    CompileOptions.make(metric="relerr"))
    assert json.loads(cfg.key())["metric"] == "relerr"
    auto = SearchConfig.from_options(str(mp), "pcm", str(dp), CompileOptions())
    assert ("--metric auto", "--metric relerr") in cfg.differences(auto.key())
    ev = Evaluator(cfg)
    assert ev.metric == "relerr" and ev.float_accuracy == 0.0
    res, values = ev.evaluate_text("", {}, False)
    assert res.accuracy is not None and res.accuracy["metric"] == "relerr"
    assert values["accuracy"] == -res.accuracy["mean"] < 0  # maximized: -relerr
    # the accuracy drop budget is in percent of relative error for relerr
    from imccompile.search import _constraints

    budget = SearchConfig.from_options(str(mp), "pcm", str(dp),
                                       CompileOptions.make(metric="relerr"), max_accuracy_drop=1.0)
    (c,) = _constraints(budget, values, ev.float_accuracy, ev.metric)
    assert c == pytest.approx(100 * res.accuracy["mean"] - 1.0)
