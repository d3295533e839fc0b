"""One compile driver: a search trial compiles exactly as a single compile with the same flags.

For every compile flag, trial 0 of a 2-trial search (stored values) is checked against the single
compile of the command line with the same flags and the trial's pipeline and overrides (the
independent reference), and the flag is checked to change that compile (so the comparison can
fail). A study resumed, or a trial re-created, with another value is refused naming the flag.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import onnx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_helpers import DATA, MODEL, load  # noqa: E402

import imccompile  # noqa: E402
from imccompile.cli import main  # noqa: E402
from imccompile.outputs import build_report  # noqa: E402

SAMPLES = "20"
SMALL_CHIP = ["--set", "hierarchy.tiles_per_chip=1", "--set", "hierarchy.cores_per_tile=1",
              "--set", "hierarchy.arrays_per_core=2"]


def _dynamic_model(path: Path) -> Path:
    m = onnx.load(str(MODEL))
    dim = m.graph.input[0].type.tensor_type.shape.dim[0]
    dim.ClearField("dim_value")
    dim.dim_param = "N"
    onnx.save(m, str(path))
    return path


# name -> (flags, flags of the compile it must differ from or None, other value on resume)
CASES = {
    "bit-accurate": (["--bit-accurate"], [], []),
    "adc-range": (["--adc-range", "full_scale"], [], ["--adc-range", "calibrated"]),
    "replicate": (["--replicate", "*=3"], [], ["--replicate", "*=2"]),
    "auto-replicate": (["--auto-replicate"], [], []),
    "overflow": (["--overflow", "reload", *SMALL_CHIP], SMALL_CHIP,
                 ["--overflow", "chips", *SMALL_CHIP]),
    "input-shape": (["--input-shape", "input=1,1,8,8"], None, []),  # without: no static shape
    "samples": (["--samples", "12"], ["--samples", SAMPLES], ["--samples", "13"]),
    "ideal": (["--ideal"], [], []),
}


def _cli(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _model_for(case: str, tmp: Path) -> Path:
    return _dynamic_model(tmp / "dynamic.onnx") if case == "input-shape" else MODEL


def _common(model: Path) -> list[str]:
    return [str(model), "--target", "pcm", "--data", str(DATA), "--samples", SAMPLES, "-q"]


def _numbers(report: dict) -> dict[str, float]:
    t, a = report["totals"], report["accuracy"]
    return {"energy": t["energy_j"], "latency": t["latency_s"], "area": t["area_mm2"],
            "arrays": float(t["arrays"]), "accuracy": a["mean"],
            "relative_error": a["relative_error"]}


def _single(capsys, tmp: Path, model: Path, flags: list[str], trial: dict) -> dict[str, float]:
    out = tmp / f"single-{len(list(tmp.iterdir()))}.json"
    sets = [x for o in trial["overrides"] for x in ("--set", o)]
    code, err = _cli(capsys, *_common(model), *flags, "--passes", trial["pipeline"], *sets,
                     "--json", out)
    assert code == 0, err
    return _numbers(json.loads(out.read_text()))


@pytest.fixture(scope="module", params=list(CASES))
def study(request, tmp_path_factory):
    """(case, tmp dir, model, storage, trial 0 as stored) for a 2-trial search with the flag."""
    case = request.param
    tmp = tmp_path_factory.mktemp(case)
    model = _model_for(case, tmp)
    storage = f"sqlite:///{tmp / 'study.db'}"
    flags = CASES[case][0]
    code = main([*_common(model), *flags, "--search", "2", "--storage", storage,
                 "--study", "s"])
    assert code == 0
    t0 = next(t for t in load(storage, "s").trials if t.number == 0)
    trial = {k: t0.user_attrs[k] for k in ("pipeline", "overrides", "auto_replicate", "values")}
    return case, tmp, model, storage, trial


def test_trial_zero_equals_the_single_compile_with_the_same_flags(study, capsys):
    case, tmp, model, _, trial = study
    flags, base, _ = CASES[case]
    # trial 0 is the target's default point: it auto-replicates only when the flag says so
    assert trial["auto_replicate"] == ("--auto-replicate" in flags)
    single = _single(capsys, tmp, model, flags, trial)
    stored = trial["values"]
    for k, v in single.items():  # fixed seeds: equal, not merely close
        assert stored[k] == v, (case, k, stored[k], v)
    if base is not None:  # the flag changes the compile, so the equality above means something
        other = _single(capsys, tmp, model, base, trial)
        assert other != single, (case, "the flag changed nothing")


def _flag_name(case: str) -> str:
    return f"--{case}"


def test_resume_with_another_value_is_refused_naming_the_flag(study, capsys):
    case, _, model, storage, _ = study
    before = [t.values for t in load(storage, "s").trials]
    code, err = _cli(capsys, *_common(model), *CASES[case][2], "--search", "3", "--storage",
                     storage, "--study", "s")
    assert code == 1, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("imccompile: error: study 's'"), err
    assert _flag_name(case) in lines[0], lines[0]
    assert "made with" in lines[0] and "this run has" in lines[0]
    assert [t.values for t in load(storage, "s").trials] == before


def test_from_trial_with_other_settings_is_refused(study, capsys):
    case, _, model, storage, _ = study
    code, err = _cli(capsys, *_common(model), *CASES[case][2], "--from-trial", "0",
                     "--storage", storage, "--study", "s")
    assert code == 1, err
    assert err.startswith("imccompile: error: ") and _flag_name(case) in err, err
    flags = CASES[case][0]
    code, err = _cli(capsys, *_common(model), *flags, "--target", "rram", "--from-trial", "0",
                     "--storage", storage, "--study", "s")
    assert code == 1 and "--target pcm" in err and "--target rram" in err, err
    code, err = _cli(capsys, *_common(model), *flags, "--from-trial", "0", "--storage", storage,
                     "--study", "s")
    assert code == 0, err


def test_the_refusal_message_names_old_and_new_values(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'x.db'}"
    code, err = _cli(capsys, *_common(MODEL), "--adc-range", "calibrated", "--search", "1",
                     "--storage", storage, "--study", "x")
    assert code == 0, err
    code, err = _cli(capsys, *_common(MODEL), "--adc-range", "full_scale", "--bit-accurate",
                     "--search", "1", "--storage", storage, "--study", "x")
    assert code == 1
    assert "made with --adc-range calibrated, no --bit-accurate; this run has --adc-range " \
           "full_scale, --bit-accurate" in err, err


def test_a_target_object_takes_overrides_like_a_target_name():
    by_name = imccompile.compile(MODEL, "pcm", overrides=["adc.bits=6"])
    by_object = imccompile.compile(MODEL, imccompile.load_target("pcm"), overrides=["adc.bits=6"])
    as_dict = imccompile.compile(MODEL, imccompile.load_target("pcm"), overrides={"adc.bits": 6})
    plain = imccompile.compile(MODEL, "pcm")
    assert by_name.target.adc.bits == by_object.target.adc.bits == 6 != plain.target.adc.bits
    assert build_report(by_object) == build_report(by_name) == build_report(as_dict)
    assert build_report(plain)["totals"] != build_report(by_name)["totals"]


def test_compile_takes_an_options_object_or_keywords_not_both():
    opts = imccompile.CompileOptions.make(overrides=["adc.bits=6"], replicate={"*": 2})
    a = imccompile.compile(MODEL, "pcm", opts)
    b = imccompile.compile(MODEL, "pcm", overrides=["adc.bits=6"], replicate={"*": 2})
    assert build_report(a) == build_report(b)
    assert a.options == b.options == opts
    with pytest.raises(imccompile.ImcCompileError, match="not both"):
        imccompile.compile(MODEL, "pcm", opts, seeds=2)
    with pytest.raises(imccompile.ImcCompileError, match="--set adc.bits"):
        imccompile.CompileOptions.make(overrides=["adc.bits"])
