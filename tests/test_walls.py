"""The architecture's walls, enforced: import-linter contracts (pyproject.toml
[tool.importlinter]) and the type checker (mypy, [tool.mypy]) over imccompile/ and passes/.

Both tools are test requirements (the `test` extra); these tests fail, not skip, without them.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import imccompile

ROOT = Path(__file__).resolve().parents[1]


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_import_contracts_hold():
    r = _run(str(Path(sys.executable).with_name("lint-imports")), "--no-cache")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "broken" in r.stdout and " 0 broken" in r.stdout


def test_type_checker_passes():
    r = _run(sys.executable, "-m", "mypy")
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]


def test_nothing_imports_the_cli_covers_every_module():
    """The 'Nothing imports the CLI' contract lists its source modules: every top-level module
    and package of imccompile except the CLI itself must be there, or a new one escapes it."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in cfg["contracts"] if c["name"] == "Nothing imports the CLI")
    cli = set(contract["forbidden_modules"])
    modules = {f"imccompile.{m.name}" for m in pkgutil.iter_modules(imccompile.__path__)}
    assert cli <= modules
    assert set(contract["source_modules"]) == modules - cli
