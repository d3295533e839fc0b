"""Output folders written atomically: everything goes to a temporary sibling folder, which is
renamed into place only when complete, so a reader never sees a half-written folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Union

from imccompile.errors import UsageError

Content = Union[bytes, str, Callable[[Path], None]]


def write_folder(out: str | os.PathLike[str], files: Mapping[str, Content], force: bool = False) -> Path:
    """Write ``files`` (name -> bytes, text, or a writer taking the target path) into ``out``.

    An existing ``out`` is refused unless ``force``; then it is replaced as a whole.
    """
    dest = Path(out)
    if dest.exists() and not force:
        raise UsageError(f"{dest}: already exists; choose another folder or pass --force to "
                         "replace it")
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest}: exists and is not a folder")
    parent = dest.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; a folder gets the usual mode
    except OSError as e:
        raise UsageError(f"{dest}: cannot create the output folder: {e.strerror}") from None
    try:
        for name, content in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if callable(content):
                content(path)
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        old = None
        if dest.exists():
            old = parent / f".{dest.name}.old-{os.getpid()}"
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UsageError(f"{dest}: cannot write the output folder: {e.strerror}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
