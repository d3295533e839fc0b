"""Hostile input on the surfaces beside the model and the spec (issue 18): output paths that
would destroy the user's files, --data contents, labels, options that need --target.

Every CLI case is a real subprocess (`python -m imccompile.cli`): exit 1 with one line naming
the flag / file / value, never a traceback or exit 2, and nothing of the user's lost.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imccompile.errors import ImcCompileError, UsageError
from imccompile.outputs.output import write_folder
from cli_helpers import cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CNN = EXAMPLES / "digits_cnn.onnx"
CNN_DATA = EXAMPLES / "digits_cnn.npz"




def assert_user_error(res: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 1, every fragment in the one-line error message, no traceback."""
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    assert res.stderr.startswith("imccompile: error: "), res.stderr
    assert res.stderr.strip().count("\n") == 0, res.stderr
    for frag in fragments:
        assert frag in res.stderr, (frag, res.stderr)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A user folder holding a model, its data and a spec file."""
    d = tmp_path / "work"
    d.mkdir()
    shutil.copy(CNN, d / "m.onnx")
    shutil.copy(CNN_DATA, d / "d.npz")
    res = cli("targets", "show", "pcm")
    (d / "spec.json").write_text(res.stdout)
    return d


# -- 1. never lose user data -------------------------------------------------------------------
@pytest.mark.parametrize("holds", ["m.onnx", "d.npz", "spec.json"])
@pytest.mark.parametrize("flag", ["-o", "--program"])
def test_force_never_replaces_a_folder_holding_an_input(work: Path, flag: str, holds: str) -> None:
    before = _tree(work)
    model = work / "m.onnx" if holds == "m.onnx" else CNN
    args = [model, "-t", work / "spec.json" if holds == "spec.json" else "pcm"]
    if holds == "d.npz":
        args += ["--data", work / "d.npz", "--samples", "5"]
    res = cli(*args, flag, work, "--force")
    assert_user_error(res, f"{flag} {work}: holds", str(work / holds))
    assert _tree(work) == before


def test_force_never_replaces_a_parent_of_the_input_relative_or_symlinked(work: Path,
                                                                          tmp_path: Path) -> None:
    before = _tree(work)
    link = tmp_path / "link"
    link.symlink_to(work)
    # the folder as a relative path from inside it, and through a symbolic link
    held = "holds the input model"
    assert_user_error(cli("m.onnx", "-t", "pcm", "-o", ".", "--force", cwd=work), held)
    assert_user_error(cli(work / "m.onnx", "-t", "pcm", "-o", link, "--force"), held)
    assert_user_error(cli(link / "m.onnx", "-t", "pcm", "-o", tmp_path, "--force"), held)
    assert _tree(work) == before and link.is_symlink()


def test_force_never_replaces_a_folder_holding_the_space_or_storage(work: Path) -> None:
    (work / "space.json").write_text("{}")
    before = _tree(work)
    assert_user_error(cli(CNN, "-t", "pcm", "--data", CNN_DATA, "--search", "2",
                          "--space", work / "space.json", "-o", work, "--force"),
                      "holds the --space file")
    assert_user_error(cli(CNN, "-t", "pcm", "--data", CNN_DATA, "--search", "2",
                          "--storage", f"sqlite:///{work}/s.db", "-o", work, "--force"),
                      "holds the study storage")
    assert _tree(work) == before


@pytest.mark.parametrize("flag,name", [("--json", "r.json"), ("--emit", "sim.onnx")])
def test_json_or_emit_inside_the_output_folder_is_refused(tmp_path: Path, flag: str,
                                                          name: str) -> None:
    out = tmp_path / "out"
    res = cli(CNN, "-t", "pcm", "--data", CNN_DATA, "--samples", "5", "-o", out,
              flag, out / name, "--force")
    assert_user_error(res, f"{flag} {out / name}: inside -o {out}")
    assert not out.exists()


def test_program_inside_or_equal_to_out_has_the_right_reason(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for prog in (out, out / "program", out / "x" / "y"):
        res = cli(CNN, "-t", "pcm", "-o", out, "--program", prog)
        assert_user_error(res, f"--program {prog}: inside -o {out}", "DIR/program/")
    assert not out.exists()


def test_json_over_the_input_model_is_refused(work: Path) -> None:
    before = _tree(work)
    assert_user_error(cli(work / "m.onnx", "--json", work / "m.onnx"),
                      f"--json {work / 'm.onnx'}: is the input model")
    assert_user_error(cli(work / "m.onnx", "-t", "pcm", "--data", work / "d.npz",
                          "--emit", work / "d.npz"), "is the --data file")
    assert _tree(work) == before


@pytest.mark.parametrize("flag", ["-o", "--json", "--program", "--emit"])
def test_empty_output_path_is_refused(flag: str) -> None:
    args = [CNN, "-t", "pcm", "--data", CNN_DATA, flag, ""]
    assert_user_error(cli(*args), f"{flag} '': an empty path")


@pytest.mark.parametrize("flag", ["-o", "--json", "--program", "--emit"])
def test_too_long_file_name_is_refused_up_front(tmp_path: Path, flag: str) -> None:
    path = tmp_path / ("n" * 300)
    res = cli(CNN, "-t", "pcm", "--data", CNN_DATA, "--samples", "5", flag, path)
    assert_user_error(res, f"{flag} ", "file name too long (300 bytes; at most")
    assert os.listdir(tmp_path) == []


def test_longest_accepted_folder_name_is_written(tmp_path: Path) -> None:
    out = tmp_path / ("n" * (255 - 16))
    res = cli(CNN, "-t", "pcm", "-o", out, "-q")
    assert res.returncode == 0, res.stderr
    assert (out / "report.json").exists()


def test_write_folder_api_refuses_a_folder_holding_a_kept_file(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"model")
    with pytest.raises(UsageError, match=r"holds the input model .*m\.onnx"):
        write_folder(tmp_path, {"a.txt": "x"}, force=True,
                     keep={"the input model": tmp_path / "m.onnx"})
    with pytest.raises(UsageError, match="an empty path"):
        write_folder("", {"a.txt": "x"})
    with pytest.raises(UsageError, match="file name too long"):
        write_folder(tmp_path / ("x" * 300), {"a.txt": "x"})
    assert (tmp_path / "m.onnx").read_bytes() == b"model"


# -- 2. --data contents ------------------------------------------------------------------------
def _token_model(path: Path, rows: int = 10) -> Path:
    """ids (1, 2) int64 -> Gather on a (rows, 4) table -> Flatten -> MatMul (8, 3)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import onnx
    from onnx import TensorProto, helper

    import onnx_builders as b

    rng = np.random.default_rng(0)
    m = b.model([helper.make_node("Gather", ["E", "ids"], ["e"]),
                 helper.make_node("Flatten", ["e"], ["f"]),
                 helper.make_node("MatMul", ["f", "W"], ["y"])],
                [b.vi("ids", [1, 2], TensorProto.INT64)], [b.vi("y", [1, 3])],
                [b.init("E", rng.standard_normal((rows, 4)).astype(np.float32)),
                 b.init("W", rng.standard_normal((8, 3)).astype(np.float32))])
    onnx.save(m, str(path))
    return path


def _cnn_data(tmp_path: Path, name: str = "d.npz", **arrays: np.ndarray) -> Path:
    base = dict(np.load(CNN_DATA))
    base = {"input": base["input"][:8], "labels": base["labels"][:8]}
    base.update(arrays)
    for k in [k for k, v in base.items() if v is None]:
        del base[k]
    path = tmp_path / name
    np.savez(path, **base)
    return path


@pytest.mark.parametrize("value,fragment", [
    (np.array([["a"] * 64] * 8).reshape(8, 1, 8, 8), "dtype <U1 (text)"),
    (np.zeros((8, 1, 8, 8), "datetime64[s]"), "(dates)"),
    (np.zeros((8, 1, 8, 8), np.complex64), "(complex numbers)"),
])
def test_non_numeric_data_is_refused(tmp_path: Path, value: np.ndarray, fragment: str) -> None:
    res = cli(CNN, "-t", "pcm", "--data", _cnn_data(tmp_path, input=value))
    assert_user_error(res, "array 'input' has dtype", fragment, "accepted: real numbers")


def test_empty_data_and_zero_samples_are_refused(tmp_path: Path) -> None:
    res = cli(CNN, "-t", "pcm", "--data",
              _cnn_data(tmp_path, input=np.zeros((0, 1, 8, 8), np.float32), labels=None))
    assert_user_error(res, "array 'input' holds 0 samples", "give at least one")


def test_unknown_extra_key_is_refused_listing_the_inputs(tmp_path: Path) -> None:
    res = cli(CNN, "-t", "pcm", "--data", _cnn_data(tmp_path, lables=np.zeros(8, np.int64)))
    assert_user_error(res, "unknown array(s) 'lables'", "the model's inputs 'input'", "'labels'")


def test_mismatched_sample_counts_are_still_refused(tmp_path: Path) -> None:
    import imccompile

    graph = imccompile.import_model(str(CNN))
    from imccompile.simulate import load_data

    graph2 = graph.replace(inputs=("input", "input2"),
                           tensors={**graph.tensors, "input2": graph.tensors["input"]})
    data = {"input": np.zeros((3, 1, 8, 8), np.float32),
            "input2": np.zeros((4, 1, 8, 8), np.float32)}
    with pytest.raises(ImcCompileError, match="different numbers of samples: input=3, input2=4"):
        load_data(data, graph2)


def test_fractional_token_ids_are_refused(tmp_path: Path) -> None:
    model = _token_model(tmp_path / "tok.onnx")
    np.savez(tmp_path / "t.npz", ids=np.array([[[1.0, 2.5]]]))
    assert_user_error(cli(model, "-t", "pcm", "--data", tmp_path / "t.npz"),
                      "array 'ids' holds fractional values (e.g. 2.5)", "int64")
    np.savez(tmp_path / "w.npz", ids=np.array([[[1.0, 2.0]]]))  # whole floats are fine
    res = cli(model, "-t", "pcm", "--data", tmp_path / "w.npz", "--ideal", "-q")
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("bad", [10, 12345, -11])
def test_token_ids_outside_the_table_are_refused(tmp_path: Path, bad: int) -> None:
    model = _token_model(tmp_path / "tok.onnx", rows=10)
    np.savez(tmp_path / "t.npz", ids=np.array([[[1, bad]], [[0, 9]]], np.int64))
    assert_user_error(cli(model, "-t", "pcm", "--data", tmp_path / "t.npz"),
                      f"array 'ids' holds id {bad}", "10 rows", "0..9")


def test_token_ids_in_range_and_negative_from_the_end_run(tmp_path: Path) -> None:
    model = _token_model(tmp_path / "tok.onnx", rows=10)
    np.savez(tmp_path / "t.npz", ids=np.array([[[0, 9]], [[-10, -1]]], np.int64))
    res = cli(model, "-t", "pcm", "--data", tmp_path / "t.npz", "--ideal", "-q")
    assert res.returncode == 0, res.stderr


def test_data_checks_apply_to_the_python_api(tmp_path: Path) -> None:
    import imccompile

    model = _token_model(tmp_path / "tok.onnx", rows=10)
    with pytest.raises(ImcCompileError, match="holds id 99, outside the table"):
        imccompile.compile(str(model), "pcm", data={"ids": np.array([[99, 0]], np.int64)})
    with pytest.raises(ImcCompileError, match="unknown array"):
        imccompile.compile(str(model), "pcm", data={"ids": np.array([[1, 0]]), "idz": 1})
    with pytest.raises(ImcCompileError, match=r"dtype object"):
        imccompile.compile(str(model), "pcm", data={"ids": np.array([[1, None]], object)})


# -- 3. labels ---------------------------------------------------------------------------------
@pytest.mark.parametrize("labels,fragment", [
    (np.full(8, 10), "'labels' holds 10, outside the 10 classes"),
    (np.full(8, -1), "'labels' holds -1, outside the 10 classes"),
    (np.full(8, 1.5), "'labels' holds 1.5; accepted: integer class ids 0..9"),
    (np.full(8, np.nan), "'labels' holds nan"),
    (np.array(["cat"] * 8), "'labels' has dtype <U3 (text)"),
    (np.zeros(7, np.int64), "'labels' holds 7 values for 8 sample(s)"),
    (np.zeros(8, bool), "booleans"),
])
def test_bad_labels_are_refused(tmp_path: Path, labels: np.ndarray, fragment: str) -> None:
    res = cli(CNN, "-t", "pcm", "--data", _cnn_data(tmp_path, labels=labels))
    assert_user_error(res, fragment)


def test_whole_float_labels_are_accepted(tmp_path: Path) -> None:
    lab = np.load(CNN_DATA)["labels"][:8].astype(np.float64)
    res = cli(CNN, "-t", "pcm", "--data", _cnn_data(tmp_path, labels=lab), "--ideal", "--json", "-")
    assert res.returncode == 0, res.stderr
    import json

    assert json.loads(res.stdout)["accuracy"]["metric"] == "top1"


def test_labels_for_an_output_that_is_not_class_scores_are_refused(tmp_path: Path) -> None:
    model = tmp_path / "reg.onnx"
    sys.path.insert(0, str(Path(__file__).parent))
    import onnx

    import onnx_builders as b

    w = np.random.default_rng(0).standard_normal((4, 1)).astype(np.float32)
    onnx.save(b.gemm_model([2, 4], w), str(model))  # one value per row: a regression
    np.savez(tmp_path / "r.npz", **{onnx.load(str(model)).graph.input[0].name:
                                    np.zeros((3, 2, 4), np.float32)}, labels=np.zeros(6))
    assert_user_error(cli(model, "-t", "pcm", "--data", tmp_path / "r.npz"),
                      "'labels' given, but the first output", "holds no class scores")


# -- 4. options that need --target -------------------------------------------------------------
@pytest.mark.parametrize("args", [["--data", str(CNN_DATA)], ["--emit", "x.onnx"], ["-o", "out"],
                                  ["--search", "3"], ["--from-trial", "0"],
                                  ["--space", "s.json"], ["--fix", "adc_bits=4"]])
def test_options_that_need_a_target_are_refused_without_it(tmp_path: Path,
                                                           args: list[str]) -> None:
    res = cli(CNN, *args, cwd=tmp_path)
    assert_user_error(res, f"{args[0]} needs a --target")
    assert os.listdir(tmp_path) == []
