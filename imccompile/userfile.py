"""Reading a small text file the user names (a target spec, a search space): bounded in size.

A path may name a device or a pipe (``/dev/zero``, ``<(echo ...)``): the file is read in
pieces and refused as soon as it passes the bound, so an endless or huge file costs at most
the bound in memory and time, never the machine.
"""

from __future__ import annotations

import os

from imccompile.errors import ImcCompileError

# Assumption: a target spec or a search space is a few kB of JSON (the bundled specs are under
# 10 kB); 16 MiB is far beyond any real one and cheap to read.
MAX_TEXT_BYTES = 16 * 2**20


def read_text(path: str | os.PathLike[str], label: str, error: type[ImcCompileError],
              limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of ``path``, or ``error`` naming ``label``: missing, a folder, unreadable,
    not UTF-8, or larger than ``limit`` bytes (checked while reading)."""
    try:
        with open(path, "rb") as f:
            chunks: list[bytes] = []
            size = 0
            while size <= limit:
                chunk = f.read(min(2**20, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise error(f"{label}: no such file") from None
    except IsADirectoryError:
        raise error(f"{label}: is a directory, expected a JSON file") from None
    except OSError as e:
        raise error(f"{label}: cannot read: {e.strerror or e}") from None
    if size > limit:
        raise error(f"{label}: larger than {limit // 2**20} MiB (or endless, like a device); "
                    "expected a JSON file of a few kB") from None
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{label}: cannot read: not UTF-8 text") from None
