"""``imccompile compare A/report.json B/report.json ...`` and ``imccompile compare MODEL
--target pcm --target rram``: the CLI side of `imccompile.compare`."""

from __future__ import annotations

import re
from typing import Any, Sequence

from imccompile.cli import _Parser, add_common_arguments, add_compile_options
from imccompile.errors import UsageError

EXAMPLES = """\
examples:
  imccompile compare out-pcm/report.json out-rram/report.json
  imccompile compare out-a out-b out-c                 # -o folders of earlier compiles
  imccompile compare model.onnx -t pcm -t rram -t sram --data calib.npz -o cmp
  imccompile compare model.onnx -t pcm -t my_chip.json --set adc.bits=6

The first report (or target) is the reference of every ratio. -o DIR writes compare.html,
compare.csv (base SI units) and, when compiling, each target's report.json under reports/."""


def parser() -> _Parser:
    p = _Parser(prog="imccompile compare",
                description="Compare compiles side by side: totals and per-layer energy, "
                            "latency and arrays, with ratios to the first.",
                epilog=EXAMPLES)
    p.add_argument("inputs", nargs="+", metavar="REPORT|MODEL",
                   help="two or more report.json files (or -o folders), or one .onnx model "
                        "with two or more --target")
    p.add_argument("--target", "-t", action="append", default=[], dest="targets",
                   metavar="TARGET",
                   help="compile the model onto this target (bundled name or spec JSON; "
                        "repeatable)")
    add_compile_options(p)
    p.add_argument("-o", "--out", metavar="DIR", help="write compare.html and compare.csv into DIR")
    p.add_argument("--force", action="store_true", help="replace an existing -o folder")
    add_common_arguments(p)
    return p


def run(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    from imccompile._version import __version__
    from imccompile.compare import compare_reports, comparison_csv, labels_for, load_report
    from imccompile.outputs.display import Console

    console = Console(quiet=args.quiet)
    if args.targets:
        if len(args.inputs) != 1:
            raise UsageError("compare with --target takes one model (got "
                             f"{len(args.inputs)} inputs); to compare saved reports, leave out "
                             "--target")
        if len(args.targets) < 2:
            raise UsageError("compare MODEL needs two or more --target (e.g. -t pcm -t rram)")
        _check_out(args, [args.inputs[0], *(t for t in args.targets)])
        reports = _compile_all(args, console)
        sources = list(args.targets)
    else:
        if len(args.inputs) == 1 and str(args.inputs[0]).endswith(".onnx"):
            raise UsageError("compare MODEL needs two or more --target (e.g. -t pcm -t rram)")
        if len(args.inputs) < 2:
            raise UsageError("compare needs two or more reports (report.json files or -o "
                             "folders), or one model with two or more --target")
        _check_out(args, list(args.inputs))
        reports = [load_report(p) for p in args.inputs]
        sources = list(args.inputs)
    labels = labels_for(reports, sources)
    comparison = compare_reports(reports, labels)
    from imccompile.outputs.compare_view import layers_table, render_compare_html, totals_table

    if not args.quiet:
        console.out.print(totals_table(comparison))
        console.out.print(layers_table(comparison))
    if args.out:
        from imccompile.outputs.output import write_folder
        from imccompile.outputs.report import dumps

        files: dict[str, Any] = {"compare.html": render_compare_html(comparison, __version__),
                                 "compare.csv": comparison_csv(comparison)}
        if args.targets:
            for label, report in zip(labels, reports):
                files[f"reports/{_file_name(label)}.json"] = dumps(report) + "\n"
        write_folder(args.out, files, force=args.force, option="-o")
        if not args.quiet:
            console.out.print(f"wrote {args.out}/compare.html and {args.out}/compare.csv",
                              highlight=False)
    return 0


def _file_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("._") or "target"


def _compile_all(args, console) -> list[dict[str, Any]]:
    """The model compiled onto every target (imported, and its data loaded, once)."""
    from imccompile.cli import compile_options, parse_shapes
    from imccompile.compiler import compile_prepared, prepare
    from imccompile.outputs.report import build_report

    shapes, dims = parse_shapes(args)
    options = compile_options(args, shapes, dims)
    from imccompile.spec import load_target

    for t in args.targets:  # every target valid before the first compile
        load_target(t, list(options.overrides))
    prepared = prepare(args.inputs[0], options, args.data)
    reports = []
    for t in args.targets:
        res = compile_prepared(prepared, t, options,
                               progress=console.progress(f"accuracy on {t}", args.seeds)
                               if args.data else None)
        reports.append(build_report(res))
    return reports


def _check_out(args, inputs: list[str]) -> None:
    if not args.out:
        return
    from pathlib import Path

    from imccompile.outputs.output import FOLDER_RESERVE, check_keeps, check_path

    check_path("-o", args.out, FOLDER_RESERVE)
    keep = {f"the input {p}": p for p in inputs if Path(p).exists()}
    if args.data:
        keep["the --data file"] = args.data
    check_keeps("-o", args.out, keep)
    from imccompile.outputs.output import check_replaceable

    check_replaceable("-o", args.out, args.force)  # before the work; only a folder we wrote
