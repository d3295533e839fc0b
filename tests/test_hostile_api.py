"""Hostile input on the Python API (issue 18): every bad parameter of `compile`, `load_target`,
`import_model`, `CompileOptions`, `SimOptions`, the search and `program.run` raises an
`ImcCompileError` subclass whose message names the parameter, never a TypeError,
AttributeError or ValueError, and nothing bogus is accepted silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import imccompile
from imccompile import CompileOptions, ImcCompileError, ModelImportError, SpecError
from imccompile.errors import UsageError
from imccompile.simulate import SimOptions

ROOT = Path(__file__).resolve().parent.parent
CNN = str(ROOT / "examples" / "digits_cnn.onnx")
DATA = str(ROOT / "examples" / "digits_cnn.npz")


COMPILE_CASES = {
    "model None": (lambda: imccompile.compile(None), ModelImportError, r"^model None: expected a path"),
    "model 1": (lambda: imccompile.compile(1), ModelImportError, r"^model 1: expected a path"),
    "model ''": (lambda: imccompile.compile(""), ModelImportError, r"^model '': expected"),
    "target None": (lambda: imccompile.compile(CNN, target=None), SpecError,
                    r"^target None: expected a bundled target name \(.*pcm, rram, sram\)"),
    "target 1.5": (lambda: imccompile.compile(CNN, target=1.5), SpecError, r"^target 1.5:"),
    "passes 1": (lambda: imccompile.compile(CNN, passes=1), UsageError,
                 r"^passes 1: expected a pipeline text"),
    "seeds '3'": (lambda: imccompile.compile(CNN, seeds="3"), UsageError,
                  r"^--seeds '3': expected an integer in 1\.\.1000"),
    "seeds True": (lambda: imccompile.compile(CNN, seeds=True), UsageError, r"^--seeds True"),
    "threads 0": (lambda: imccompile.compile(CNN, threads=0), UsageError,
                  r"^--threads 0: expected an integer in 1\.\.256"),
    "threads 257": (lambda: imccompile.compile(CNN, threads=257), UsageError, r"^--threads 257"),
    "threads '2'": (lambda: CompileOptions(threads="2"), UsageError, r"^--threads '2'"),
    "samples 0": (lambda: imccompile.compile(CNN, samples=0), UsageError,
                  r"^--samples must be >= 1, got 0"),
    "samples 2.5": (lambda: imccompile.compile(CNN, samples=2.5), UsageError,
                    r"^--samples must be >= 1, got 2.5"),
    "overflow bogus": (lambda: imccompile.compile(CNN, overflow="bogus"), UsageError,
                       r"^--overflow bogus: expected one of chips, reload, error"),
    "auto_replicate 'yes'": (lambda: imccompile.compile(CNN, auto_replicate="yes"), UsageError,
                             r"^auto_replicate 'yes': expected True or False"),
    "overrides 5": (lambda: imccompile.compile(CNN, overrides=5), UsageError,
                    r"^overrides 5: expected a list of PATH=VALUE texts"),
    "overrides nan": (lambda: imccompile.compile(CNN, overrides={"adc.bits": float("nan")}),
                      UsageError, r"^overrides adc.bits=nan: expected a JSON value"),
    "input_shapes list": (lambda: imccompile.compile(CNN, input_shapes=[1, 2]), UsageError,
                          r"^input_shapes \[1, 2\]: expected a dict"),
    "input_shapes text": (lambda: imccompile.compile(CNN, input_shapes={"input": "ab"}),
                          UsageError, r"^--input-shape input='ab': expected a sequence"),
    "input_shapes 0": (lambda: imccompile.compile(CNN, input_shapes={"input": (0, 1)}),
                       UsageError, r"^--input-shape input=\(0, 1\): expected positive"),
    "dims text": (lambda: imccompile.compile(CNN, dims={"batch": "a"}), UsageError,
                  r"^--dim batch='a': the size must be a positive integer"),
    "replicate text": (lambda: imccompile.compile(CNN, replicate={"*": "2"}), UsageError,
                       r"^--replicate \*=2: expected a number of copies in 1\.\.65536"),
    "replicate huge": (lambda: imccompile.compile(CNN, replicate={"*": 10**9}), UsageError,
                       r"^--replicate \*=1000000000: expected a number of copies"),
    "metric 1": (lambda: imccompile.compile(CNN, metric=1), UsageError,
                 r"^--metric 1: expected a metric name"),
    "sim_options text": (lambda: imccompile.compile(CNN, sim_options="ideal"), UsageError,
                         r"^sim 'ideal': expected an imccompile.simulate.SimOptions"),
    "data 1": (lambda: imccompile.compile(CNN, data=1), ImcCompileError, r"^1: not a readable"),
}


@pytest.mark.parametrize("case", list(COMPILE_CASES))
def test_compile_parameters(case):
    call, cls, pattern = COMPILE_CASES[case]
    with pytest.raises(cls, match=pattern):
        call()


@pytest.mark.parametrize("kwargs,pattern", [
    ({"adc_range": "bogus"}, r"^SimOptions.adc_range 'bogus' \(--adc-range\): expected "
                             r"calibrated or full_scale"),
    ({"noise": "no"}, r"^SimOptions.noise 'no': expected True or False"),
    ({"act_percentile": 0}, r"^SimOptions.act_percentile 0: expected None or a finite number "
                            r"in \(0, 100\]"),
    ({"act_percentile": 101.0}, r"^SimOptions.act_percentile 101.0"),
    ({"t_inference_s": -1.0}, r"^SimOptions.t_inference_s -1.0: expected None or a finite "
                              r"number >= 0"),
    ({"t_inference_s": float("inf")}, r"^SimOptions.t_inference_s inf"),
])
def test_sim_options_ranges(kwargs, pattern):
    with pytest.raises(UsageError, match=pattern):
        SimOptions(**kwargs)


def test_valid_options_still_build():
    """The checks refuse only what is wrong: numpy integers and lists are the API's loose forms."""
    o = CompileOptions.make(input_shapes={"x": [np.int64(1), 3]}, dims={"b": np.int32(2)},
                            replicate={"*": np.int64(2)}, overrides=None, passes=None,
                            samples=3, seeds=1000)
    assert o.input_shapes == (("x", (1, 3)),) and o.dims == (("b", 2),)
    assert o.replicate == (("*", 2),) and o.overrides == () and o.seeds == 1000
    assert all(type(v) is int for v in (o.dims[0][1], o.replicate[0][1], *o.input_shapes[0][1]))
    assert SimOptions(act_percentile=99.9, t_inference_s=0.0).act_percentile == 99.9


@pytest.mark.parametrize("value,pattern", [
    (None, r"^target None: expected a bundled target name"),
    (1, r"^target 1: expected"),
    ("", r"^target '': expected"),
    ({}, r"^<dict>: name: missing field"),
])
def test_load_target(value, pattern):
    with pytest.raises(SpecError, match=pattern):
        imccompile.load_target(value)


def test_load_target_takes_a_dict_and_bad_overrides_are_named():
    t = imccompile.load_target("pcm")
    assert imccompile.load_target(t.to_dict(), {"adc.bits": 6}).adc.bits == 6
    with pytest.raises(SpecError, match=r"^overrides 7: expected a list of PATH=VALUE"):
        imccompile.load_target("pcm", 7)


@pytest.mark.parametrize("value", [None, 1, b"model.onnx", ""])
def test_import_model(value):
    with pytest.raises(ModelImportError, match=r"^model .*: expected a path to an .onnx file or "
                                               r"an onnx.ModelProto"):
        imccompile.import_model(value)


def test_search_parameters():
    from imccompile.search import SearchConfig, search

    with pytest.raises(UsageError, match=r"^search model None: expected a path"):
        search(SearchConfig.from_options(None, "pcm", DATA, CompileOptions()), 2)
    with pytest.raises(UsageError, match=r"^search target 3: expected a path"):
        search(SearchConfig.from_options(CNN, 3, DATA, CompileOptions()), 2)
    with pytest.raises(UsageError, match=r"^search data 5: expected a path"):
        search(SearchConfig.from_options(CNN, "pcm", 5, CompileOptions()), 2)
    cfg = SearchConfig.from_options(CNN, "pcm", DATA, CompileOptions(samples=3))
    with pytest.raises(UsageError, match=r"^--search needs a number of trials >= 1, got '3'"):
        search(cfg, "3")
    with pytest.raises(UsageError, match=r"^--n-jobs 1.0: expected an integer in 1\.\.256"):
        search(cfg, 2, n_jobs=1.0)
    with pytest.raises(UsageError, match=r"^--search-seed -1"):
        search(SearchConfig.from_options(CNN, "pcm", DATA, CompileOptions(), seed=-1), 2)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    from imccompile import program

    path = tmp_path_factory.mktemp("img") / "p"
    program.write(imccompile.compile(CNN, "pcm"), path)
    return path


@pytest.mark.parametrize("inputs,pattern", [
    ({"input": "abc"}, r"^input 'input': expected numbers \(float32\), got an array of <U3"),
    ({"input": np.full((1, 1, 8, 8), np.nan, np.float32)}, r"^input 'input': holds NaN"),
    ({"input": np.zeros((1, 1, 8, 8)), "zz": 1}, r"^inputs 'zz': not an input of the image "
                                                 r"\(its inputs: input\)"),
    ("abc", r"^inputs str: expected a dict of arrays by input name"),
    ({}, r"^no array for input 'input'"),
    ({"input": np.zeros((1, 8, 8))}, r"^input 'input' has shape \[1, 8, 8\]"),
])
def test_program_run_inputs(image, inputs, pattern):
    from imccompile import program
    from imccompile.program import ProgramError

    with pytest.raises(ProgramError, match=pattern):
        program.run(image, inputs)


def test_program_run_image_type(image):
    from imccompile import program
    from imccompile.program import ProgramError

    with pytest.raises(ProgramError, match=r"^image int: expected a program Image"):
        program.run(1, {})
    out = program.run(image, {"input": np.zeros((1, 1, 8, 8), np.float32)})
    assert next(iter(out.values())).shape == (1, 10)


def test_lower_level_entry_points():
    g = imccompile.import_model(CNN)
    with pytest.raises(UsageError, match=r"^input_shapes 'x': expected a dict"):
        imccompile.import_model(CNN, input_shapes="x")
    with pytest.raises(UsageError, match=r"^--dim a=0: the size must be a positive integer"):
        imccompile.import_model(CNN, dims={"a": 0})
    with pytest.raises(UsageError, match=r"^compile_graph: graph NoneType: expected an imported"):
        imccompile.compile_graph(None, imccompile.load_target("pcm"))
    with pytest.raises(UsageError, match=r"^compile_graph: target str: expected a Target"):
        imccompile.compile_graph(g, "pcm")


@pytest.mark.parametrize("field,value,pattern", [
    ("max_area", "x", r"^--max-area must be a finite number >= 0, got x"),
    ("max_arrays", True, r"^--max-arrays must be a finite number >= 0, got True"),
    ("fix", {"a": 1}, r"^--fix \{'a': 1\}: expected a tuple of \(knob name, value\) pairs"),
    ("space", (("adc.bits",),), r"^--space .*: expected a tuple of \(knob name, value\) pairs"),
    ("objectives", "accuracy", r"^--objectives 'accuracy': expected a tuple of names"),
])
def test_search_config_fields(field, value, pattern):
    from imccompile.search import SearchConfig, search

    cfg = SearchConfig(model=CNN, target="pcm", data=DATA, **{field: value})
    with pytest.raises(UsageError, match=pattern):
        search(cfg, 2)
