"""Writing to a device or a pipe writes into it; the atomic temp-and-rename used for regular
files must never replace the special file (it once turned /dev/null into a regular file)."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from imccompile.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_json_into_a_fifo_keeps_the_fifo(tmp_path, capsys):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert main([str(ROOT / "examples" / "karate_gcn.onnx"), "--json", str(fifo), "-q"]) == 0
    reader.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO was replaced by a regular file"
    report = json.loads(got[0])
    assert report["totals"]["matrix_ops"] == 4
    assert not list(tmp_path.glob("*.tmp*"))


def test_json_to_a_directory_is_a_usage_error(tmp_path, capsys):
    assert main([str(ROOT / "examples" / "karate_gcn.onnx"), "--json", str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err
