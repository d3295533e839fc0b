"""Hostile input on the search (issue 18): study identity is the settings' canonical content,
and local workers never outlive the search that started them.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imccompile.cli import main
from imccompile.identity import canonical_overrides

ROOT = Path(__file__).resolve().parent.parent
CNN = str(ROOT / "examples" / "digits_cnn.onnx")
DATA = ROOT / "examples" / "digits_cnn.npz"


def _small(path: Path, start: int = 0) -> Path:
    d = dict(np.load(DATA))
    np.savez(path, **{k: v[start:start + 4] for k, v in d.items()})
    return path


def test_canonical_overrides_against_hand_values():
    # the last --set of a field wins (as in the spec loader); fields sorted; values as JSON
    assert canonical_overrides(["array.rows=128", "adc.bits=6", "adc.bits= 7"]) == \
        ["adc.bits=7", "array.rows=128"]
    assert canonical_overrides(["adc.bits=6", "array.rows=128"]) == \
        canonical_overrides(["array.rows=128", "adc.bits=6"])
    assert canonical_overrides(['noise.model="none"']) == canonical_overrides(["noise.model=none"])


def test_study_identity_is_the_content(tmp_path, monkeypatch, capsys):
    """The same data through a relative path and the same --sets in another order resume the
    study; other data at the same path is refused, naming the data."""
    work = tmp_path / "w"
    work.mkdir()
    _small(work / "d.npz")
    db = f"sqlite:///{tmp_path / 's.db'}"
    common = ["-t", "pcm", "--storage", db, "--study", "st", "-q"]
    monkeypatch.chdir(work)
    assert main([CNN, *common, "--data", "d.npz", "--search", "2",
                 "--set", "adc.bits=6", "--set", "array.rows=128"]) == 0
    monkeypatch.chdir(tmp_path)
    assert main([CNN, *common, "--data", str(work / "d.npz"), "--search", "3",
                 "--set", "array.rows=128", "--set", "adc.bits=6"]) == 0, capsys.readouterr().err
    import optuna

    study = optuna.load_study(study_name="st", storage=db)
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 3  # resumed, not restarted
    capsys.readouterr()
    _small(work / "d.npz", start=4)  # other samples, same path
    assert main([CNN, *common, "--data", str(work / "d.npz"), "--search", "4",
                 "--set", "adc.bits=6", "--set", "array.rows=128"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "study 'st'" in err and "--data content sha256" in err, err
    assert sum(t.state.name == "COMPLETE"
               for t in optuna.load_study(study_name="st", storage=db).trials) == 3


def _children(pid: int) -> list[int]:
    kids = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.split("/")[2]))
    return kids


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_their_parent_and_the_store_is_removed(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    data = _small(tmp_path / "d.npz")
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "imccompile.cli", CNN, "-t", "pcm", "--data",
                             str(data), "--search", "500", "--n-jobs", "3", "-q"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        kids: list[int] = []
        while time.monotonic() < deadline:
            kids = _children(proc.pid)
            if len(kids) >= 2 and glob.glob(str(tmp / "imccompile-study-*")):
                break
            time.sleep(0.3)
        assert len(kids) >= 2, "the workers did not start"
        time.sleep(2)  # the workers are running trials
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 15
    def stores() -> list[str]:
        return glob.glob(str(tmp / "imccompile-study-*"))

    while time.monotonic() < deadline and (any(map(_running, kids)) or stores()):
        time.sleep(0.3)
    alive = [k for k in kids if _running(k)]
    for k in alive:  # clean up before failing
        os.kill(k, signal.SIGKILL)
    assert alive == [], "orphan workers kept running after SIGKILL of the parent"
    assert stores() == [], "the temporary study store was left behind"


def test_a_stale_store_of_a_dead_search_is_swept(tmp_path, monkeypatch):
    from imccompile import workers

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{workers.PREFIX}{dead.pid}-abc"
    stale.mkdir()
    (stale / "study.log").write_text("x")
    mine = tmp_path / f"{workers.PREFIX}{os.getpid()}-def"
    mine.mkdir()
    other = tmp_path / "someone-elses"
    other.mkdir()
    new = workers.make_store_dir()
    try:
        assert not stale.exists() and mine.exists() and other.exists()
        assert Path(new).name.startswith(f"{workers.PREFIX}{os.getpid()}-")
    finally:
        shutil.rmtree(new)
