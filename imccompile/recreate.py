"""The command line that re-creates a search trial as a single compile (argv, for shlex.join).

One place for it: the terminal prints it on one line (``shlex.join``: copy-pasteable, quoted
where the shell needs it), report.json stores it (``search.recreate_command``) and the HTML
report shows it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from imccompile.guardrails import DEFAULT_MAX_ACCURACY_DROP

if TYPE_CHECKING:
    from imccompile.search import SearchConfig


def recreate_argv(cfg: SearchConfig, trial: Mapping[str, Any]) -> list[str]:
    """``imccompile MODEL --target T [--data D] --passes P --set ...`` plus the study's compile
    flags: the trial's compile (its overrides follow the user's ``--set``)."""
    argv = ["imccompile", cfg.model, "--target", cfg.target]
    if cfg.data:
        argv += ["--data", cfg.data]
    if trial.get("pipeline"):
        argv += ["--passes", str(trial["pipeline"])]
    for o in (*cfg.overrides, *trial.get("overrides", ())):
        argv += ["--set", str(o)]
    if trial.get("auto_replicate"):
        argv.append("--auto-replicate")
    return argv + compile_flags(cfg)


def compile_flags(cfg: SearchConfig) -> list[str]:
    """The study's compile flags a re-creation needs besides the trial's own."""
    argv: list[str] = []
    for k, n in cfg.replicate:
        argv += ["--replicate", f"{k}={n}"]
    if cfg.overflow != "chips":
        argv += ["--overflow", cfg.overflow]
    for name, dims in cfg.input_shapes:
        argv += ["--input-shape", f"{name}={','.join(map(str, dims))}"]
    for name, size in cfg.dims:
        argv += ["--dim", f"{name}={size}"]
    if cfg.samples is not None:
        argv += ["--samples", str(cfg.samples)]
    if cfg.seeds != 1:
        argv += ["--seeds", str(cfg.seeds)]
    sim = cfg.sim
    if not (sim.noise or sim.adc or sim.dac or sim.weights):
        argv.append("--ideal")
    if sim.bit_accurate:
        argv.append("--bit-accurate")
    if sim.adc_range != "calibrated":
        argv += ["--adc-range", sim.adc_range]
    if cfg.metric != "auto":
        argv += ["--metric", cfg.metric]
    budget = cfg.max_accuracy_drop  # the warning's budget of the re-created compile
    if cfg.data and budget != DEFAULT_MAX_ACCURACY_DROP:
        argv += ["--max-accuracy-drop", "none" if budget is None else f"{budget:g}"]
    return argv
