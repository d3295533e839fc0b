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


# The file every folder imccompile writes holds: --force replaces only a folder that has it (or an
# empty one), so it never destroys a folder of the user's.
MARKER = ".imccompile-output"
MARKER_TEXT = ("This folder was written by imccompile; `--force` may replace it as a whole.\n"
               "Delete this file to keep imccompile from ever replacing the folder.\n")


def check_replaceable(option: str, folder: str | os.PathLike[str], force: bool) -> None:
    """Refuse to write over an existing ``folder``: without ``force`` always; with it unless the
    folder is empty or holds imccompile's marker file (`MARKER`, put in every folder written)."""
    dest = Path(folder)
    if not dest.exists() and not dest.is_symlink():
        return
    if not force:
        raise UsageError(f"{option} {dest}: already exists; choose another folder or pass "
                         "--force to replace it")
    if not dest.is_dir():
        raise UsageError(f"{option} {dest}: exists and is not a folder; choose a folder path")
    try:
        empty = not any(dest.iterdir())
    except OSError as e:
        raise UsageError(f"{option} {dest}: cannot read the folder: {e.strerror}") from None
    if not empty and not (dest / MARKER).is_file():
        raise UsageError(f"{option} {dest}: --force replaces only a folder imccompile wrote "
                         f"(one holding its {MARKER} file) or an empty one; this one has no "
                         f"{MARKER}: choose another folder or remove it yourself")


# Bytes a written name gets on top of the user's, for the temporaries beside it: a folder's
# ".NAME.tmp-XXXXXXXX" / ".NAME.old-PID", a file's "NAME.tmpPID" (and --emit's "NAME.data").
FOLDER_RESERVE = 16
FILE_RESERVE = 16


def _name_max(path: str) -> int:
    """The longest file name (bytes) the file system under ``path`` takes (255 where unknown)."""
    probe = os.path.abspath(path)
    while probe and not os.path.isdir(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        return int(os.pathconf(probe or "/", "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def check_path(option: str, value: str | os.PathLike[str], reserve: int = FILE_RESERVE) -> None:
    """Refuse an output path that cannot be written: empty, or with a name the file system
    cannot hold (with ``reserve`` bytes for the temporaries written beside it)."""
    text = os.fspath(value)
    if text == "":
        raise UsageError(f"{option} '': an empty path; give a file or folder path")
    limit = _name_max(text) - reserve
    for part in Path(text).parts:
        size = len(os.fsencode(part))
        if size > limit:
            short = part if len(part) <= 40 else part[:37] + "..."
            raise UsageError(f"{option} {short}: file name too long ({size} bytes; at most "
                             f"{limit} accepted here)")


def _forms(path: str | os.PathLike[str]) -> set[str]:
    """A path as written (absolute) and with its symbolic links resolved."""
    return {os.path.abspath(path), os.path.realpath(path)}


def is_within(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """True when ``path`` is ``folder`` or lies inside it, either as written or through
    symbolic links (relative paths taken from the working directory)."""
    for p in _forms(path):
        for f in _forms(folder):
            if p == f or p.startswith(f.rstrip(os.sep) + os.sep):
                return True
    return False


def check_keeps(option: str, folder: str | os.PathLike[str],
                keep: Mapping[str, str | os.PathLike[str]]) -> None:
    """Refuse to write the folder ``folder`` (replaced as a whole) when it is, or holds, one of
    the files in ``keep`` (what -> path: the input model, the data, the spec...)."""
    for what, path in keep.items():
        if is_within(path, folder):
            raise UsageError(f"{option} {os.fspath(folder)}: holds {what} {os.fspath(path)}; the "
                             "output folder is written (and with --force replaced) as a whole: "
                             "choose a folder that does not contain it")


def write_folder(out: str | os.PathLike[str], files: Mapping[str, Content], force: bool = False,
                 keep: Mapping[str, str | os.PathLike[str]] | None = None,
                 option: str = "output folder") -> Path:
    """Write ``files`` (name -> bytes, text, or a writer taking the target path) into ``out``.

    An existing ``out`` is refused unless ``force``, and then unless it is empty or imccompile
    wrote it (`MARKER`); it is replaced as a whole. A folder that is, or holds, one of the files
    of ``keep`` (what -> path) is refused either way. The marker file is written into ``out``.
    """
    check_path(option, out, FOLDER_RESERVE)
    check_keeps(option, out, keep or {})
    check_replaceable(option, out, force)
    dest = Path(out)
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
        (tmp / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
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
                 pareto_csv: str | None = None,
                 trials_csv: str | None = None) -> dict[str, Content]:
    """The files of an output folder (``-o DIR``): report.json, report.html, the simulation
    model when the compile had data, pareto.csv and trials.csv after a search, the program
    image."""
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
    if trials_csv is not None:
        files["trials.csv"] = trials_csv
    for name, content in (program or {}).items():
        files[f"program/{name}"] = content
    return files


def write_program(res: CompileResult, path: str | os.PathLike[str], *,
                  force: bool = False) -> Path:
    """Write the program image of a compile into the folder ``path`` (atomically; an existing
    folder is replaced only with ``force``)."""
    from imccompile.program import files

    return write_folder(path, files(res), force=force, option="program folder")
