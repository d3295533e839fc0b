"""What makes two search settings the same study: their canonical content, not their text.

A file named by a study (model, data, target spec) counts as its resolved absolute path plus a
hash of its content, so the same file through a relative path or a symbolic link is the same
study, and other content at the same path is another one. Spec overrides count as the values
they leave (the last ``--set`` of a field wins) in field order, so the order of ``--set``s
does not matter.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Any, Sequence

from imccompile.errors import UsageError

_CHUNK = 2**20


def resolved(path: str) -> str:
    """The absolute path of ``path`` with symbolic links resolved."""
    return os.path.realpath(os.path.abspath(path))


def content_hash(path: str, what: str) -> str:
    """The SHA-256 of the file ``path`` (hex), or a UsageError naming ``what`` when it cannot be
    read. Computed once per (file, size, modification time)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise UsageError(f"{what} {path}: cannot read: {e.strerror or e}") from None
    return _hash(resolved(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _hash(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror or e}") from None
    return h.hexdigest()


def file_identity(path: str | None, what: str) -> tuple[str | None, str | None]:
    """(resolved path, content hash) of a file a study names; a name that is no file (a
    bundled target) is kept as written, without a hash."""
    if path is None:
        return None, None
    if not os.path.isfile(path):
        return path, None
    return resolved(path), content_hash(path, what)


def canonical_overrides(overrides: Sequence[str]) -> list[str]:
    """``--set`` texts as the values they leave: one ``PATH=JSON`` per field (the last one given
    wins, as in the spec loader), sorted by field."""
    from imccompile.spec import parse_override

    final: dict[str, Any] = {}
    for text in overrides:
        path, value = parse_override(text)
        final.pop(path, None)
        final[path] = value
    return [f"{p}={json.dumps(final[p], sort_keys=True)}" for p in sorted(final)]
