"""``imccompile sweep MODEL --target T --vary FIELD=4..8 [...] -o DIR``: the CLI side of
`imccompile.sweep`."""

from __future__ import annotations

import argparse
from typing import Sequence

from imccompile.cli import _Parser, add_common_arguments, add_compile_options

EXAMPLES = """\
examples:
  imccompile sweep model.onnx -t pcm --vary adc.bits=4..8
  imccompile sweep model.onnx -t pcm --vary adc.bits=4..8 --data calib.npz --seeds 3 -o sweep
  imccompile sweep model.onnx -t rram --vary array.rows=64,128,256 --vary adc.bits=6,8 --jobs 2

Every point is a full compile with the other options (--set first, then the point's values);
a value must be valid for the spec field (and, for a search knob such as adc.bits, listed in
the target's search lists, as for --set). -o DIR writes sweep.csv (base SI units: energy_j,
latency_s, area_mm2, ...) and sweep.html (each figure against the knobs)."""


def parser() -> _Parser:
    p = _Parser(prog="imccompile sweep",
                description="Compile a model over a grid of spec settings and tabulate energy, "
                            "latency, throughput, area, arrays and (with --data) accuracy.",
                epilog=EXAMPLES)
    p.add_argument("model", help="path to an .onnx model")
    p.add_argument("--target", "-t", required=True,
                   help="bundled target name (pcm, rram, sram) or a spec JSON path")
    p.add_argument("--vary", action="append", required=True, metavar="FIELD=VALUES",
                   help="a spec field and its values: LOW..HIGH (integers) or V1,V2,... "
                        "(repeatable: the grid of every combination)")
    add_compile_options(p)
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="compile N points at a time in worker processes (default 1)")
    p.add_argument("-o", "--out", metavar="DIR", help="write sweep.csv and sweep.html into DIR")
    p.add_argument("--force", action="store_true", help="replace an existing -o folder")
    add_common_arguments(p)
    return p


def run(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    from imccompile._version import __version__
    from imccompile.cli import compile_options, parse_shapes
    from imccompile.outputs.display import Console
    from imccompile.sweep import Knob, run_sweep, sweep_csv

    knobs = [Knob.parse(v) for v in args.vary]
    _check_out(args)
    shapes, dims = parse_shapes(args)
    options = compile_options(args, shapes, dims)
    console = Console(quiet=args.quiet)
    from imccompile.sweep import grid

    total = len(grid(knobs))
    progress = console.progress("sweep", total)
    result = run_sweep(args.model, args.target, options, knobs, data=args.data, jobs=args.jobs,
                       progress=progress)
    from imccompile.outputs.sweep_view import render_sweep_html, sweep_table

    if not args.quiet:
        console.out.print(sweep_table(result))
    if args.out:
        from imccompile.outputs.output import write_folder

        write_folder(args.out, {"sweep.csv": sweep_csv(result),
                                "sweep.html": render_sweep_html(result, __version__)},
                     force=args.force, option="-o")
        if not args.quiet:
            console.out.print(f"wrote {args.out}/sweep.csv and {args.out}/sweep.html",
                              highlight=False)
    return 0


def _check_out(args: argparse.Namespace) -> None:
    """Refuse an existing -o folder (without --force), or one holding an input, before any
    work."""
    if not args.out:
        return
    from pathlib import Path

    from imccompile.errors import UsageError
    from imccompile.outputs.output import FOLDER_RESERVE, check_keeps, check_path

    check_path("-o", args.out, FOLDER_RESERVE)
    inputs = {"the input model": args.model}
    if args.data:
        inputs["the --data file"] = args.data
    if Path(args.target).exists():
        inputs["the --target spec"] = args.target
    check_keeps("-o", args.out, inputs)
    from imccompile.outputs.output import check_replaceable

    check_replaceable("-o", args.out, args.force)  # before the work; only a folder we wrote
