"""Output folders written atomically: everything goes to a temporary sibling folder, which is
renamed into place only when complete, so a reader never sees a half-written folder. Replacing
an existing folder (--force) swaps the two in one step where the system allows it (Linux
renameat2), so the destination is never missing either."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Union

from imccompile.errors import UsageError

if TYPE_CHECKING:
    from imccompile.result import CompileResult

Content = Union[bytes, str, Callable[[Path], None]]

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where the
    system or file system cannot."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


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
        if dest.exists() and _exchange(tmp, dest):  # the old folder is now at tmp
            shutil.rmtree(tmp, ignore_errors=True)
            return dest
        old = None
        if dest.exists():  # no atomic exchange here: a short window without dest
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


def output_files(res: CompileResult | None, report: dict[str, Any], *,
                 program: Mapping[str, Content] | None = None,
                 pareto_csv: str | None = None) -> dict[str, Content]:
    """The files of an output folder (``-o DIR``): report.json, report.html, the simulation
    model when the compile had data, pareto.csv after a search, the program image."""
    from imccompile.outputs.html_report import render_html
    from imccompile.outputs.report import dumps

    files: dict[str, Content] = {"report.json": dumps(report) + "\n",
                                 "report.html": render_html(report)}
    if res is not None and res.calibration is not None:
        from imccompile.simulate import simulation_parts_of

        sim_model = simulation_parts_of(res, 0)
        if sim_model.feeds:  # big: written from the arrays (external data when over 2 GB)
            def write_simulation(path: Path) -> None:
                sim_model.save(str(path))

            files["simulation.onnx"] = write_simulation
        else:
            files["simulation.onnx"] = sim_model.model.SerializeToString()
    if pareto_csv is not None:
        files["pareto.csv"] = pareto_csv
    for name, content in (program or {}).items():
        files[f"program/{name}"] = content
    return files


def write_program(res: CompileResult, path: str | os.PathLike[str], *,
                  force: bool = False) -> Path:
    """Write the program image of a compile into the folder ``path`` (atomically; an existing
    folder is replaced only with ``force``)."""
    from imccompile.program import files

    return write_folder(path, files(res), force=force)
