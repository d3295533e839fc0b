"""imccompile: compile ONNX models onto in-memory-computing crossbar hardware."""

from __future__ import annotations

from imccompile._version import __version__
from imccompile.errors import ImcCompileError

__all__ = ["__version__", "ImcCompileError"]
