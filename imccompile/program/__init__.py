"""Program images: what a compiled model programs into the hardware, and a reference executor.

A program image is a folder (format: docs/program-format.md)::

    placement.json      every array used: location and what it holds (placement.schema.json)
    conductances.npz    target conductance matrix per array (µS); per layer the decode tables
    schedule.json       the ordered steps of one inference (schedule.schema.json)
    graph.onnx          the digital ops, with a placeholder node per crossbar layer

API::

    files = imccompile.program.files(result)        # name -> content (for output.write_folder)
    imccompile.program.write(result, "prog/")        # write the folder atomically
    image = imccompile.program.load("prog/")         # read + validate (ProgramError on problems)
    outputs = imccompile.program.run(image, {"input": x})
    weights = imccompile.program.layer_weights(image)   # name -> (codes, step)

`load`, `run` and `layer_weights` read only the folder (no compiler IR).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from imccompile.program.execute import crossbar, layer_codes, layer_weights, run
from imccompile.program.image import FORMAT, Image, ProgramError, load, schema_errors

if TYPE_CHECKING:
    from imccompile.result import CompileResult

__all__ = ["FORMAT", "Image", "ProgramError", "crossbar", "files", "layer_codes",
           "layer_weights", "load", "run", "schema_errors", "write"]


def files(result: CompileResult) -> dict[str, str | bytes | Callable[[Path], None]]:
    """The image's files for a CompileResult: name -> bytes or text."""
    from imccompile.program.build import build

    return build(result)


def write(result: CompileResult, path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write the program image of a CompileResult into the folder ``path`` (atomically; an
    existing folder is replaced only with ``force``): `imccompile.outputs.output.write_program`."""
    from imccompile.outputs.output import write_program

    return write_program(result, path, force=force)
