"""Co-optimization search (imccompile.search, --search): Pareto front, exact re-creation of
front points, resume after kill/Ctrl-C, several workers on one study (local processes, separate
CLI processes, PostgreSQL), and the CLI's error messages."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_helpers import (  # noqa: E402
    COST_OBJECTIVES, DATA, MODEL, ROOT, SAMPLES, as_minimization, assert_clean_stderr,
    completed_values, load, pareto_dominates, run_cli, search_args, start_cli, start_postgres,
    states, wait_for, weakly_better_everywhere,
)

import imccompile  # noqa: E402
from imccompile.search import SearchConfig, run_worker, search  # noqa: E402


def _cfg(**kw) -> SearchConfig:
    base = dict(model=str(MODEL), target="pcm", data=str(DATA), samples=SAMPLES,
                max_accuracy_drop=1.0)
    base.update(kw)
    return SearchConfig(**base)


# --- 1. the front: non-dominated, complete, and every point re-created exactly ----------------

@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    d = tmp_path_factory.mktemp("front")
    storage = f"sqlite:///{d / 'front.db'}"
    r = run_cli(search_args(14, storage, "front", "--max-accuracy-drop", "1", "-o", str(d / "out")))
    assert r.returncode == 0, r.stderr
    assert_clean_stderr(r.stderr)
    report = json.loads((d / "out" / "report.json").read_text())
    return storage, report


def test_front_is_non_empty_feasible_and_mutually_non_dominated(searched):
    storage, report = searched
    s = report["search"]
    assert s["objectives"] == ["accuracy", "energy"]
    assert s["completed_trials"] == 14 == states(load(storage, "front"))["COMPLETE"]
    front = s["pareto"]
    assert front, "empty Pareto front"
    assert all(p["feasible"] for p in front)
    vec = {p["trial"]: as_minimization(p["values"], s["objectives"]) for p in front}
    for a in front:
        for b in front:
            if a is not b:
                assert not pareto_dominates(vec[a["trial"]], vec[b["trial"]]), (a, b)
    assert len(set(vec.values())) == len(vec), "duplicate points on the front"
    # ... and nothing feasible is left out: every feasible trial is matched by a front point
    for t in s["trials"]:
        if t["feasible"]:
            v = as_minimization(t["values"], s["objectives"])
            assert any(weakly_better_everywhere(f, v) for f in vec.values()), t["trial"]
    # the constraint holds on the front: at most 1 point below the float model's accuracy
    float_acc = report["accuracy"]["float"]
    assert all(100 * (float_acc - p["values"]["accuracy"]) <= 1 + 1e-9 for p in front)
    assert s["chosen"] in vec


def test_front_points_recreate_exactly_through_compile(searched):
    _, report = searched
    for p in report["search"]["pareto"]:
        res = imccompile.compile(str(MODEL), "pcm", overrides=p["overrides"],
                                 passes=p["pipeline"] or None, data=str(DATA), samples=SAMPLES,
                                 auto_replicate=p["auto_replicate"])
        got = {"energy": res.cost.energy_j, "latency": res.schedule.latency_s,
               "area": res.cost.area_mm2, "arrays": float(res.mapping.arrays),
               "accuracy": res.accuracy["mean"]}
        for k in (*COST_OBJECTIVES, "accuracy"):  # fixed seeds: equal, not merely close
            assert got[k] == p["values"][k], (p["trial"], k, got[k], p["values"][k])


def test_from_trial_reproduces_the_stored_values(searched, tmp_path):
    storage, report = searched
    trials = [report["search"]["chosen"]]  # one run of the CLI: the others are checked above
    for n in trials:
        r = run_cli([*_base(SAMPLES), "--storage", storage, "--study", "front",
                     "--from-trial", str(n), "--json", str(tmp_path / f"t{n}.json")])
        assert r.returncode == 0, r.stderr
        assert_clean_stderr(r.stderr)
        info = json.loads((tmp_path / f"t{n}.json").read_text())["from_trial"]
        assert info["trial"] == n
        assert info["same"] is True, info
        front_point = next(p for p in report["search"]["pareto"] if p["trial"] == n)
        assert info["values"] == front_point["values"]
        assert info["pipeline"] == front_point["pipeline"]


# --- 2. kill / Ctrl-C and resume ----------------------------------------------------------

def test_sigkill_then_rerun_ends_with_exactly_the_requested_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    args = search_args(12, storage, "s")
    proc = start_cli(args)
    try:
        def three_done():
            st = load(storage, "s")
            return st is not None and states(st)["COMPLETE"] >= 3 and st

        wait_for(three_done, 120, ">= 3 completed trials", proc)
        # kill it preferably mid-trial, so that a RUNNING trial of a dead worker is left behind
        try:
            wait_for(lambda: states(load(storage, "s"))["RUNNING"], 2, "a running trial", proc,
                     poll=0.01)
        except AssertionError:
            pass
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = completed_values(load(storage, "s"))
    assert 3 <= len(before) < 12, "the search finished before it was killed"

    r = run_cli(args)
    assert r.returncode == 0, r.stderr
    assert_clean_stderr(r.stderr)
    st = load(storage, "s")
    after = completed_values(st)
    assert len(after) == 12, states(st)
    assert states(st)["RUNNING"] == 0  # the killed worker's trial is not left running
    for n, v in before.items():  # the trials of the first run are kept as they were
        assert after[n] == v


def test_sigint_stops_cleanly_keeps_trials_and_resumes(tmp_path):
    storage = f"sqlite:///{tmp_path / 'i.db'}"
    proc = start_cli(search_args(500, storage, "i"))
    try:
        wait_for(lambda: (st := load(storage, "i")) is not None and states(st)["COMPLETE"] >= 2,
                 120, ">= 2 completed trials", proc)
        seen = completed_values(load(storage, "i"))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (130, 1), (proc.returncode, err)
    assert_clean_stderr(err)
    assert "interrupted" in err and "resume" in err, err
    st = load(storage, "i")
    kept = completed_values(st)
    assert states(st)["RUNNING"] == 0, states(st)  # the trial in flight ends as FAIL
    assert len(kept) < 500
    for n, v in seen.items():
        assert kept[n] == v

    target = len(kept) + 3
    r = run_cli(search_args(target, storage, "i"))
    assert r.returncode == 0, r.stderr
    after = completed_values(load(storage, "i"))
    assert len(after) == target
    assert all(after[n] == v for n, v in kept.items())



def test_ctrl_c_swallowed_by_a_finalizer_is_delivered_again(capfd):
    """The handler runs in whatever frame executes when SIGINT arrives; in a finalizer (a
    sqlalchemy weakref callback in CI) Python swallows the KeyboardInterrupt and prints
    "Exception ignored in". The stop must still come, and nothing be printed."""
    import os

    from imccompile.search import _Interrupt

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(200_000):  # the handler runs here, inside the finalizer
                pass

    stopped = False
    with _Interrupt() as interrupt:
        interrupt.evaluating = True
        try:
            Finalized()  # collected at once
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.01)
        except KeyboardInterrupt:
            stopped = True
    assert stopped, "the interrupt was lost in the finalizer"
    assert interrupt.requested
    assert "Exception ignored" not in capfd.readouterr().err


# --- 3. several workers on one study --------------------------------------------------------

def _assert_exact(st, n: int) -> None:
    trials = st.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    c = states(st)
    assert c["COMPLETE"] == n, c
    assert c["RUNNING"] == 0, c
    for t in trials:  # a failure is an infeasible point, with its error recorded
        if t.state.name == "FAIL":
            assert "error" in t.user_attrs, t


def test_n_jobs_workers_finish_exactly_n_trials(tmp_path):
    storage = f"journal:{tmp_path / 'j.log'}"
    res = search(_cfg(), 12, storage=storage, study_name="j", n_jobs=2)
    st = load(storage, "j")
    _assert_exact(st, 12)
    assert len(res.trials) == 12 and res.pareto
    workers = {t.user_attrs["worker"]["pid"] for t in st.get_trials(deepcopy=False)
               if t.state.name == "COMPLETE"}
    assert 1 <= len(workers) <= 2


def test_two_cli_processes_on_one_sqlite_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'm.db'}"
    procs = [start_cli(search_args(10, storage, "m")) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert_clean_stderr(err)
    _assert_exact(load(storage, "m"), 10)


def _fake_in_flight_trial(storage: str, study_name: str, pid: int):
    """A RUNNING trial that another worker (process ``pid`` on this host) has in flight."""
    st = load(storage, study_name)
    t = st.ask()
    t.set_user_attr("worker", {"host": socket.gethostname(), "pid": pid, "token": "other"})
    return st, t


@pytest.fixture(scope="module")
def two_done(tmp_path_factory):
    """A stored study with 2 completed trials (copied by each test)."""
    db = tmp_path_factory.mktemp("two") / "f.db"
    search(_cfg(max_accuracy_drop=None), 2, storage=f"sqlite:///{db}", study_name="f")
    return db


@pytest.mark.parametrize("ends", ["complete", "fail", "dead"])
def test_a_worker_counts_the_trials_others_have_in_flight(tmp_path, two_done, ends):
    """Deterministic version of the race above: 2 of 3 trials done, a third in flight elsewhere.
    If it completes, the worker must not add a fourth; if it fails, or its process is gone, the
    worker runs the third itself."""
    import shutil

    shutil.copy(two_done, tmp_path / "f.db")
    storage = f"sqlite:///{tmp_path / 'f.db'}"
    cfg = _cfg(max_accuracy_drop=None)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        st, t = _fake_in_flight_trial(storage, "f", other.pid)
        if ends == "dead":
            other.kill()
            other.wait()
        else:
            def finish():
                time.sleep(1.5)
                if ends == "complete":
                    st.tell(t, [0.5, 1e-6])
                else:
                    st.tell(t, state=__import__("optuna").trial.TrialState.FAIL)
            threading.Thread(target=finish, daemon=True).start()
        t0 = time.monotonic()
        run_worker(cfg, storage, "f", 3, sampler_seed=1)
        waited = time.monotonic() - t0
    finally:
        other.kill()
        other.wait()
    final = load(storage, "f")
    c = states(final)
    assert c["COMPLETE"] == 3 and c["RUNNING"] == 0, c
    mine = [x for x in final.get_trials(deepcopy=False)
            if x.state.name == "COMPLETE" and x.number > t.number]
    if ends == "complete":
        assert not mine and waited >= 1.0  # it waited for the other worker's trial
    else:
        assert len(mine) == 1
        assert final.trials[t.number].state.name == "FAIL"


# --- 4. PostgreSQL: workers on many machines share one server -------------------------------

def _postgres_driver_missing() -> str:
    """Why SQLAlchemy cannot talk to PostgreSQL here ("" if it can): it imports the driver of a
    ``postgresql://`` URL (psycopg 3 with SQLAlchemy >= 2.1) when an engine is made."""
    import sqlalchemy

    try:
        sqlalchemy.create_engine("postgresql://imc@127.0.0.1:1/x")
    except ImportError as e:
        return f"no PostgreSQL driver for SQLAlchemy ({e}); pip install 'psycopg[binary]'"
    return ""


@pytest.fixture(scope="module")
def postgres():
    why = _postgres_driver_missing()
    if why:
        pytest.skip(why)
    pg, why = start_postgres()
    if pg is None:
        pytest.skip(f"no PostgreSQL server can be started here: {why}")
    try:
        yield pg
    finally:
        pg.stop()


def test_two_workers_on_a_postgresql_study(postgres):
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres.url("postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("CREATE DATABASE search"))
    engine.dispose()
    url = postgres.url("search")
    procs = [start_cli(search_args(10, url, "pg")) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert_clean_stderr(err)
    st = load(url, "pg")
    _assert_exact(st, 10)
    trials = st.get_trials(deepcopy=False)
    assert all(t.user_attrs.get("pipeline") is not None for t in trials if t.state.name == "COMPLETE")


# --- 5. errors: exit 1, one clear line, no traceback ----------------------------------------

@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    d = tmp_path_factory.mktemp("stored")
    storage = f"sqlite:///{d / 'st.db'}"
    r = run_cli(search_args(3, storage, "st", samples=20))
    assert r.returncode == 0, r.stderr
    (d / "bad.json").write_text("{not json")
    return storage, d


def _base(samples: int = 20) -> list[str]:
    return [str(MODEL), "--target", "pcm", "--data", str(DATA), "--samples", str(samples), "-q"]


ERRORS = {
    "objective": (lambda s, d: [*_base(), "--search", "2", "--objectives", "accuracy,foo"],
                  ["--objectives accuracy,foo", "expected distinct names"]),
    "no-data": (lambda s, d: [str(MODEL), "--target", "pcm", "--search", "2"],
                ["accuracy objective needs --data"]),
    "adc-bits": (lambda s, d: [*_base(), "--search", "2", "--fix", "adc.bits=3"],
                 ["adc.bits", "must be one of", "got 3"]),
    "knob": (lambda s, d: [*_base(), "--search", "2", "--fix", "nonsense=1"],
             ["nonsense", "unknown knob"]),
    "space": (lambda s, d: [*_base(), "--search", "2", "--space", str(d / "bad.json")],
              ["--space", "not JSON"]),
    "from-trial": (lambda s, d: [*_base(), "--storage", s, "--study", "st", "--from-trial", "999"],
                   ["--from-trial 999", "trials 0..2"]),
    "objectives-changed": (lambda s, d: [*_base(), "--search", "4", "--storage", s, "--study",
                                         "st", "--objectives", "accuracy,latency"],
                           ["study 'st'", "other settings", "--objectives accuracy,latency"]),
    "objective-count-changed": (lambda s, d: [*_base(), "--search", "4", "--storage", s,
                                              "--study", "st", "--objectives",
                                              "accuracy,energy,area"],
                                ["study 'st'", "made with --objectives accuracy,energy",
                                 "this run has --objectives accuracy,energy,area"]),
    "model-changed": (lambda s, d: [str(ROOT / "examples" / "digits_transformer.onnx"),
                                    "--target", "pcm", "--data",
                                    str(ROOT / "examples" / "digits_transformer.npz"),
                                    "--samples", "20", "--search", "4", "--storage", s,
                                    "--study", "st", "-q"],
                      ["study 'st'", "other settings"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_cli_errors(stored, case):
    storage, d = stored
    make, expected = ERRORS[case]
    before = completed_values(load(storage, "st"))
    r = run_cli(make(storage, d))
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert_clean_stderr(r.stderr)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("imccompile: error: "), r.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert completed_values(load(storage, "st")) == before  # the stored study is untouched


# --- small pure functions ---------------------------------------------------------------

def test_dominates_and_hypervolume_against_hand_values():
    import random

    import numpy as np

    from imccompile.search import dominates, hypervolume

    dirs = ["maximize", "minimize"]
    rng = random.Random(0)
    for _ in range(500):
        a = (rng.choice([0.5, 0.9, 1.0]), rng.choice([1.0, 2.0, 3.0]))
        b = (rng.choice([0.5, 0.9, 1.0]), rng.choice([1.0, 2.0, 3.0]))
        mine = pareto_dominates((-a[0], a[1]), (-b[0], b[1]))
        assert dominates(a, b, dirs) == mine, (a, b)
    # reference (4, 4): [1,4]x[3,4] (3) and [2,4]x[1,4] (6) overlap in [2,4]x[3,4] (2): 7;
    # (3, 3.5) is dominated and (5, 0) lies beyond the reference
    pts = np.array([[1.0, 3.0], [2.0, 1.0], [3.0, 3.5], [5.0, 0.0]])
    assert hypervolume(pts, np.array([4.0, 4.0])) == pytest.approx(7.0)
    assert hypervolume(np.array([[5.0, 5.0]]), np.array([4.0, 4.0])) == 0.0
