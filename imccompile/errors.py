"""The error hierarchy. Every error a user can cause derives from ImcCompileError.

The CLI turns an ImcCompileError into exit code 1 and one message on stderr; anything else is an
internal error (exit code 2).
"""

from __future__ import annotations


class ImcCompileError(Exception):
    """Root of every error caused by the user's input (model, spec, options, data)."""


class ModelImportError(ImcCompileError):
    """The ONNX model cannot be read, checked, shaped or classified."""


class UnsupportedOpError(ModelImportError):
    """An operator the frontend cannot handle; the message names the op type and node."""


class SpecError(ImcCompileError):
    """A hardware target spec is missing, malformed or out of range."""


class MappingError(ImcCompileError):
    """The model cannot be mapped onto the target as asked."""


class PassError(ImcCompileError):
    """A pass or pipeline is unknown, misconfigured or failed."""


class DataError(ImcCompileError):
    """Calibration / evaluation data does not match the model."""


class UsageError(ImcCompileError):
    """Command-line usage error."""
