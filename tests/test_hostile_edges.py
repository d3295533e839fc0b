"""Hostile input, part 2 (issue 18): endless files, numbers at their edges, bounds checked before
the work, user strings printed as written, and the search's own inputs (--space, --fix,
--search-seed). Every case: exit 0 with a checked answer, or exit 1 with one line naming the
flag / field / value and what is accepted; never exit 2, never a hang.

The CLI runs in-process (`imccompile.cli.main`, as a user's run minus the interpreter start).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from imccompile.cli import main
from imccompile.options import MAX_COPIES, MAX_SEEDS
from imccompile.search import MAX_SEARCH_SEED

ROOT = Path(__file__).resolve().parent.parent
CNN = str(ROOT / "examples" / "digits_cnn.onnx")
CNN_DATA = ROOT / "examples" / "digits_cnn.npz"


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def user_error(capsys, *args) -> str:
    """Run; assert exit 1 with one clean line; return it."""
    code, out, err = run(capsys, *args)
    assert code == 1, (code, err)
    assert err.startswith("imccompile: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    return err


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """Four samples of the digits data, with labels."""
    d = dict(np.load(CNN_DATA))
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, **{k: v[:4] for k, v in d.items()})
    return path


# -- endless / huge files are refused without being read whole ------------------------------
@pytest.mark.parametrize("flag", ["--target", "--space", "model"])
def test_dev_zero_is_refused_quickly(capsys, small, flag):
    t0 = time.monotonic()
    if flag == "model":
        err = user_error(capsys, "/dev/zero", "-t", "pcm")
        assert "/dev/zero: not a regular file" in err
    elif flag == "--target":
        err = user_error(capsys, CNN, "-t", "/dev/zero")
        assert "/dev/zero: larger than 16 MiB" in err and "expected a JSON file" in err
    else:
        err = user_error(capsys, CNN, "-t", "pcm", "--data", small, "--search", "2",
                         "--space", "/dev/zero")
        assert "--space /dev/zero: larger than 16 MiB" in err
    assert time.monotonic() - t0 < 30  # bounded: 16 MiB read at most


def test_size_bound_is_the_only_limit_on_a_spec_file(tmp_path):
    """Mutation guard of the bound itself: a file one byte over refused, at the bound read."""
    from imccompile.errors import SpecError
    from imccompile.userfile import read_text

    f = tmp_path / "big.json"
    f.write_bytes(b" " * 1000)
    assert read_text(f, "big", SpecError, limit=1000) == " " * 1000
    with pytest.raises(SpecError, match=r"^big: larger than"):
        read_text(f, "big", SpecError, limit=999)


# -- numbers at their edges -------------------------------------------------------------------
@pytest.mark.parametrize("sets", [
    ["search.adc_bits=[1,8]", "adc.bits=1"],
    ["search.input_bits=[1,8]", "precision.input_bits=1", "dac.bits=1"],
    ["search.weight_bits=[1,8]", "precision.weight_bits=1"],
], ids=["adc1", "input1", "weight1"])
@pytest.mark.parametrize("bit_accurate", [False, True], ids=["fast", "bit-accurate"])
def test_one_bit_converters_work_with_data(capsys, small, sets, bit_accurate):
    """1-bit ADC / DAC / weights (once the target's search lists allow them): a finite accuracy
    in [0, 1], no ZeroDivisionError."""
    args = [CNN, "-t", "pcm", "--data", small, "--json", "-", "-q"]
    for s in sets:
        args += ["--set", s]
    if bit_accurate:
        args.append("--bit-accurate")
    code, out, err = run(capsys, *args)
    assert code == 0, err
    acc = json.loads(out)["accuracy"]
    assert 0.0 <= acc["mean"] <= 1.0 and acc["samples"] == 4


def test_one_bit_not_in_the_targets_list_is_refused_with_the_reason(capsys):
    err = user_error(capsys, CNN, "-t", "pcm", "--set", "adc.bits=1")
    assert "adc.bits" in err and "search.adc_bits" in err and "got 1" in err


def test_one_bit_activations_with_data(capsys, small):
    code, out, err = run(capsys, CNN, "-t", "pcm", "--passes", "quantize{act_bits=1}",
                         "--data", small, "--json", "-", "-q")
    assert code == 0, err
    assert 0.0 <= json.loads(out)["accuracy"]["mean"] <= 1.0


def test_clock_of_one_hertz_does_not_crash(capsys):
    code, out, err = run(capsys, CNN, "-t", "pcm", "--set", "technology.clock_hz=1",
                         "--json", "-", "-q")
    assert code == 0, err
    assert json.loads(out)["totals"]["latency_s"] > 0


@pytest.mark.parametrize("flag,value,bound", [
    ("--seeds", "10000", f"1..{MAX_SEEDS}"), ("--seeds", "0", f"1..{MAX_SEEDS}"),
    ("--replicate", "/features/features.0/Conv=1000000000", f"1..{MAX_COPIES}"),
])
def test_counts_are_bounded_before_the_work(capsys, small, flag, value, bound):
    t0 = time.monotonic()
    err = user_error(capsys, CNN, "-t", "pcm", "--data", small, flag, value)
    assert f"{flag} {value.split('=')[0]}" in err and bound in err
    assert time.monotonic() - t0 < 20


def _dynamic_model(path: Path, inputs: dict[str, list]) -> str:
    """x: [N, 16] -> MatMul; more inputs added to the output (same shapes)."""
    w = numpy_helper.from_array(np.ones((16, 4), np.float32), "W")
    names = list(inputs)
    nodes = [helper.make_node("MatMul", [names[0], "W"], ["y0"])]
    last = "y0"
    for i, other in enumerate(names[1:]):
        nodes.append(helper.make_node("MatMul", [other, "W"], [f"m{i}"]))
        nodes.append(helper.make_node("Add", [last, f"m{i}"], [f"s{i}"]))
        last = f"s{i}"
    g = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info(n, TensorProto.FLOAT, d)
                                         for n, d in inputs.items()],
                          [helper.make_tensor_value_info(last, TensorProto.FLOAT, None)], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


@pytest.mark.parametrize("flag,value", [("--input-shape", "x=1000000000,16"),
                                        ("--dim", "N=1000000000")])
def test_huge_input_dims_are_refused_by_a_memory_estimate(capsys, tmp_path, monkeypatch, flag,
                                                          value):
    monkeypatch.setenv("IMCCOMPILE_MEMORY_LIMIT", "4G")
    model = _dynamic_model(tmp_path / "dyn.onnx", {"x": ["N", 16]})
    t0 = time.monotonic()
    err = user_error(capsys, model, "-t", "pcm", flag, value)
    # 1e9 x 16 float32 = 64e9 bytes = 59.6 GiB, over the 4 GiB allowed
    assert "one sample of the inputs takes 59.6 GiB" in err and "only 4.0 GiB" in err
    assert "input 'x'" in err and "--input-shape / --dim" in err
    assert time.monotonic() - t0 < 20
    code, _, err = run(capsys, model, "-t", "pcm", flag, value.replace("1000000000", "1000"),
                       "-q")
    assert code == 0, err


def test_inputs_with_mismatched_sequence_lengths_are_refused(capsys, tmp_path):
    model = _dynamic_model(tmp_path / "two.onnx", {"a": ["seq", 16], "b": ["seq", 16]})
    data = tmp_path / "d.npz"
    np.savez(data, a=np.ones((3, 8, 16), np.float32), b=np.ones((3, 6, 16), np.float32))
    err = user_error(capsys, model, "-t", "pcm", "--dim", "seq=8", "--data", data)
    assert "array 'b' has shape [3, 6, 16]" in err and "[8, 16]" in err


# -- user strings printed as written ----------------------------------------------------------
def test_markup_in_a_study_name_is_printed_as_written(capsys, small):
    code, out, err = run(capsys, CNN, "-t", "pcm", "--data", small, "--search", "2",
                         "--study", "[/x][bold]s")
    assert code == 0, err
    assert "Pareto front of study [/x][bold]s" in out


def test_markup_in_a_warning_is_printed_as_written(capsys):
    from imccompile.outputs.display import Console

    Console().warn("layer [/x] [red]odd")
    assert "warning: layer [/x] [red]odd" in capsys.readouterr().err


def test_search_json_on_stdout_is_only_json(capsys, small):
    code, out, err = run(capsys, CNN, "-t", "pcm", "--data", small, "--search", "2",
                         "--json", "-")
    assert code == 0, err
    assert json.loads(out)["search"]["trials"]  # the whole of stdout is the report
    assert "Pareto front" in err  # the table went to stderr


# -- the search's own inputs ------------------------------------------------------------------
@pytest.mark.parametrize("space,expected", [
    ({"prune": {"low": 0, "high": 0.5, "step": 0}}, "step: expected a number > 0"),
    ({"prune": {"low": 0, "high": 0.5, "step": -0.1}}, "step: expected a number > 0"),
    ({"prune": {"low": 0, "high": 0.5, "step": 2}}, "at most high - low (0.5), got 2"),
    ({"prune": {"low": "a", "high": 0.5}}, 'low: expected a finite number, got "a"'),
    ({"prune": {"low": 0, "high": None}}, "high: expected a finite number, got null"),
    ({"prune": {"low": 0, "high": True}}, "high: expected a finite number, got true"),
    ({"prune": [0.1]}, 'expected {"low": x, "high": y, "step": s}'),
    ({"adc.bits": {"low": 4, "high": 8, "step": 0}},
     'expected a non-empty list of choices from [4, 5, 6, 7, 8, 9, 10], got {"low": 4'),
    ({"adc.bits": [None, 8]}, "adc.bits must be one of"),
    ({"adc.bits": "6"}, 'got "6"'),
])
def test_bad_space_files_name_the_knob(capsys, tmp_path, small, space, expected):
    f = tmp_path / "space.json"
    f.write_text(json.dumps(space))
    err = user_error(capsys, CNN, "-t", "pcm", "--data", small, "--search", "2", "--space", f)
    knob = next(iter(space))
    assert f"--space {knob}" in err and expected in err


@pytest.mark.parametrize("fix,space", [("adc.bits=8", {"adc.bits": [4, 6]}),
                                       ("prune=0", {"prune": {"high": 0.5}}),
                                       ("weight_bits=4", {"weight_bits": [4, 8]})])
def test_fix_conflicting_with_space_is_refused(capsys, tmp_path, small, fix, space):
    f = tmp_path / "space.json"
    f.write_text(json.dumps(space))
    err = user_error(capsys, CNN, "-t", "pcm", "--data", small, "--search", "2", "--space", f,
                     "--fix", fix)
    assert f"pinned by --fix {fix}" in err and "not both" in err


@pytest.mark.parametrize("seed", ["-1", str(MAX_SEARCH_SEED + 1), "99999999999999999999"])
def test_search_seed_out_of_range(capsys, small, seed):
    err = user_error(capsys, CNN, "-t", "pcm", "--data", small, "--search", "2",
                     "--search-seed", seed)
    assert f"--search-seed {seed}: expected an integer in 0..{MAX_SEARCH_SEED}" in err
    assert "--storage" not in err


@pytest.mark.parametrize("jobs", ["0", "100000"])
def test_n_jobs_out_of_range(capsys, small, jobs):
    err = user_error(capsys, CNN, "-t", "pcm", "--data", small, "--search", "2",
                     "--n-jobs", jobs)
    assert f"--n-jobs {jobs}: expected an integer in 1..256" in err


def test_control_characters_of_user_strings_are_shown_escaped(capsys, tmp_path):
    """An ESC or carriage return in a file name (or a study, layer, spec name) cannot drive the
    terminal: the error line and the tables show it escaped."""
    err = user_error(capsys, tmp_path / "a\x1b[2Jb\rc.onnx", "-t", "pcm")
    assert "a\\x1b[2Jb\\rc.onnx: no such file" in err and "\x1b" not in err
    from rich.table import Table

    from imccompile.outputs.display import Console

    t = Table(title="study \x1b[31m[/x]")
    t.add_column("knobs")
    t.add_row("layer\r[bold]")
    Console().out.print(t)
    out = capsys.readouterr().out
    assert "\\x1b[31m[/x]" in out and "layer\\r[bold]" in out and "\x1b" not in out


def test_pruning_everything_is_a_defined_result(capsys):
    """prune{ratio=1.0}: every weight zero, no arrays, a warning; each layer outputs its bias, so
    the logits are the last layer's bias and top1 is the share of labels equal to its argmax."""
    code, out, err = run(capsys, CNN, "-t", "pcm", "--passes", "prune{ratio=1.0}", "--data",
                         CNN_DATA, "--samples", "50", "--json", "-", "-q")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["totals"]["arrays"] == 0
    assert any("hold no nonzero weight" in w for w in rep["warnings"]), rep["warnings"]
    model = onnx.load(CNN)
    last = [n for n in model.graph.node if n.op_type == "Gemm"][-1]
    bias = next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == last.input[2])
    labels = np.load(CNN_DATA)["labels"][:50]
    assert rep["accuracy"]["metric"] == "top1"
    expected = np.mean(labels == np.argmax(bias))
    assert expected == pytest.approx(0.1)  # 5 of the first 50 digits are 9s, the bias's argmax
    assert rep["accuracy"]["mean"] == pytest.approx(expected)


def test_replicate_pattern_matching_no_layer_is_refused(capsys):
    err = user_error(capsys, CNN, "-t", "pcm", "--replicate", "conv1=2")
    assert "replicate 'conv1': matches no crossbar layer" in err
    assert "/features/features.0/Conv" in err
    code, _, err = run(capsys, CNN, "-t", "pcm", "--replicate", "*Conv=2", "-q")
    assert code == 0, err
