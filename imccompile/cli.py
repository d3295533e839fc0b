"""Command line: ``imccompile [compile] MODEL.onnx [--target pcm] ...`` and the commands
``targets``, ``passes``, ``sweep``, ``compare``, ``docs`` (each in its cli_*.py module, imported
only when it runs: ``--help`` and ``--version`` load neither onnx nor numpy).

Exit codes: 0 ok, 1 usage or input error (one message on stderr), 2 internal error.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from imccompile._version import __version__
from imccompile.errors import ImcCompileError, UsageError

if TYPE_CHECKING:
    from imccompile.options import CompileOptions


COMMANDS = {  # name -> what it does (the top-level --help lists them)
    "compile": "compile a model onto a target (the default: 'imccompile MODEL ...')",
    "targets": "list the bundled targets, or print one resolved spec",
    "passes": "list the compression passes and their options",
    "sweep": "compile a grid of spec settings (e.g. adc.bits=4..8) and tabulate every metric",
    "compare": "compare reports, or one model compiled onto several targets, side by side",
    "docs": "print where the installed documentation is",
}
_RUNNERS = {  # command -> (module, function): imported only when the command runs
    "targets": ("imccompile.cli_info", "run_targets"),
    "passes": ("imccompile.cli_info", "run_passes"),
    "docs": ("imccompile.cli_info", "run_docs"),
    "sweep": ("imccompile.cli_sweep", "run"),
    "compare": ("imccompile.cli_compare", "run"),
}

COMMAND_LIST = "commands (imccompile COMMAND --help for each):\n" + "".join(
    f"  {name:<9} {what}\n" for name, what in COMMANDS.items())
COMPILE_EXAMPLES = """\
examples:
  imccompile model.onnx                                  # the imported IR only
  imccompile model.onnx --target pcm --data calib.npz --seeds 5 -o out
  imccompile model.onnx -t rram --set adc.bits=6 --passes 'quantize{weight_bits=4}'
  imccompile model.onnx -t pcm --data calib.npz --search 100 --storage sqlite:///s.db -o out
  imccompile sweep model.onnx -t pcm --vary adc.bits=4..8 --data calib.npz -o sweep
  imccompile compare model.onnx -t pcm -t rram -o cmp

documentation: README.md, and the files 'imccompile docs' lists (installed with the package)."""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as exit 1, no abbreviated options, and "did you mean"."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)  # --seed must not silently mean --seeds
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # argparse exits 2 by default; usage errors are 1 here
        raise UsageError(f"{message}{self._suggestion(message)} (see {self.prog} --help)")

    def _suggestion(self, message: str) -> str:
        if not message.startswith("unrecognized arguments:"):
            return ""
        import difflib

        known = [o for o in self._option_string_actions if o.startswith("--")]
        for word in message.split(":", 1)[1].split():
            if word.startswith("--"):
                close = difflib.get_close_matches(word.split("=", 1)[0], known, n=2, cutoff=0.6)
                if close:
                    return f"; did you mean {' or '.join(close)}?"
        return ""


def _parser(prog: str = "imccompile") -> argparse.ArgumentParser:
    """The compile command's parser (``imccompile [compile] MODEL [options]``)."""
    p = _Parser(
        prog=prog,
        usage=f"{prog} [compile] MODEL [options]\n       imccompile {{{','.join(list(COMMANDS)[1:])}}} ..."
              if prog == "imccompile" else None,
        description="Compile an ONNX model onto in-memory-computing crossbar hardware: mapping, "
                    "energy/latency/area and accuracy under device noise.\n\n" + COMMAND_LIST,
        epilog=COMPILE_EXAMPLES)
    add_compile_arguments(p)
    return p


def add_compile_arguments(p: argparse.ArgumentParser) -> None:
    """Every argument of the compile command."""
    p.add_argument("model", help="path to an .onnx model")
    p.add_argument("--target", "-t", help="bundled target name (e.g. pcm; 'imccompile targets' "
                   "lists them) or a spec JSON path; without it only the imported IR is shown")
    add_compile_options(p)
    p.add_argument("--sensitivity", action="store_true",
                   help="with --data: every crossbar layer's accuracy drop when it alone is on "
                        "the hardware, ranked (terminal, report.json, HTML)")
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
    add_common_arguments(p, verbose=True)
    p.add_argument("--version", action="version", version=f"imccompile {__version__}")
    from imccompile.cli_search import add_arguments

    add_arguments(p)


def add_common_arguments(p: argparse.ArgumentParser, verbose: bool = False) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="print only errors")
    if verbose:
        p.add_argument("--verbose", "-v", action="store_true",
                       help="print every op, digital ones too")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")


def add_compile_options(p: argparse.ArgumentParser) -> None:
    """The options that change a compile (shared by compile, sweep and compare)."""
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
                   help="threads of the accuracy simulation: onnxruntime calls at once and noise "
                        "draws (default 1; the results do not depend on it)")
    p.add_argument("--adc-range", choices=["calibrated", "full_scale"], default="calibrated",
                   help="ADC input range per row tile: calibrated on the data (default) or the "
                        "worst case; a target with adc.out_bound fixes it")
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
    if getattr(args, "space", None) and not str(args.space).lstrip().startswith("{"):
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
    command = argv[0] if argv else ""
    if command in _RUNNERS:
        from importlib import import_module

        module, function = _RUNNERS[command]
        return int(getattr(import_module(module), function)(argv[1:]))
    if command == "compile":
        args = _parser("imccompile compile").parse_args(argv[1:])
    else:
        args = _parser().parse_args(argv)
    check_paths(args)
    from imccompile.frontend import import_model
    from imccompile.ir import print_graph
    from imccompile.outputs import display

    shapes, dims = parse_shapes(args)
    console = display.Console(quiet=args.quiet)
    if args.json == "-":  # stdout carries the JSON report: anything else printed goes to stderr
        console.to_stderr()
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
                ("--sensitivity", args.sensitivity, "it puts each layer on the hardware"),
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
    if args.sensitivity and not args.data:
        raise UsageError("--sensitivity needs --data (it measures accuracy)")
    from imccompile.outputs.output import check_replaceable

    for flag, folder in (("-o", args.out), ("--program", args.program)):
        if folder:  # refuse before the work
            check_replaceable(flag, folder, args.force)
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
            report = (reports.build_report(res, search=search, command=_command(argv))
                      if res is not None
                      else reports.search_only_report(search_result.cfg.model, search))
        else:
            res, info = cli_search.run_from_trial(args, options)
            report = reports.build_report(res, from_trial=info, command=_command(argv))
        if res is None:  # no feasible point: only the search section is written
            _finish(args, console, None, report, search_result)
            return 0
    else:
        import warnings

        from imccompile.compiler import compile as compile_model
        from imccompile.guardrails import AccuracyWarning

        with warnings.catch_warnings():  # the report's warnings print it (once, on stderr)
            warnings.simplefilter("ignore", AccuracyWarning)
            res = compile_model(args.model, args.target, options, data=args.data,
                                progress=console.progress("accuracy", args.seeds)
                                if args.data else None,
                                import_progress=console.lazy_progress("import"))
        report = reports.build_report(res, command=_command(argv))
    if args.emit:
        from imccompile.simulate import simulation_parts_of

        sim_model = simulation_parts_of(res, seed=0)  # over 2 GB: external data in EMIT.data
        _atomic_file(args.emit, lambda tmp: sim_model.save(
            tmp, location=os.path.basename(args.emit) + ".data"), "--emit")
    _finish(args, console, res, report, search_result)
    return 0


_OUTPUT_OPTIONS = ("--json", "-o", "--out", "--program", "--emit")  # take a value
_OUTPUT_FLAGS = ("--force", "-q", "--quiet", "-v", "--verbose", "--debug")


def _command(argv: Sequence[str]) -> str:
    """The command line that computes the report, on one line, shell-quoted: as typed, without
    the options that only say where and how loudly to write it (so the report does not depend
    on where it is written)."""
    import shlex

    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in _OUTPUT_OPTIONS:
            skip = True
        elif a in _OUTPUT_FLAGS or a.startswith(tuple(f"{o}=" for o in _OUTPUT_OPTIONS)):
            continue
        else:
            out.append(a)
    return shlex.join(["imccompile", *out])


def parse_shapes(args: argparse.Namespace) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """The --input-shape and --dim values: (static dims by input, sizes by dimension name)."""
    from imccompile.frontend import parse_dim, parse_input_shape

    return (dict(parse_input_shape(s) for s in args.input_shape),
            dict(parse_dim(s) for s in args.dim))


def compile_options(args: argparse.Namespace, shapes: dict[str, tuple[int, ...]],
                    dims: dict[str, int] | None = None) -> CompileOptions:
    """The options of the compile (and of every search trial) the command line asks for."""
    from imccompile.options import CompileOptions, sim_options

    from imccompile.cli_search import budget

    sim = sim_options(ideal=args.ideal, bit_accurate=args.bit_accurate, adc_range=args.adc_range)
    return CompileOptions.make(overrides=args.overrides, passes=args.passes, input_shapes=shapes,
                               dims=dims,
                               overflow=args.overflow,
                               replicate=_parse_pairs(args.replicate, "--replicate"),
                               auto_replicate=args.auto_replicate, samples=args.samples,
                               seeds=args.seeds, sim=sim, metric=args.metric,
                               sensitivity=getattr(args, "sensitivity", False),
                               max_accuracy_drop=budget(args), threads=args.threads)


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

        pareto = trials = None
        if search_result is not None:
            from imccompile.cli_search import pareto_csv, trials_csv

            pareto, trials = pareto_csv(search_result), trials_csv(search_result)
        write_folder(args.out, output_files(res, report, program=program, pareto_csv=pareto,
                                            trials_csv=trials),
                     force=args.force, option="-o")
    if args.json != "-" and res is not None:
        console.cost_tables(report, verbose=args.verbose)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        code = run(argv)
    except ImcCompileError as e:
        from imccompile.outputs.display import printable

        print(f"imccompile: error: {printable(str(e))}", file=sys.stderr)
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
