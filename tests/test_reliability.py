"""Reliability: big models within bounded memory, refusal of models that do not fit, byte-identical
reports for identical commands, sane numbers over every example x target x a few overrides, and
output folders that are never left half-written.

The big-model tests generate a >= 100M-weight BERT-style model with external weights (about 5 s)
and run the CLI in a child process whose peak resident memory (VmHWM) is read from
/proc/self/status; they skip where /proc or the memory / disk for them is missing.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_fuzz import report_problems, run_cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MODELS = ["digits_cnn", "digits_transformer", "karate_gcn"]
TARGETS = ["pcm", "rram", "sram"]

# A child that runs the CLI and reports its exit code, peak memory and time as the last line.
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from imccompile.cli import main
code = main(sys.argv[1:])
status = open("/proc/self/status").read().splitlines()
hwm = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
print(json.dumps({"code": code, "vmhwm_kb": hwm, "seconds": time.perf_counter() - t0}))
"""


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", PYTHONWARNINGS="ignore")
    env.pop("IMCCOMPILE_MEMORY_LIMIT", None)
    env.update(extra)
    return env


def run_child(argv: list, timeout: float = 120, **env: str) -> tuple[dict, str]:
    res = subprocess.run([sys.executable, "-c", CHILD, *map(str, argv)], capture_output=True,
                         text=True, timeout=timeout, check=False, env=child_env(**env))
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1]), res.stderr


def mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ----------------------------------------------------------------------------- big models

BIG = {"d": 1536, "layers": 4, "heads": 12, "seq": 16, "ff": 6144}  # 113,249,280 weights


@pytest.fixture(scope="module")
def big_model(tmp_path_factory) -> tuple[Path, int]:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc for peak memory")
    if mem_available() < 3 * 2**30:
        pytest.skip("needs 3 GiB of free memory to generate the big model")
    folder = tmp_path_factory.mktemp("big")
    if shutil.disk_usage(folder).free < 2 * 2**30:
        pytest.skip("needs 2 GiB of free disk")
    spec = importlib.util.spec_from_file_location("bench_models", ROOT / "benchmarks" / "models.py")
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)
    model, weights = models.bert(**BIG)
    path = models.save(model, folder / "bert_big.onnx", external=True)
    del model
    return path, weights


def test_big_model_imports_maps_and_costs_within_twice_its_weight_bytes(big_model, tmp_path):
    path, weights = big_model
    weight_bytes = 4 * weights
    assert weights >= 100_000_000
    assert (path.parent / (path.name + ".data")).stat().st_size >= weight_bytes
    out = tmp_path / "out.json"
    info, err = run_child([path, "--target", "pcm", "--json", out, "-q"])
    assert info["code"] == 0, err
    report = json.loads(out.read_text())
    assert report_problems(report) == []
    assert report["totals"]["weights"] == weights
    peak = info["vmhwm_kb"] * 1024
    print(f"\nbig model: {weights:,} weights, {weight_bytes / 2**20:.0f} MiB; peak "
          f"{peak / 2**20:.0f} MiB; {info['seconds']:.1f} s; {report['totals']['arrays']} arrays "
          f"on {report['totals']['chips']} chips")
    assert peak <= 2 * weight_bytes, (peak, weight_bytes)
    assert info["seconds"] < 60


def test_big_model_over_the_memory_limit_is_refused_before_loading(big_model, tmp_path):
    path, weights = big_model
    out = tmp_path / "out.json"
    info, err = run_child([path, "--target", "pcm", "--json", out, "-q"],
                          IMCCOMPILE_MEMORY_LIMIT="100M")
    assert info["code"] == 1, err
    assert err.startswith("imccompile: error: ") and err.count("\n") == 1, err
    assert "its weights take 432.3 MiB but only 100.0 MiB of memory is free" in err, err
    assert "nothing was loaded" in err
    assert not out.exists()
    peak = info["vmhwm_kb"] * 1024
    assert peak < 4 * weights / 3, (peak, 4 * weights)  # far below the weights: not read


def test_inline_model_larger_than_the_limit_is_refused(tmp_path):
    res = subprocess.run([sys.executable, "-m", "imccompile.cli", EXAMPLES / "digits_cnn.onnx",
                          "--target", "pcm", "-q"], capture_output=True, text=True, timeout=120, check=False,
                         env=child_env(IMCCOMPILE_MEMORY_LIMIT="64K"))
    assert res.returncode == 1, res.stderr
    assert "the file is 187.9 KiB but only 64.0 KiB of memory is free" in res.stderr
    assert "save_as_external_data=True" in res.stderr


@pytest.mark.parametrize("value", ["inf", "1e400", "-5M", "0", "nan", "12Q", "M"])
def test_bad_memory_limit_is_a_clean_error(value, monkeypatch):
    monkeypatch.setenv("IMCCOMPILE_MEMORY_LIMIT", value)
    code, _, err = run_cli([EXAMPLES / "karate_gcn.onnx", "--target", "pcm", "-q"])
    assert code == 1, err
    assert err == (f"imccompile: error: IMCCOMPILE_MEMORY_LIMIT={value!r}: expected a positive "
                   "size in bytes, e.g. 8G or 512M\n")


def test_memory_limit_is_the_least_of_meminfo_cgroup_and_env(monkeypatch):
    from imccompile.frontend import load

    files = {"/sys/fs/cgroup/memory.max": "3221225472\n",  # 3 GiB, of which 1 GiB used
             "/sys/fs/cgroup/memory.current": "1073741824\n"}
    real_read_text = pathlib.Path.read_text

    def read_text(self, *a, **k):
        return files[str(self)] if str(self) in files else real_read_text(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    monkeypatch.delenv("IMCCOMPILE_MEMORY_LIMIT", raising=False)
    got = load.available_memory_bytes()
    assert got == min(2 * 2**30, mem_available() or 2 * 2**30)
    monkeypatch.setenv("IMCCOMPILE_MEMORY_LIMIT", "1.5G")
    assert load.available_memory_bytes() == int(1.5 * 2**30)
    files["/sys/fs/cgroup/memory.max"] = "max\n"  # no cgroup limit
    monkeypatch.setenv("IMCCOMPILE_MEMORY_LIMIT", "100T")
    assert load.available_memory_bytes() == (mem_available() or None)


# ----------------------------------------------------------------------------- determinism

DET_RUNS = {  # name -> argv (without -o / --json)
    **{f"{m}-{t}": [EXAMPLES / f"{m}.onnx", "--target", t, "--data", EXAMPLES / f"{m}.npz",
                    "--seeds", "3"]
       for m in ("digits_cnn", "digits_transformer") for t in TARGETS},
    "karate_gcn-rram": [EXAMPLES / "karate_gcn.onnx", "--target", "rram", "--data",
                        EXAMPLES / "karate_gcn.npz", "--seeds", "3"],
    **{f"{m}-{t}-passes": [EXAMPLES / f"{m}.onnx", "--target", t, "--data",
                           EXAMPLES / f"{m}.npz", "--seeds", "3", "--passes",
                           "prune{ratio=0.3},quantize{weight_bits=4}"]
       for m, t in (("digits_cnn", "pcm"), ("digits_transformer", "rram"),
                    ("digits_cnn", "sram"))},
}
SEARCH_RUN = [EXAMPLES / "digits_cnn.onnx", "--target", "pcm", "--data",
              EXAMPLES / "digits_cnn.npz", "--search", "6", "--samples", "60"]

DET_CHILD = r"""
import json, sys
from imccompile.cli import main
runs, out = json.loads(sys.argv[1]), sys.argv[2]
for name, argv in runs.items():
    extra = ["--json", f"{out}/{name}.json"] if name == "search" else ["-o", f"{out}/{name}"]
    code = main(argv + extra + ["-q"])
    assert code == 0, (name, code)
"""


@pytest.fixture(scope="module")
def twice(tmp_path_factory) -> tuple[Path, Path]:
    """Every determinism run done twice, by two processes with different hash seeds (set and
    dict orders differ), side by side on the two cores."""
    runs = {k: [str(a) for a in v] for k, v in DET_RUNS.items()}
    runs["search"] = [str(a) for a in SEARCH_RUN]
    dirs = (tmp_path_factory.mktemp("det_a"), tmp_path_factory.mktemp("det_b"))
    procs = [subprocess.Popen([sys.executable, "-c", DET_CHILD, json.dumps(runs), str(d)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=child_env(PYTHONHASHSEED=seed))
             for d, seed in zip(dirs, ("1", "4242"))]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    return dirs


@pytest.mark.parametrize("name", sorted(DET_RUNS))
def test_same_command_gives_byte_identical_report(twice, name):
    a, b = (d / name for d in twice)
    ja, jb = (a / "report.json").read_bytes(), (b / "report.json").read_bytes()
    assert ja == jb, name
    report = json.loads(ja)
    assert report["accuracy"]["seeds"] == [0, 1, 2]
    assert report_problems(report) == []
    for f in ("report.html", "simulation.onnx"):  # the other outputs are reproducible too
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_same_search_seed_gives_identical_trials(twice):
    a, b = (json.loads((d / "search.json").read_text())["search"] for d in twice)
    assert len(a["trials"]) == 6
    assert a["trials"] == b["trials"]
    assert a["pareto"] == b["pareto"] and a["chosen"] == b["chosen"]


# ----------------------------------------------------------------------------- sane numbers


def _variants(target: str) -> list[list[str]]:
    search = json.loads((ROOT / "hwspecs" / f"{target}.json").read_text())["search"]
    out = [[]]
    out += [["--set", f"adc.bits={b}"] for b in search["adc_bits"]]
    out += [["--set", f"array.rows={r}"] for r in search["rows"]]
    out += [["--set", f"array.cols={c}"] for c in search["cols"]]
    out += [["--set", f"array.bits_per_cell={b}"] for b in search["bits_per_cell"]]
    out += [["--set", f"precision.weight_bits={b}"] for b in search["weight_bits"]]
    out += [["--set", f"array.rows={r}", "--set", f"adc.bits={search['adc_bits'][0]}"]
            for r in search["rows"][:1]]
    out += [["--set", "hierarchy.tiles_per_chip=1", "--overflow", "reload"],
            ["--set", "hierarchy.tiles_per_chip=1", "--overflow", "chips"],
            ["--auto-replicate"]]
    return out


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("model", MODELS)
def test_numbers_stay_sane(model, target, tmp_path):
    out = tmp_path / "r.json"
    for extra in _variants(target):
        out.unlink(missing_ok=True)
        code, _, err = run_cli([EXAMPLES / f"{model}.onnx", "--target", target, "--json", out,
                                "-q", *extra])
        assert code == 0, (extra, err)
        report = json.loads(out.read_text())
        assert report_problems(report) == [], extra
        tot = report["totals"]
        # the pipelined schedule never takes longer than one inference alone
        assert tot["pipeline_period_s"] <= tot["latency_s"] <= tot["serial_latency_s"], extra
        assert math.isclose(sum(r["energy_j"] for r in report["layers"]), tot["energy_j"],
                            rel_tol=1e-9), extra
        for comp, e in tot["energy_breakdown_j"].items():
            assert math.isclose(sum(r["energy_breakdown_j"][comp] for r in report["layers"]), e,
                                rel_tol=1e-9, abs_tol=1e-30), (extra, comp)
        if "reload" in extra:
            assert report["overflow_policy"] == "reload"
            if tot["overflow_arrays"] > 0:  # weights rewritten every inference: paid for
                assert tot["chips"] == 1 and tot["energy_breakdown_j"]["write"] > 0, extra


@pytest.mark.parametrize("model", MODELS)
def test_numbers_stay_sane_with_data(model, tmp_path):
    out = tmp_path / "r.json"
    for target in TARGETS:
        code, _, err = run_cli([EXAMPLES / f"{model}.onnx", "--target", target, "--data",
                                EXAMPLES / f"{model}.npz", "--samples", "40", "--seeds", "2",
                                "--set", "hierarchy.tiles_per_chip=1", "--overflow", "reload",
                                "--json", out, "-q"])
        assert code == 0, err
        report = json.loads(out.read_text())
        assert report_problems(report) == []
        acc = report["accuracy"]
        assert 0 <= acc["mean"] <= 1 and acc["std"] >= 0 and acc["relative_error"] >= 0


# ----------------------------------------------------------------------------- interrupted work


def _leftovers(parent: Path, dest: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{dest}."))


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _failing_writes(monkeypatch, fail_at: int, exc: BaseException) -> list[str]:
    """Make the fail_at-th file write of the process raise ``exc``."""
    calls: list[str] = []
    for meth in ("write_text", "write_bytes"):
        real = getattr(pathlib.Path, meth)

        def wrapper(self, *a, _real=real, **k):
            calls.append(self.name)
            if len(calls) == fail_at:
                raise exc
            return _real(self, *a, **k)

        monkeypatch.setattr(pathlib.Path, meth, wrapper)
    return calls


RUN = [EXAMPLES / "karate_gcn.onnx", "--target", "rram", "--data", EXAMPLES / "karate_gcn.npz",
       "-q"]


@pytest.mark.parametrize("exc, code", [(OSError(28, "No space left on device"), 1),
                                       (KeyboardInterrupt(), 130),
                                       (RuntimeError("disk controller fell off"), 2)])
def test_failed_write_leaves_no_folder_and_no_temp(tmp_path, monkeypatch, exc, code):
    dest = tmp_path / "out"
    calls = _failing_writes(monkeypatch, 2, exc)
    got, _, err = run_cli([*RUN, "-o", dest])
    assert len(calls) == 2, calls
    assert got == code, err
    if code == 1:
        assert err == (f"imccompile: error: {dest}: cannot write the output folder: "
                       "No space left on device\n")
    assert not dest.exists()
    assert _leftovers(tmp_path, "out") == []


def test_failed_force_write_keeps_the_old_folder(tmp_path, monkeypatch):
    dest = tmp_path / "out"
    code, _, err = run_cli([*RUN, "-o", dest])
    assert code == 0, err
    before = _contents(dest)
    _failing_writes(monkeypatch, 3, OSError(28, "No space left on device"))
    code, _, err = run_cli([*RUN, "--seeds", "2", "-o", dest, "--force"])
    assert code == 1, err
    assert _contents(dest) == before  # untouched, complete
    assert _leftovers(tmp_path, "out") == []


def test_failed_json_write_leaves_no_temp_file(tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    real = os.replace

    def replace(src, dst):
        if str(dst) == str(out):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    code, _, err = run_cli([EXAMPLES / "karate_gcn.onnx", "--target", "pcm", "--json", out, "-q"])
    assert code == 1, err
    assert "--json" in err and "No space left on device" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# A child that writes its output folder slowly, announcing every file and every rename of a
# folder: the parent SIGKILLs it at a chosen point of the write.
SLOW_CHILD = r"""
import os, pathlib, sys, time
for meth in ("write_text", "write_bytes"):
    real = getattr(pathlib.Path, meth)
    def slow(self, *a, _real=real, **k):
        print("file", self.name, flush=True)
        n = _real(self, *a, **k)
        time.sleep(0.15)
        return n
    setattr(pathlib.Path, meth, slow)
real_replace = os.replace
def replace(src, dst):
    if ".tmp-" in str(src) or ".old-" in str(dst):
        print("rename", os.path.basename(str(dst)), flush=True)
        time.sleep(0.15)
    return real_replace(src, dst)
os.replace = replace
import imccompile.outputs.output as output
real_exchange = output._exchange
def exchange(a, b):
    print("rename", os.path.basename(str(b)), "(exchange)", flush=True)
    time.sleep(0.15)
    return real_exchange(a, b)
output._exchange = exchange
from imccompile.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _kill_at(argv: list, marker: int) -> list[str]:
    """Run SLOW_CHILD and SIGKILL it right after its ``marker``-th announcement (0: never)."""
    p = subprocess.Popen([sys.executable, "-c", SLOW_CHILD, *map(str, argv)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=child_env())
    seen: list[str] = []
    try:
        for line in p.stdout:
            if line.startswith(("file ", "rename ")):
                seen.append(line.strip())
                if len(seen) == marker:
                    p.send_signal(signal.SIGKILL)
                    break
    finally:
        p.wait(timeout=120)
        p.stdout.close()
    return seen




@pytest.mark.parametrize("force", [False, True], ids=["new", "force"])
def test_sigkill_during_write_never_leaves_a_partial_folder(tmp_path, force):
    """SIGKILL while the output folder is written (after the first file, a middle one, the last
    one, and at every rename): the destination is absent or complete (the new folder or, with
    --force, the old one); a killed run may leave a .out.tmp-* folder (and, killed between the
    two renames of --force, the old folder kept as .out.old-PID), never a partial destination."""
    ref = tmp_path / "ref"
    code, _, err = run_cli([*RUN, "-o", ref / "out"])
    assert code == 0, err
    complete = _tree(ref / "out")
    assert {"report.json", "report.html", "simulation.onnx"} <= complete
    argv = [*RUN, "--seeds", "2"] + (["--force"] if force else [])

    def fresh(name: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        if force:
            shutil.copytree(ref / "out", d / "out")
        return d

    d = fresh("whole")
    seen = _kill_at([*argv, "-o", d / "out"], 0)  # not killed: learn the write sequence
    assert _tree(d / "out") == complete and _leftovers(d, "out") == []
    files = [k for k, s in enumerate(seen, 1) if s.startswith("file ")]
    renames = [k for k, s in enumerate(seen, 1) if s.startswith("rename ")]
    exchanged = force and len(renames) == 1  # --force swapped the folders in one step
    assert len(renames) == (1 if not force or exchanged else 3), seen
    for marker in sorted({files[0], files[len(files) // 2], files[-1], *renames}):
        d = fresh(f"kill{marker}")
        assert len(_kill_at([*argv, "-o", d / "out"], marker)) == marker
        left = _leftovers(d, "out")
        if (d / "out").exists():
            assert _tree(d / "out") == complete, (marker, seen[marker - 1])
            json.loads((d / "out" / "report.json").read_text())
        elif force:  # only killed between the two renames: the old folder is kept beside
            assert not exchanged, (marker, seen)  # an atomic swap never leaves dest missing
            assert marker == renames[2], (marker, seen)
            old = [n for n in left if ".old-" in n]
            assert len(old) == 1 and _tree(d / old[0]) == complete, left
        assert all(".tmp-" in n or ".old-" in n for n in left), left


def test_report_has_no_timestamps(tmp_path):
    """report.json is reproducible as a whole: no field holds a date or a duration."""
    out = tmp_path / "r.json"
    code, _, err = run_cli([EXAMPLES / "digits_cnn.onnx", "--target", "pcm", "--json", out, "-q"])
    assert code == 0, err
    keys: list[str] = []

    def walk(o):
        if isinstance(o, dict):
            keys.extend(o)
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(json.loads(out.read_text()))
    assert not [k for k in keys if any(w in k.lower() for w in ("time", "date", "duration",
                                                                 "elapsed"))]
