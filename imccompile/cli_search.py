"""The search side of the command line: ``--search N`` and ``--from-trial N``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from imccompile.errors import UsageError
from imccompile.objectives import OBJECTIVES, SAMPLERS

if TYPE_CHECKING:
    from imccompile.search import SearchConfig, SearchResult
    from imccompile.options import CompileOptions
    from imccompile.result import CompileResult


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("search (co-optimization of compression and hardware knobs)")
    g.add_argument("--search", type=int, metavar="TRIALS",
                   help="run (or resume) a search until TRIALS trials have completed")
    g.add_argument("--objectives", default="accuracy,energy", metavar="LIST",
                   help=f"comma-separated objectives from {', '.join(OBJECTIVES)} "
                        "(default accuracy,energy)")
    g.add_argument("--max-accuracy-drop", metavar="POINTS",
                   help="accuracy budget below the float model: percentage points (1 = 0.01 of "
                        "top-1; relerr: %% of relative error; snr: dB); default 1 with --data; "
                        "'none' disables. A search keeps to it (a constraint: the chosen point is "
                        "the lowest-energy one within it); a compile over it warns")
    g.add_argument("--max-area", type=float, metavar="MM2", help="constraint: area used, mm²")
    g.add_argument("--max-arrays", type=int, metavar="N", help="constraint: arrays used")
    g.add_argument("--sampler", default="nsga2", choices=list(SAMPLERS),
                   help="Optuna sampler (default nsga2)")
    g.add_argument("--search-seed", type=int, default=0, metavar="N",
                   help="sampler seed (default 0; workers add their index)")
    g.add_argument("--storage", metavar="URL",
                   help="Optuna storage: sqlite:///study.db (resumable), postgresql://..., or "
                        "journal:/path/file.log; default in memory")
    g.add_argument("--study", metavar="NAME", help="study name in the storage "
                   "(default imccompile-<model name>)")
    g.add_argument("--n-jobs", type=int, default=1, metavar="N",
                   help="local worker processes on the same study")
    g.add_argument("--fix", action="append", default=[], metavar="KNOB=VALUE",
                   help="pin a knob: adc.bits=6, weight_bits=4 (all layers), "
                        "weight_bits:LAYER=8, prune=0, act_bits=8, array.rows=128 (repeatable)")
    g.add_argument("--space", metavar="JSON",
                   help='narrow knob ranges: {"adc.bits": [4, 6], "prune": {"high": 0.5}}')
    g.add_argument("--from-trial", type=int, metavar="N",
                   help="re-create trial N of a stored study (needs --storage and --study or the "
                        "default study name) and report it like a single compile")


def budget(args: argparse.Namespace) -> float | None:
    """``--max-accuracy-drop``: the default budget when not given, None for 'none'."""
    from imccompile.guardrails import DEFAULT_MAX_ACCURACY_DROP, parse_budget

    text = getattr(args, "max_accuracy_drop", None)  # sweep and compare have no such flag
    if text is None:
        return DEFAULT_MAX_ACCURACY_DROP
    return parse_budget(text)


def config_from_args(args: argparse.Namespace, options: CompileOptions) -> SearchConfig:
    """The study's settings: the search flags, and the compile options every trial uses."""
    from imccompile.search import SearchConfig
    from imccompile.space import load_space_file

    fix = []
    for item in args.fix:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--fix {item!r}: expected KNOB=VALUE (e.g. --fix adc.bits=6)")
        fix.append((name, value))
    space = tuple(load_space_file(args.space).items()) if args.space else ()
    objectives = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
    return SearchConfig.from_options(
        str(args.model), str(args.target), str(args.data) if args.data else None, options,
        objectives=objectives, max_accuracy_drop=_search_budget(args), max_area=args.max_area,
        max_arrays=args.max_arrays, sampler=args.sampler, seed=args.search_seed, fix=tuple(fix),
        space=space)


def _search_budget(args: argparse.Namespace) -> float | None:
    """The search's budget: the default applies with --data only (a budget given without
    --data is refused by `SearchConfig.validate`)."""
    if not args.data:
        if args.max_accuracy_drop is not None:
            raise UsageError("--max-accuracy-drop needs --data (the accuracy is measured on it)")
        return None
    return budget(args)


def pareto_csv(result) -> str:
    """pareto.csv: the front's trials, the columns of trials.csv (`imccompile.tables`)."""
    from imccompile.tables import trials_csv

    return trials_csv(result, pareto=True)


def trials_csv(result) -> str:
    """trials.csv: every trial of the study, any state (`imccompile.tables`)."""
    from imccompile.tables import trials_csv as text

    return text(result)


def print_front(console, result) -> None:
    from rich.table import Table

    from imccompile.outputs.display import si

    if console.quiet:
        return
    objs = list(result.cfg.objectives)
    t = Table(title=f"Pareto front of study {result.study.study_name} "
                    f"({len(result.trials)} completed trials)", title_justify="left")
    t.add_column("trial", justify="right")
    for o in objs:
        t.add_column(o, justify="right")
    t.add_column("arrays", justify="right")
    t.add_column("per layer: weight bits/prune", overflow="fold")
    t.add_column("knobs", overflow="fold")
    chosen = result.chosen["trial"] if result.chosen else None
    for p in result.pareto:
        v = p["values"]
        cells = []
        for o in objs:
            unit = OBJECTIVES[o][2]
            cells.append(f"{v[o]:.4f}" if not unit else si(v[o], unit))
        knobs = " ".join(p["overrides"]) or "spec defaults"
        mark = ("*" if p["trial"] == chosen else "") + (" (defaults)" if p["trial"] == 0 else "")
        t.add_row(f"{p['trial']}{mark}", *cells, str(int(v["arrays"])), per_layer(p["params"]),
                  knobs)
    console.out.print(t)
    if result.baseline:
        b = result.baseline["values"]
        parts = [f"{o} {si(b[o], OBJECTIVES[o][2]) if OBJECTIVES[o][2] else format(b[o], '.4f')}"
                 for o in objs if o in b]
        if result.float_accuracy is not None:
            parts.append(f"float model accuracy {result.float_accuracy:.4g}")
        console.out.print("baseline (target defaults, no passes; trial 0 is the target's "
                          "default point): " + ", ".join(parts),
                          highlight=False)
    if result.chosen:
        console.out.print(f"chosen: trial {result.chosen['trial']} (*), {result.rule}",
                          highlight=False)
        console.out.print("re-create with:", highlight=False)
        # one line whatever the terminal width (soft wrap off, no rich markup): paste it
        console.out.print(result.recreate_command(), highlight=False, markup=False,
                          soft_wrap=True, overflow="ignore", crop=False)
    else:
        console.out.print(f"no chosen point: {result.rule}", highlight=False)


def per_layer(params: dict[str, Any]) -> str:
    """A trial's per-layer knobs, compactly: ``L1 4b/0.25 L2 8b`` (layers in the order the
    search suggests them: graph order; prune ratio shown when not 0)."""
    layers: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        knob, sep, layer = key.partition(":")
        if sep and knob in ("weight_bits", "prune"):
            layers.setdefault(layer, {})[knob] = value
    parts = []
    for i, (_, k) in enumerate(layers.items()):
        text = f"L{i + 1} " + (f"{k['weight_bits']}b" if "weight_bits" in k else "")
        if k.get("prune"):
            text += f"/{k['prune']:g}"
        parts.append(text.strip())
    return " ".join(parts)


def progress_callback(console, trials: int):
    if console.quiet:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("search"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.description}", markup=False), console=console.err, transient=True)
    task = bar.add_task("", total=trials)
    started: list[bool] = []  # the bar shows from the first trial on: an error before it prints alone

    def update(done: int, total: int, best: str) -> None:
        if not started:
            bar.start()
            started.append(True)
        bar.update(task, completed=done, description=best)
        if done >= total:
            bar.stop()

    def stop() -> None:
        if started:
            bar.stop()

    update.stop = stop  # type: ignore[attr-defined]
    return update


def run_search(args: argparse.Namespace, console, options: CompileOptions) -> SearchResult:
    """Run (or resume) the search the command line asks for and print its front."""
    from imccompile.search import search

    cfg = config_from_args(args, options)
    prog = progress_callback(console, args.search)
    try:
        result = search(cfg, args.search, storage=args.storage, study_name=args.study,
                        n_jobs=args.n_jobs, progress=prog, sensitivity=args.sensitivity)
    except KeyboardInterrupt:
        if prog is not None:
            prog.stop()
        if args.storage:
            import sys

            print(f"imccompile: search stopped; its completed trials are kept in {args.storage}: "
                  "run the same command again to resume", file=sys.stderr)
        raise
    finally:
        if prog is not None:
            prog.stop()
    print_front(console, result)
    return result


def search_section(result: SearchResult, storage: str | None) -> dict[str, Any]:
    """The report's ``search`` section."""
    return {**result.to_dict(), "storage": storage or "memory"}


def run_from_trial(args: argparse.Namespace, options: CompileOptions
                   ) -> tuple[CompileResult, dict[str, Any]]:
    """Re-create trial N of the stored study; the report's ``from_trial`` section."""
    from pathlib import Path

    from imccompile.search import recreate_trial

    if not args.storage:
        raise UsageError("--from-trial needs --storage (the study's storage URL)")
    cfg = config_from_args(args, options)
    name = args.study or f"imccompile-{Path(cfg.model).stem}"
    res, values, row = recreate_trial(cfg, args.storage, name, args.from_trial)
    stored = row["values"]
    return res, {"trial": args.from_trial, "stored_values": stored, "values": values,
                 "pipeline": row["pipeline"], "overrides": row["overrides"],
                 "same": all(stored.get(k) == values.get(k) for k in stored)}
