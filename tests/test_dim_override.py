"""``--dim NAME=VALUE``: symbolic dims set by name in every input (issue 15, item 8).

onnxruntime's free-dimension overrides, beside --input-shape: the CLI (subprocess runs, exit
codes and messages), the Python API (``compile(..., dims=...)`` through CompileOptions) and the
search study's stored settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_builders as ob  # noqa: E402
from test_cli_import import assert_user_error, cli  # noqa: E402

import imccompile  # noqa: E402
from imccompile.errors import UsageError  # noqa: E402
from imccompile.options import CompileOptions  # noqa: E402
from imccompile.search import SearchConfig, _flag_text  # noqa: E402


def _two_inputs() -> onnx.ModelProto:
    """x [batch, seq, 8] @ W [8, 4] + m [batch, seq, 4]: two inputs sharing batch and seq."""
    w = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="proj"),
             helper.make_node("Add", ["h", "m"], ["y"], name="add")]
    return ob.model(nodes, [ob.vi("x", ("batch", "seq", 8)), ob.vi("m", ("batch", "seq", 4))],
                    [ob.vi("y", ("batch", "seq", 4))], [ob.init("W", w)])


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("dim") / "two.onnx"
    onnx.save(_two_inputs(), str(p))
    return p


def test_cli_dim_sets_every_input(model_path: Path) -> None:
    res = cli(model_path, "--dim", "batch=2", "--dim", "seq=16", "--json", "-")
    assert res.returncode == 0, res.stderr
    import json

    report = json.loads(res.stdout)
    (layer,) = [r for r in report["layers"] if r["name"] == "proj"]
    assert layer["macs"] == 2 * 16 * 8 * 4  # batch x seq tokens x K x N, by hand


def test_cli_dim_beside_input_shape(model_path: Path) -> None:
    # --input-shape gives x; --dim sets m (and would set x, which --input-shape wins for)
    res = cli(model_path, "--input-shape", "x=1,5,8", "--dim", "batch=1", "--dim", "seq=5",
              "--json", "-")
    assert res.returncode == 0, res.stderr


def test_refusal_suggests_dim_for_shared_names(model_path: Path) -> None:
    assert_user_error(cli(model_path), "input 'x' has dynamic shape [batch,seq,8]",
                      "input 'm' has dynamic shape [batch,seq,4]",
                      "--dim batch=1 --dim seq=128")


@pytest.mark.parametrize("flag,fragments", [
    ("batch=x", ["--dim 'batch=x'", "positive integer", "'x'"]),
    ("batch=1.5", ["--dim 'batch=1.5'", "positive integer"]),
    ("batch=0", ["--dim 'batch=0'", "positive integer, got 0"]),
    ("seq=-3", ["--dim 'seq=-3'", "positive integer, got -3"]),
    ("=4", ["--dim '=4'", "expected NAME=VALUE"]),
    ("batch", ["--dim 'batch'", "expected NAME=VALUE"]),
    ("tokens=4", ["--dim tokens=4", "no input has a dimension named 'tokens'",
                  "batch, seq"]),
])
def test_cli_bad_dim_is_a_clear_error(model_path: Path, flag: str, fragments: list[str]) -> None:
    assert_user_error(cli(model_path, "--dim", flag), *fragments)


def test_api_dims_and_options() -> None:
    res = imccompile.compile(_two_inputs(), "pcm", dims={"batch": 1, "seq": 3})
    (op,) = res.graph.matrix_ops
    assert op.macs == 3 * 8 * 4
    assert res.options.dims == (("batch", 1), ("seq", 3))
    with pytest.raises(UsageError, match=r"--dim batch=0: the size must be a positive integer"):
        CompileOptions.make(dims={"batch": 0})
    with pytest.raises(UsageError, match=r"--dim seq=True"):
        CompileOptions.make(dims={"seq": True})
    with pytest.raises(imccompile.ImcCompileError, match=r"no input has a dimension named 'n'"):
        imccompile.compile(_two_inputs(), "pcm", dims={"n": 1})


def test_search_study_stores_dims() -> None:
    opts = CompileOptions.make(dims={"batch": 1, "seq": 8})
    cfg = SearchConfig.from_options("m.onnx", "pcm", None, opts, objectives=("energy",))
    assert cfg.compile_options().dims == opts.dims  # every trial imports with them
    assert cfg.settings()["dims"] == [["batch", 1], ["seq", 8]]
    assert _flag_text("dims", cfg.settings()["dims"]) == "--dim batch=1 --dim seq=8"
    other = SearchConfig.from_options("m.onnx", "pcm", None, CompileOptions(),
                                      objectives=("energy",))
    assert ("--dim batch=1 --dim seq=8", "no --dim") in other.differences(cfg.key())
