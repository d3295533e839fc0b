"""Search worker processes tied to their parent, and the temporary study store they share.

``--n-jobs N`` without ``--storage`` runs N-1 worker processes on a journal file in a temporary
folder. A worker must never outlive the search that started it (a SIGKILL of the parent leaves
no orphans running trials), and the temporary folder must not outlive them all:

* the folder is named after the parent's process id (``imccompile-study-PID-XXXX``);
* each worker asks Linux to send it SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``)
  and also watches its parent from a thread (other systems, or a parent gone before the
  ``prctl``); either way it removes the folder and exits at once;
* the parent removes the folder when the search ends, however it ends (``finally``), and a new
  search removes the folders of searches whose process is gone (a parent killed before it had
  any worker).
"""

from __future__ import annotations

import glob
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading

PREFIX = "imccompile-study-"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_WATCH_S = 0.5


def make_store_dir() -> str:
    """A new temporary folder for a study shared by local workers, after removing those left by
    searches whose process is gone."""
    sweep_stale()
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")


def sweep_stale() -> None:
    """Remove the temporary study folders of searches whose process no longer runs."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{PREFIX}*-*")):
        pid_text = os.path.basename(path)[len(PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def tie_to_parent(parent: int, store_dir: str | None) -> None:
    """In a worker: exit (removing ``store_dir``) as soon as process ``parent`` is gone."""

    def leave(*_: object) -> None:
        if store_dir:
            shutil.rmtree(store_dir, ignore_errors=True)
        os._exit(1)

    signal.signal(signal.SIGTERM, leave)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watcher below covers it
    if os.getppid() != parent:  # the parent died before the prctl
        leave()

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(_WATCH_S):
            if os.getppid() != parent:
                leave()

    threading.Thread(target=watch, name="imccompile-parent-watch", daemon=True).start()


def worker_main(parent: int, store_dir: str | None, payload: bytes) -> None:
    """A worker process's entry: tied to its parent first (before the heavy imports of the
    search, which take seconds), then ``payload`` (a pickled (function, args)) is run."""
    tie_to_parent(parent, store_dir)
    fn, args = pickle.loads(payload)
    fn(*args)
