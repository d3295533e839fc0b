"""Command line: ``imccompile MODEL.onnx [--target pcm] ...`` and ``imccompile targets [show NAME]``.

Exit codes: 0 ok, 1 usage or input error (one message on stderr), 2 internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from imccompile._version import __version__
from imccompile.errors import ImcCompileError, UsageError

if TYPE_CHECKING:
    from imccompile.options import CompileOptions


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 by default; usage errors are 1 here
        raise UsageError(f"{message} (see imccompile --help)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="imccompile",
        description="Compile an ONNX model onto in-memory-computing crossbar hardware: mapping, "
                    "energy/latency/area and accuracy under device noise.",
        epilog="Subcommands: 'imccompile targets' lists bundled targets; "
               "'imccompile targets show NAME' prints a resolved spec.")
    p.add_argument("model", help="path to an .onnx model")
    p.add_argument("--target", "-t", help="bundled target name (pcm, rram, sram) or a spec JSON "
                   "path; without it only the imported IR is shown")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a spec field, e.g. --set adc.bits=6 (repeatable)")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,...",
                   help="static dims for a dynamic input (repeatable)")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE",
                   help="size of a symbolic dimension, set in every input that has it, e.g. "
                        "--dim batch=1 --dim sequence=128 (repeatable; --input-shape wins for "
                        "its input)")
    p.add_argument("--passes", metavar="PIPELINE",
                   help="compression pipeline, e.g. 'prune{ratio=0.5,granularity=column},"
                        "quantize{weight_bits=4,act_bits=8}'")
    p.add_argument("--overflow", choices=["chips", "reload", "error"], default="chips",
                   help="model larger than one chip: use more chips (default), reload weights "
                        "each inference, or stop with an error")
    p.add_argument("--replicate", action="append", default=[], metavar="LAYER=N",
                   help="copies of a layer (name or glob) to balance the pipeline (repeatable)")
    p.add_argument("--auto-replicate", action="store_true",
                   help="give spare arrays of the chip to the pipeline's bottleneck layers")
    p.add_argument("--data", metavar="NPZ",
                   help="calibration/evaluation data: arrays by input name, optional 'labels'; "
                        "evaluates accuracy under the hardware (needs --target)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="noise draws for the accuracy, reported as mean ± std (default 1)")
    p.add_argument("--samples", type=int, metavar="N", help="use only the first N samples of --data")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="onnxruntime threads of the accuracy simulation (default 1; the results "
                        "do not depend on it)")
    p.add_argument("--adc-range", choices=["calibrated", "full_scale"], default="calibrated",
                   help="ADC input range per row tile: calibrated on the data (default) or the "
                        "worst case")
    p.add_argument("--ideal", action="store_true",
                   help="simulate without device noise, ADC, DAC and weight quantization (checks "
                        "the emitted model against the source)")
    p.add_argument("--bit-accurate", action="store_true",
                   help="simulate input bit by input bit and weight slice by weight slice, each "
                        "partial sum through the ADC (slower, closer to the hardware)")
    p.add_argument("--metric", choices=["auto", "top1", "agreement", "cosine", "relerr", "snr"],
                   default="auto",
                   help="headline accuracy metric (the search's accuracy objective): auto (top1 "
                        "against labels; agreement for class scores; else cosine), top1, "
                        "agreement, cosine, relerr (minimized) or snr (dB); every output is "
                        "reported with the metrics that fit it")
    p.add_argument("--emit", metavar="PATH",
                   help="write the simulation ONNX model (noise seed 0; needs --data)")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON ('-' for stdout)")
    p.add_argument("-o", "--out", metavar="DIR",
                   help="write report.json, report.html (a self-contained page with plots) and, "
                        "with --data, simulation.onnx into DIR, atomically")
    p.add_argument("--program", metavar="DIR",
                   help="write the program image (placement.json, conductances.npz, "
                        "schedule.json, graph.onnx; see docs/program-format.md) into DIR; -o "
                        "DIR also writes it as DIR/program/")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --out / --program folder")
    p.add_argument("--print-ir", action="store_true", help="print the imported IR and exit")
    p.add_argument("--quiet", "-q", action="store_true", help="print only errors")
    p.add_argument("--verbose", "-v", action="store_true", help="print every op, digital ones too")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    p.add_argument("--version", action="version", version=f"imccompile {__version__}")
    from imccompile.cli_search import add_arguments

    add_arguments(p)
    return p


def _parse_pairs(items: Sequence[str], what: str) -> dict[str, int]:
    out = {}
    for it in items:
        name, sep, val = it.rpartition("=")
        try:
            out[name] = int(val)
        except ValueError:
            name = ""
        if not sep or not name:
            raise UsageError(f"{what} {it!r}: expected NAME=INTEGER")
    return out


def _targets_cmd(argv: Sequence[str]) -> int:
    from imccompile.spec import bundled_targets, load_target, target_summary

    if not argv:
        for name in bundled_targets():
            print(target_summary(load_target(name)))
        return 0
    if argv[0] == "show" and len(argv) >= 2:
        overrides = []
        rest = list(argv[2:])
        while rest:
            flag = rest.pop(0)
            if flag == "--set" and rest:
                overrides.append(rest.pop(0))
            else:
                raise UsageError(f"targets show: unexpected argument {flag!r} "
                                 "(usage: imccompile targets show NAME [--set FIELD=VALUE ...])")
        print(json.dumps(load_target(argv[1], overrides).to_dict(), indent=2))
        return 0
    raise UsageError("usage: imccompile targets [show NAME [--set FIELD=VALUE ...]]")


def _atomic_file(path: str, write, option: str) -> None:
    """Write ``path`` through a temporary sibling renamed into place; the temporary is removed
    whatever fails (a full disk, an interrupt), so no ``PATH.tmpPID`` is left behind."""
    if os.path.exists(path) and not os.path.isfile(path):
        if os.path.isdir(path):
            raise UsageError(f"{option} {path}: is a directory, expected a file path")
        try:  # a device or pipe (/dev/stdout, /dev/null, a FIFO): write into it, never replace it
            write(path)
        except OSError as e:
            raise UsageError(f"{option} {path}: cannot write: {e.strerror or e}") from None
        return
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise UsageError(f"{option} {path}: cannot write: {e.strerror or e}") from None
        raise


def _write_json(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text + "\n")
        return

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text + "\n")

    _atomic_file(path, write, "--json")


def _storage_file(url: str | None) -> str | None:
    """The local file of an Optuna storage URL (sqlite:///PATH, or a journal file path)."""
    if not url:
        return None
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):] or None
    return None if "://" in url else url


def check_paths(args: argparse.Namespace) -> None:
    """Refuse, before any work, output paths that cannot be written or that would destroy the
    user's files: an empty path or a name too long; an -o / --program folder (written, and with
    --force replaced, as a whole) that is or holds an input file (model, data, spec, space,
    study storage) or another output; --json / --emit over an input file."""
    from imccompile.outputs.output import (FILE_RESERVE, FOLDER_RESERVE, check_keeps, check_path,
                                           is_within)

    folders = {opt: path for opt, path in (("-o", args.out), ("--program", args.program))
               if path is not None}
    files = {opt: path for opt, path in (("--json", args.json), ("--emit", args.emit))
             if path is not None and not (opt == "--json" and path == "-")}
    for opt, path in folders.items():
        check_path(opt, path, FOLDER_RESERVE)
    for opt, path in files.items():
        check_path(opt, path, FILE_RESERVE + (len(".data") if opt == "--emit" else 0))
    inputs = {"the input model": args.model}
    if args.data:
        inputs["the --data file"] = args.data
    if args.target and os.path.exists(args.target):
        inputs["the --target spec"] = args.target
    if getattr(args, "space", None):
        inputs["the --space file"] = args.space
    storage = _storage_file(getattr(args, "storage", None))
    if storage:
        inputs["the study storage"] = storage
    for opt, folder in folders.items():
        check_keeps(opt, folder, inputs)
        for other, path in {**files, **folders}.items():
            if other != opt and is_within(path, folder):
                why = (" (-o DIR already writes the program image as DIR/program/)"
                       if other == "--program" else "")
                raise UsageError(f"{other} {path}: inside {opt} {folder}, which is written (and "
                                 f"with --force replaced) as a whole{why}; choose a path outside "
                                 "it")
    for opt, path in files.items():
        for what, src in inputs.items():
            if os.path.exists(path) and os.path.exists(src) and os.path.samefile(path, src):
                raise UsageError(f"{opt} {path}: is {what}; choose another path for the output")
    if args.json and args.emit and args.json != "-" and \
            os.path.abspath(args.json) == os.path.abspath(args.emit):
        raise UsageError(f"--json {args.json}: the same path as --emit; give them different paths")


def run(argv: Sequence[str]) -> int:
    if argv and argv[0] == "targets":
        return _targets_cmd(argv[1:])
    args = _parser().parse_args(argv)
    check_paths(args)
    from imccompile.frontend import import_model, parse_dim, parse_input_shape
    from imccompile.ir import print_graph
    from imccompile.outputs import display

    shapes = dict(parse_input_shape(s) for s in args.input_shape)
    dims = dict(parse_dim(s) for s in args.dim)
    console = display.Console(quiet=args.quiet)
    if args.print_ir:
        sys.stdout.write(print_graph(import_model(args.model, shapes, dims=dims)))
        return 0
    if not args.target:
        if args.passes:
            raise UsageError("--passes needs a --target (compression is mapped onto hardware)")
        if args.program:
            raise UsageError("--program needs a --target (the image is programmed into it)")
        for flag, given, why in (
                ("--data", args.data, "accuracy is simulated on the hardware"),
                ("--emit", args.emit, "the simulation model is of the hardware"),
                ("-o", args.out, "the folder holds the hardware report"),
                ("--search", args.search is not None, "it searches hardware knobs"),
                ("--from-trial", args.from_trial is not None, "a trial is compiled onto it"),
                ("--space", args.space, "it is the search's space"),
                ("--fix", args.fix, "it fixes search knobs")):
            if given:
                raise UsageError(f"{flag} needs a --target ({why}); without --target only the "
                                 "imported IR is shown")
        graph = import_model(args.model, shapes, dims=dims)
        from imccompile.outputs.report import dumps, graph_report

        report = graph_report(graph)
        if args.json:
            _write_json(args.json, dumps(report))
        if args.json != "-":
            console.graph_table(report, verbose=args.verbose)
        return 0
    options = compile_options(args, shapes, dims)
    if args.emit and not args.data:
        raise UsageError("--emit needs --data (the simulation model is calibrated on it)")
    if args.out and Path(args.out).exists() and not args.force:  # refuse before the work
        raise UsageError(f"{args.out}: already exists; choose another folder or pass --force "
                         "to replace it")
    if args.program and Path(args.program).exists() and not args.force:
        raise UsageError(f"{args.program}: already exists; choose another folder or pass "
                         "--force to replace it")
    from imccompile.outputs import report as reports

    search_result = None
    if args.search is not None or args.from_trial is not None:
        if args.passes:
            raise UsageError("--passes and --search/--from-trial exclude each other: the search "
                             "writes the pipeline of every trial")
        from imccompile import cli_search

        if args.search is not None:
            if args.from_trial is not None:
                raise UsageError("--search and --from-trial exclude each other")
            search_result = cli_search.run_search(args, console, options)
            res = search_result.chosen_result
            search = cli_search.search_section(search_result, args.storage)
            report = (reports.build_report(res, search=search) if res is not None
                      else reports.search_only_report(search_result.cfg.model, search))
        else:
            res, info = cli_search.run_from_trial(args, options)
            report = reports.build_report(res, from_trial=info)
        if res is None:  # no feasible point: only the search section is written
            _finish(args, console, None, report, search_result)
            return 0
    else:
        from imccompile.compiler import compile as compile_model

        res = compile_model(args.model, args.target, options, data=args.data,
                            progress=console.progress("accuracy", args.seeds) if args.data else None,
                            import_progress=console.lazy_progress("import"))
        report = reports.build_report(res)
    if args.emit:
        from imccompile.simulate import simulation_parts_of

        sim_model = simulation_parts_of(res, seed=0)  # over 2 GB: external data in EMIT.data
        _atomic_file(args.emit, lambda tmp: sim_model.save(
            tmp, location=os.path.basename(args.emit) + ".data"), "--emit")
    _finish(args, console, res, report, search_result)
    return 0


def compile_options(args: argparse.Namespace, shapes: dict[str, tuple[int, ...]],
                    dims: dict[str, int] | None = None) -> CompileOptions:
    """The options of the compile (and of every search trial) the command line asks for."""
    from imccompile.options import CompileOptions, sim_options

    sim = sim_options(ideal=args.ideal, bit_accurate=args.bit_accurate, adc_range=args.adc_range)
    return CompileOptions.make(overrides=args.overrides, passes=args.passes, input_shapes=shapes,
                               dims=dims,
                               overflow=args.overflow,
                               replicate=_parse_pairs(args.replicate, "--replicate"),
                               auto_replicate=args.auto_replicate, samples=args.samples,
                               seeds=args.seeds, sim=sim, metric=args.metric,
                               threads=args.threads)


def _finish(args, console, res, report: dict, search_result) -> None:
    """Write --json / --out / --program and print the tables."""
    from imccompile.outputs.report import dumps

    if args.json:
        _write_json(args.json, dumps(report))
    program = None
    if res is not None and (args.out or args.program):
        from imccompile.program import files as program_files

        program = program_files(res)
    if args.program and program is not None:
        from imccompile.outputs.output import write_folder

        write_folder(args.program, program, force=args.force, option="--program")
    if args.out:
        from imccompile.outputs.output import output_files, write_folder

        pareto = None
        if search_result is not None:
            from imccompile.cli_search import pareto_csv

            pareto = pareto_csv(search_result)
        write_folder(args.out, output_files(res, report, program=program, pareto_csv=pareto),
                     force=args.force, option="-o")
    if args.json != "-" and res is not None:
        console.cost_tables(report, verbose=args.verbose)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        code = run(argv)
    except ImcCompileError as e:
        print(f"imccompile: error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("imccompile: interrupted", file=sys.stderr)
        code = 130
    except SystemExit as e:  # --help / --version
        code = int(e.code or 0)
    except MemoryError:
        print("imccompile: error: out of memory", file=sys.stderr)
        code = 1
    except Exception as e:  # anything else is our bug
        if debug:
            traceback.print_exc()
        print(f"imccompile: internal error: {type(e).__name__}: {e}\n"
              "  (this is a bug in imccompile; rerun with --debug for the traceback and report it)",
              file=sys.stderr)
        code = 2
    return code


if __name__ == "__main__":
    sys.exit(main())
