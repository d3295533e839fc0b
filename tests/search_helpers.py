"""Helpers for tests/test_search.py: the CLI as a subprocess, study inspection, an independent
Pareto dominance check, and a throw-away PostgreSQL server on loopback."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "digits_cnn.onnx"
DATA = ROOT / "examples" / "digits_cnn.npz"
SAMPLES = 100  # keeps a trial at a fraction of a second

COST_OBJECTIVES = ("energy", "latency", "area", "arrays")


def search_args(trials: int, storage: str | None = None, study: str | None = None,
                *extra: str, samples: int = SAMPLES) -> list[str]:
    args = [str(MODEL), "--target", "pcm", "--data", str(DATA), "--samples", str(samples),
            "--search", str(trials), "-q"]
    if storage:
        args += ["--storage", storage]
    if study:
        args += ["--study", study]
    return args + list(extra)


def _cmd(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "imccompile.cli", *map(str, args)]


def _default_sigint() -> None:  # a shell's background job inherits SIGINT ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(args: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(args), check=False, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def start_cli(args: Sequence[str]) -> subprocess.Popen:
    return subprocess.Popen(_cmd(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, preexec_fn=_default_sigint)


def load(storage: str, study: str):
    """The study, or None while the search has not created it yet."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if storage.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = storage[len("journal:"):]
        if not os.path.exists(path):
            return None
        storage_obj = JournalStorage(JournalFileBackend(path))
    else:
        storage_obj = storage
    try:
        return optuna.load_study(study_name=study, storage=storage_obj)
    except KeyError:
        return None
    except Exception as e:  # e.g. an sqlite file whose tables are being created
        if "no such table" in str(e) or "does not exist" in str(e):
            return None
        raise


def states(study) -> Counter:
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def completed_values(study) -> dict[int, tuple[float, ...]]:
    return {t.number: tuple(t.values) for t in study.get_trials(deepcopy=False)
            if t.state.name == "COMPLETE"}


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None,
             poll: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the search ended (exit {proc.returncode}) before {what}:\n{err}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def assert_clean_stderr(err: str) -> None:
    assert "Traceback" not in err, err
    assert "Warning" not in err, err  # e.g. Optuna's ExperimentalWarning


# --- an independent dominance check (not imccompile.search.dominates) -------------------------

def as_minimization(values: dict, objectives: Sequence[str]) -> tuple[float, ...]:
    return tuple(-values[o] if o == "accuracy" else values[o] for o in objectives)


def weakly_better_everywhere(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b))


def pareto_dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a dominates b (minimization): no worse anywhere and strictly better somewhere."""
    return weakly_better_everywhere(a, b) and any(x < y for x, y in zip(a, b))


# --- PostgreSQL on loopback ---------------------------------------------------------------

def postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    candidates = [found] if found else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    for c in candidates:
        d = Path(os.path.realpath(c)).parent
        if (d / "pg_ctl").exists():
            return d
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Postgres:
    bin: Path
    dir: Path
    port: int
    user: str | None  # the OS user the server runs as (None: this one)

    def url(self, db: str) -> str:
        return f"postgresql://imc@127.0.0.1:{self.port}/{db}"

    def _run(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(args, check=False, capture_output=True, text=True, timeout=timeout,
                              user=self.user, cwd=self.dir, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        pidfile = self.dir / "data" / "postmaster.pid"
        pid = int(pidfile.read_text().split()[0]) if pidfile.exists() else None
        r = self._run([str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
                       "-w", "stop"])
        if r.returncode != 0 and pid is not None:  # SIGQUIT: the postmaster's immediate shutdown
            try:
                os.kill(pid, signal.SIGQUIT)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def start_postgres() -> tuple[Postgres | None, str]:
    """A fresh cluster in a temporary folder, trust auth for user ``imc`` on 127.0.0.1 only.
    Returns (server, "") or (None, why not)."""
    bindir = postgres_bin()
    if bindir is None:
        return None, "no PostgreSQL server binaries (initdb, pg_ctl) installed"
    user = None
    # the folder is made here, not in pytest's tmp_path: as root the server runs as the
    # 'postgres' user, which cannot enter root's private pytest folders
    d = Path(tempfile.mkdtemp(prefix="imccompile-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(d, ignore_errors=True)
            return None, "running as root and there is no 'postgres' user to run the server"
        os.chown(d, pw.pw_uid, pw.pw_gid)
        user = "postgres"
    pg = Postgres(bindir, d, free_port(), user)
    r = pg._run([str(bindir / "initdb"), "-D", str(d / "data"), "-U", "imc", "--auth=trust",
                 "-E", "UTF8", "--no-sync"])
    if r.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        return None, f"initdb failed: {r.stderr.strip()[-300:]}"
    opts = (f"-c listen_addresses=127.0.0.1 -p {pg.port} -c unix_socket_directories={d} "
            "-c fsync=off -c max_connections=50")
    r = pg._run([str(bindir / "pg_ctl"), "-D", str(d / "data"), "-o", opts, "-l", str(d / "log"),
                 "-w", "-t", "30", "start"])
    if r.returncode != 0:
        log = (d / "log").read_text(errors="replace")[-500:] if (d / "log").exists() else ""
        shutil.rmtree(d, ignore_errors=True)
        return None, f"pg_ctl start failed: {r.stderr.strip()[-300:]} {log}"
    return pg, ""
