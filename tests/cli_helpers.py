"""Running the command line as a user does, in a child process (shared by the CLI tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli(*args: str | os.PathLike[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m imccompile.cli ARGS`` with a wide, colourless terminal; output captured."""
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "imccompile.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


def run_module(*args: str | os.PathLike[str], cwd: Path | None = None
               ) -> subprocess.CompletedProcess:
    """``python -m imccompile ARGS`` (the package's __main__), as ``cli`` runs the module."""
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "imccompile", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
