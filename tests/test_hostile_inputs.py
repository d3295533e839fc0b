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

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CNN = EXAMPLES / "digits_cnn.onnx"
CNN_DATA = EXAMPLES / "digits_cnn.npz"


def cli(*args: str | os.PathLike[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "imccompile.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


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
