"""The CLI's import path (no --target): bad inputs fail cleanly, good inputs report the IR.

Every run is a real subprocess (`python -m imccompile.cli`), so exit codes and stderr are what a
user sees. A bad input must give exit code 1, one ``imccompile: error:`` message naming the
problem on stderr, and never a Python traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_builders as ob  # noqa: E402

from imccompile.frontend import import_model  # noqa: E402
from cli_helpers import cli  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"




def assert_user_error(res: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 1, every fragment in the one error message, no traceback, nothing on stdout."""
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    assert "internal error" not in res.stderr, res.stderr
    assert res.stderr.startswith("imccompile: error: "), res.stderr
    assert res.stderr.count("imccompile: error:") == 1, res.stderr
    for frag in fragments:
        assert frag in res.stderr, (frag, res.stderr)
    assert res.stdout == "", res.stdout


# -- model files ------------------------------------------------------------------------------
def _relu_then_conv(batch: int | str = 1) -> onnx.ModelProto:
    """Conv (pad 1) -> Relu -> Flatten -> Gemm(transB): 2 matrix ops, 2 digital ops."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    inits = [ob.init("w", ob.rand(rng, 8, 3, 3, 3)), ob.init("b", ob.rand(rng, 8)),
             ob.init("fc_w", ob.rand(rng, 10, 8 * 5 * 5)), ob.init("fc_b", ob.rand(rng, 10))]
    return ob.model(nodes, [ob.vi("x", (batch, 3, 5, 5))], [ob.vi("y", None)], inits,
                    name="small_cnn")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    out: dict[str, Path] = {}

    def save(name: str, m: onnx.ModelProto) -> None:
        out[name] = d / f"{name}.onnx"
        onnx.save(m, str(out[name]))

    out["random_bytes"] = d / "random_bytes.onnx"
    out["random_bytes"].write_bytes(np.random.default_rng(0).bytes(500))
    out["text"] = d / "text.onnx"
    out["text"].write_text("this is not an ONNX model\njust some text\n")
    out["empty_proto"] = d / "empty_proto.onnx"
    out["empty_proto"].write_bytes(onnx.ModelProto().SerializeToString())
    out["dir"] = d / "a_directory.onnx"
    out["dir"].mkdir()
    save("dangling", ob.model([helper.make_node("Relu", ["nothere"], ["y"], name="relu7")],
                              [ob.vi("x", (2,))], [ob.vi("y", (2,))], check=False))
    save("if", ob.if_model())
    save("loop", ob.loop_model())
    save("scan", ob.scan_model())
    save("foobar", ob.unknown_op_model("FooBar", "mystery"))
    save("custom", ob.unknown_op_model("X", "custom1", domain="com.example"))
    save("shapeless", ob.shapeless_io_model(np.ones((6, 4), np.float32)))
    save("dynamic", _relu_then_conv("N"))
    save("cnn", _relu_then_conv(1))
    return out


# -- bad inputs -------------------------------------------------------------------------------
def test_nonexistent_file(tmp_path: Path) -> None:
    p = tmp_path / "missing.onnx"
    assert_user_error(cli(p), str(p), "no such file")


def test_directory(files: dict[str, Path]) -> None:
    assert_user_error(cli(files["dir"]), str(files["dir"]), "is a directory")


@pytest.mark.parametrize("name", ["random_bytes", "text"])
def test_not_a_protobuf(files: dict[str, Path], name: str) -> None:
    assert_user_error(cli(files[name]), str(files[name]), "not a readable ONNX model")


def test_empty_model_proto(files: dict[str, Path]) -> None:
    assert_user_error(cli(files["empty_proto"]), str(files["empty_proto"]), "not an ONNX model")


def test_checker_rejects_dangling_input(files: dict[str, Path]) -> None:
    # the checker's message names the missing tensor and (on its later lines) the node
    assert_user_error(cli(files["dangling"]), "dangling", "ONNX checker rejects",
                      "'nothere'", "relu7")


@pytest.mark.parametrize("name,node,op", [("if", "branch", "If"), ("loop", "loop1", "Loop"),
                                          ("scan", "scan1", "Scan")])
def test_control_flow(files: dict[str, Path], name: str, node: str, op: str) -> None:
    assert_user_error(cli(files[name]), f"node '{node}' is {op}", "control flow")


def test_unknown_default_domain_op(files: dict[str, Path]) -> None:
    assert_user_error(cli(files["foobar"]), "'mystery'", "FooBar")


def test_custom_domain_op(files: dict[str, Path]) -> None:
    assert_user_error(cli(files["custom"]), "'custom1'", "com.example::X", "custom-domain")


def test_dynamic_input_without_input_shape(files: dict[str, Path]) -> None:
    assert_user_error(cli(files["dynamic"]), "input 'x'", "dynamic shape",
                      "--input-shape x=1,3,5,5")


def test_input_without_shape(files: dict[str, Path]) -> None:
    assert_user_error(cli(files["shapeless"]), "input 'x' has no shape",
                      "--input-shape x=D1,D2")
    res = cli(files["shapeless"], "--input-shape", "x=3,6", "--json", "-")
    assert res.returncode == 0, res.stderr
    (layer,) = json.loads(res.stdout)["layers"]
    assert (layer["rows"], layer["cols"], layer["vectors"]) == (6, 4, 3)


@pytest.mark.parametrize("spec,fragment", [
    ("x", "expected NAME=D1,D2"),
    ("=1,3,5,5", "expected NAME=D1,D2"),
    ("x=a,b", "dimensions must be positive integers"),
    ("x=1,0,5,5", "dimensions must be positive integers"),
    ("x=1,3,5", "rank 4"),
])
def test_input_shape_bad_format(files: dict[str, Path], spec: str, fragment: str) -> None:
    assert_user_error(cli(files["dynamic"], "--input-shape", spec), fragment)


def test_input_shape_unknown_input(files: dict[str, Path]) -> None:
    assert_user_error(cli(files["dynamic"], "--input-shape", "image=1,3,5,5"),
                      "'image', which is not an input", "inputs: x")


def test_unknown_flag(files: dict[str, Path]) -> None:
    assert_user_error(cli(files["cnn"], "--bogus"), "unrecognized arguments: --bogus")


def test_missing_model_argument() -> None:
    assert_user_error(cli(), "model")


# -- good paths -------------------------------------------------------------------------------
def _check_report(report: dict, model_name: str) -> None:
    assert report["model"] == model_name
    layers = report["layers"]
    assert layers
    for row in layers:
        for key in ("name", "kind", "rows", "cols", "groups", "weights", "vectors", "macs"):
            assert key in row, (key, row)
        if row["kind"] != "digital":
            assert row["weights"] == row["rows"] * row["cols"]
            assert row["macs"] == row["vectors"] * row["rows"] * row["cols"]
    mats = [r for r in layers if r["kind"] != "digital"]
    totals = report["totals"]
    assert totals == {
        "matrix_ops": len(mats),
        "digital_ops": len(layers) - len(mats),
        "weights": sum(r["weights"] for r in layers),
        "macs": sum(r["macs"] for r in layers),
    }


def test_json_report_hand_checked(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    res = cli(files["cnn"], "--json", out)
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    _check_report(report, "cnn")
    rows = {r["name"]: r for r in report["layers"]}
    # conv: x (1,3,5,5), w (8,3,3,3), pad 1 -> 5x5 = 25 positions; K = 27, N = 8
    assert {k: rows["conv"][k] for k in ("kind", "rows", "cols", "groups", "weights", "vectors",
                                         "macs")} == \
        dict(kind="conv", rows=27, cols=8, groups=1, weights=216, vectors=25, macs=5400)
    # fc: Gemm transB, B (10, 200): K = 200, N = 10, one vector
    assert {k: rows["fc"][k] for k in ("kind", "rows", "cols", "weights", "vectors", "macs")} == \
        dict(kind="gemm", rows=200, cols=10, weights=2000, vectors=1, macs=2000)
    assert [r["op_type"] for r in report["layers"] if r["kind"] == "digital"] == \
        ["Relu", "Flatten"]
    assert report["totals"]["weights"] == 2216 and report["totals"]["macs"] == 7400


def test_json_to_stdout(files: dict[str, Path]) -> None:
    res = cli(files["dynamic"], "--input-shape", "x=4,3,5,5", "--json", "-")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    _check_report(report, "dynamic")
    conv = next(r for r in report["layers"] if r["name"] == "conv")
    assert conv["vectors"] == 4 * 25  # batch 4 x 5x5 positions


def test_json_unwritable_path(files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "no_such_dir" / "out.json"
    assert_user_error(cli(files["cnn"], "--json", bad), "--json", "cannot write")


def test_print_ir_deterministic_one_line_per_op(files: dict[str, Path]) -> None:
    runs = [cli(files["dynamic"], "--input-shape", "x=2,3,5,5", "--print-ir") for _ in range(2)]
    for r in runs:
        assert r.returncode == 0 and r.stderr == "", r.stderr
    assert runs[0].stdout == runs[1].stdout
    graph = import_model(files["dynamic"], {"x": (2, 3, 5, 5)})
    lines = runs[0].stdout.splitlines()
    op_lines = [ln for ln in lines if " = matrix." in ln or " = digital." in ln]
    assert len(op_lines) == len(graph.ops) == 4
    assert [ln.rsplit("# ", 1)[1] for ln in op_lines] == [o.name for o in graph.ops]
    assert len(lines) == len(graph.ops) + 3  # header, inputs, one per op, outputs
    assert "matrix.conv %x:[2,3,5,5] W[27x8] groups=1 vectors=50 macs=10800" in op_lines[0]


@pytest.mark.parametrize("example", ["digits_cnn", "digits_transformer", "karate_gcn"])
def test_examples_import(example: str, tmp_path: Path) -> None:
    path = EXAMPLES / f"{example}.onnx"
    out = tmp_path / "r.json"
    res = cli(path, "--json", out)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "error" not in res.stderr
    report = json.loads(out.read_text())
    _check_report(report, example)
    assert report["totals"]["matrix_ops"] >= 2
    graph = import_model(path)
    assert [r["name"] for r in report["layers"]] == [o.name for o in graph.ops]
