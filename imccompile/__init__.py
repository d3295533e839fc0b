"""imccompile: compile ONNX models onto in-memory-computing crossbar hardware.

Public API (documented in README.md): ``compile``, ``CompileOptions``, ``CompileResult``,
``load_target``, ``import_model``, the error classes. Reports and files: ``imccompile.outputs``.

The names are imported on first use (PEP 562), so that ``imccompile --help`` and other light
entry points start without loading onnx, onnxruntime and numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from imccompile._version import __version__
from imccompile.errors import (
    DataError, ImcCompileError, MappingError, ModelImportError, PassError, SpecError,
    UnsupportedOpError,
)

if TYPE_CHECKING:
    from imccompile.compiler import compile, compile_graph
    from imccompile.frontend import import_model
    from imccompile.options import CompileOptions
    from imccompile.result import Accuracy, CompileResult
    from imccompile.spec import load_target

_LAZY = {  # public name -> module that defines it
    "compile": "imccompile.compiler", "compile_graph": "imccompile.compiler",
    "CompileOptions": "imccompile.options", "CompileResult": "imccompile.result",
    "Accuracy": "imccompile.result", "import_model": "imccompile.frontend",
    "load_target": "imccompile.spec",
}

__all__ = [
    "__version__", "compile", "compile_graph", "CompileOptions", "CompileResult", "Accuracy",
    "import_model", "load_target",
    "ImcCompileError", "ModelImportError", "UnsupportedOpError", "SpecError", "MappingError",
    "PassError", "DataError",
]


def __getattr__(name: str) -> Any:
    """A public name, or a submodule (``imccompile.compiler``), imported when first asked."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif not name.startswith("__"):
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
