"""imccompile: compile ONNX models onto in-memory-computing crossbar hardware.

Public API (documented in README.md): ``compile``, ``CompileOptions``, ``CompileResult``,
``load_target``, ``import_model``, the error classes. Reports and files: ``imccompile.outputs``.
"""

from __future__ import annotations

from imccompile._version import __version__
from imccompile.compiler import compile, compile_graph
from imccompile.options import CompileOptions
from imccompile.result import Accuracy, CompileResult
from imccompile.errors import (
    DataError, ImcCompileError, MappingError, ModelImportError, PassError, SpecError,
    UnsupportedOpError,
)
from imccompile.frontend import import_model
from imccompile.spec import load_target

__all__ = [
    "__version__", "compile", "compile_graph", "CompileOptions", "CompileResult", "Accuracy",
    "import_model", "load_target",
    "ImcCompileError", "ModelImportError", "UnsupportedOpError", "SpecError", "MappingError",
    "PassError", "DataError",
]
