"""Co-optimization search with Optuna: compression and hardware knobs, Pareto front, storage.

Every trial is a full compile of one point of the space (see imccompile.space): passes from its
pipeline text, the target with its overrides, mapping, cost, and the accuracy simulation over the
given seeds. Trials store their pipeline text and overrides as user attributes, so any trial is
re-created exactly (``--from-trial N``).

Storage: in memory by default; ``sqlite:///study.db`` resumes an interrupted search (the run
continues until the requested number of trials has completed); any Optuna RDB URL (PostgreSQL)
lets processes on many machines work on one study. ``n_jobs`` > 1 starts local worker processes
on the same storage (a journal file when none is given).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing as mp
import os
import pickle
import signal
import socket
import sys
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from imccompile.errors import ImcCompileError, UsageError
from imccompile.guardrails import DEFAULT_MAX_ACCURACY_DROP
from imccompile.ir import Graph
from imccompile.objectives import OBJECTIVES, SAMPLERS
from imccompile.options import CompileOptions, OverflowPolicy
from imccompile.result import CompileResult
from imccompile.simulate import SimOptions
from imccompile.space import Space, build_space, point_to_compile
from imccompile.units import si

if TYPE_CHECKING:
    from imccompile.compiler import Prepared
    from imccompile.spec.schema import Target

# Optuna's samplers take seeds in 0..2**32-1 (numpy); workers add their index (< MAX_JOBS).
MAX_JOBS = 256  # assumption: far beyond the cores of one host; each worker is a process
MAX_SEARCH_SEED = 2**32 - 1 - MAX_JOBS


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a study (stored with it; a resumed study must match).

    The compile fields (overrides ... sim) are those of `CompileOptions`: every trial compiles
    with ``compile_options(...)`` of this config, the trial's pipeline and knob overrides added.
    """

    model: str
    target: str
    overrides: tuple[str, ...] = ()
    data: str | None = None
    samples: int | None = None
    objectives: tuple[str, ...] = ("accuracy", "energy")
    # points below the float model (imccompile.guardrails); applies with data; None: no budget
    max_accuracy_drop: float | None = DEFAULT_MAX_ACCURACY_DROP
    max_area: float | None = None
    max_arrays: int | None = None
    sampler: str = "nsga2"
    seed: int | None = 0
    seeds: int = 1
    fix: tuple[tuple[str, Any], ...] = ()
    space: tuple[tuple[str, Any], ...] = ()
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    dims: tuple[tuple[str, int], ...] = ()
    overflow: OverflowPolicy = "chips"
    replicate: tuple[tuple[str, int], ...] = ()
    auto_replicate: bool = False
    sim: SimOptions = field(default_factory=SimOptions)
    metric: str = "auto"
    threads: int = 1  # onnxruntime intra-op threads (no part of the settings: results equal)
    activity: tuple[tuple[str, float], ...] = ()  # input bit activity per layer (given)

    @classmethod
    def from_options(cls, model: str, target: str, data: str | None, options: CompileOptions,
                     **search: Any) -> SearchConfig:
        """A study's config whose trials compile with ``options`` (its passes aside)."""
        return cls(model=model, target=target, data=data, overrides=options.overrides,
                   samples=options.samples, seeds=options.seeds, input_shapes=options.input_shapes,
                   dims=options.dims,
                   overflow=options.overflow, replicate=options.replicate,
                   auto_replicate=options.auto_replicate, sim=options.sim,
                   metric=options.metric, activity=options.activity,
                   threads=options.threads, **search)

    def compile_options(self, passes: str = "", overrides: Sequence[str] = (),
                        auto_replicate: bool = False) -> CompileOptions:
        """The options of a trial: this config's, with the trial's pipeline, its knob overrides
        (applied after the user's ``--set``) and its replicate knob (or-ed with
        ``auto_replicate``)."""
        return CompileOptions(overrides=tuple(self.overrides) + tuple(overrides), passes=passes,
                              input_shapes=self.input_shapes, dims=self.dims,
                              overflow=self.overflow,
                              replicate=self.replicate,
                              auto_replicate=self.auto_replicate or auto_replicate,
                              samples=self.samples, seeds=self.seeds, sim=self.sim,
                              metric=self.metric, activity=self.activity,
                              threads=self.threads)

    def settings(self) -> dict[str, Any]:
        """The part of the config that must match on resume (not the sampler or seed), as JSON
        values."""
        from imccompile.identity import canonical_overrides, file_identity

        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name not in ("sampler", "seed", "threads")}
        d["sim"] = dataclasses.asdict(self.sim)
        # the canonical content (imccompile.identity): resolved paths, content hashes, the
        # overrides as the values they leave, knob pins and ranges by name
        d["model"], d["model_sha256"] = file_identity(self.model or None, "model")
        from imccompile.spec import bundled_targets

        d["target"], d["target_sha256"] = (  # a bundled name is the bundled spec (load_target)
            (self.target, None) if self.target in bundled_targets()
            else file_identity(self.target or None, "--target"))
        d["data"], d["data_sha256"] = file_identity(self.data, "--data")
        d["overrides"] = canonical_overrides(self.overrides)
        d["fix"] = sorted(self.fix, key=lambda kv: str(kv[0]))
        d["space"] = sorted(self.space, key=lambda kv: str(kv[0]))
        return json.loads(json.dumps(d, default=str))

    def key(self) -> str:
        """`settings` as the text stored with the study."""
        return json.dumps(self.settings(), sort_keys=True)

    def differences(self, stored_key: str, ignore: Sequence[str] = ()) -> list[tuple[str, str]]:
        """(how the stored study was made, how this run is) for every setting that differs
        (except those in ``ignore``); a setting the stored key lacks (a study from an older
        version) counts as its default."""
        try:
            stored = json.loads(stored_key)
        except ValueError:
            stored = {}
        mine = self.settings()
        defaults = _DEFAULT_SETTINGS
        out = []
        for name, value in mine.items():
            if name in ignore:
                continue
            old = stored.get(name, defaults.get(name)) if isinstance(stored, dict) else None
            if name == "sim":
                out += _sim_differences(old if isinstance(old, dict) else defaults["sim"], value)
            elif old != value:
                out.append((_flag_text(name, old), _flag_text(name, value)))
        return out

    def validate(self) -> None:
        for name, value, optional in (("model", self.model, False), ("target", self.target, False),
                                      ("data", self.data, True)):
            if not (optional and value is None) and (not isinstance(value, str) or not value):
                raise UsageError(f"search {name} {value!r}: expected a path"
                                 + (" (or a bundled target name)" if name == "target" else "")
                                 + (" or None" if optional else ""))
        if not isinstance(self.objectives, tuple) or \
                not all(isinstance(o, str) for o in self.objectives):
            raise UsageError(f"--objectives {self.objectives!r}: expected a tuple of names from "
                             f"{', '.join(OBJECTIVES)}")
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if bad or not self.objectives or len(set(self.objectives)) != len(self.objectives):
            raise UsageError(f"--objectives {','.join(self.objectives)}: expected distinct names "
                             f"from {', '.join(OBJECTIVES)}")
        if "accuracy" in self.objectives and not self.data:
            raise UsageError("the accuracy objective needs --data (calibration/evaluation set)")
        if self.max_accuracy_drop not in (None, DEFAULT_MAX_ACCURACY_DROP) and not self.data:
            raise UsageError("--max-accuracy-drop needs --data")
        if self.sampler not in SAMPLERS:
            raise UsageError(f"--sampler {self.sampler}: expected one of {', '.join(SAMPLERS)}")
        for name, v in (("--max-accuracy-drop", self.max_accuracy_drop), ("--max-area", self.max_area),
                        ("--max-arrays", self.max_arrays)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v) or v < 0):
                raise UsageError(f"{name} must be a finite number >= 0, got {v}")
        for name, pairs in (("--fix", self.fix), ("--space", self.space)):
            if not isinstance(pairs, tuple) or not all(
                    isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
                raise UsageError(f"{name} {pairs!r}: expected a tuple of (knob name, value) pairs")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed <= MAX_SEARCH_SEED):
            raise UsageError(f"--search-seed {self.seed}: expected an integer in "
                             f"0..{MAX_SEARCH_SEED}")
        self.compile_options()  # the compile fields are checked as for a single compile


_FLAGS = {"model": "model", "target": "--target", "overrides": "--set", "data": "--data",
          "samples": "--samples", "objectives": "--objectives",
          "max_accuracy_drop": "--max-accuracy-drop", "max_area": "--max-area",
          "max_arrays": "--max-arrays", "seeds": "--seeds", "fix": "--fix", "space": "--space",
          "input_shapes": "--input-shape", "dims": "--dim", "overflow": "--overflow",
          "replicate": "--replicate", "auto_replicate": "--auto-replicate", "metric": "--metric"}


def _flag_text(name: str, value: Any) -> str:
    """A stored setting as the flags that give it, e.g. ``--adc-range full_scale``."""
    flag = _FLAGS.get(name, name)
    if value is None or value == [] or value is False:
        return f"no {flag}"
    if value is True:
        return flag
    if name == "model":
        return f"model {value}"
    if name.endswith("_sha256"):
        what = name[:-len("_sha256")]
        return f"{'model' if what == 'model' else '--' + what} content sha256 {str(value)[:12]}"
    if name == "objectives":
        return f"{flag} {','.join(map(str, value))}"
    if name in ("fix", "replicate", "input_shapes", "dims", "space") and isinstance(value, list):
        parts = []
        for item in value:
            k, v = item if isinstance(item, list) and len(item) == 2 else (item, "")
            v = ",".join(map(str, v)) if name == "input_shapes" and isinstance(v, list) else \
                (json.dumps(v) if name == "space" else v)
            parts.append(f"{flag} {k}={v}")
        return " ".join(parts)
    if name == "overrides" and isinstance(value, list):
        return " ".join(f"--set {v}" for v in value)
    return f"{flag} {value}"


_IDEAL_FIELDS = ("noise", "adc", "dac", "weights")


def _sim_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    ideal_old = [old.get(k, True) for k in _IDEAL_FIELDS]
    ideal_new = [new.get(k, True) for k in _IDEAL_FIELDS]
    if ideal_old != ideal_new:
        def text(v: list[Any]) -> str:
            if not any(v):
                return "--ideal"
            if all(v):
                return "no --ideal"
            return "simulation " + ",".join(f"{k}={b}" for k, b in zip(_IDEAL_FIELDS, v))
        out.append((text(ideal_old), text(ideal_new)))
    defaults = dataclasses.asdict(SimOptions())
    for k in new:
        if k in _IDEAL_FIELDS:
            continue
        a, b = old.get(k, defaults.get(k)), new[k]
        if a == b:
            continue
        if k == "adc_range":
            out.append((f"--adc-range {a}", f"--adc-range {b}"))
        elif k == "bit_accurate":
            out.append(("--bit-accurate" if a else "no --bit-accurate",
                        "--bit-accurate" if b else "no --bit-accurate"))
        else:
            out.append((f"simulation {k}={a}", f"simulation {k}={b}"))
    return out


# what only steers the sampler: re-creating one trial does not need it
SEARCH_ONLY = ("max_accuracy_drop", "max_area", "max_arrays", "fix", "space")


def refuse_other_settings(cfg: SearchConfig, stored_key: str, study: str, where: str,
                          action: str, ignore: Sequence[str] = ()) -> None:
    """Raise UsageError naming every setting of ``cfg`` that differs from the stored study's."""
    diffs = cfg.differences(stored_key, ignore)
    if not diffs:
        return
    made = ", ".join(a for a, _ in diffs)
    now = ", ".join(b for _, b in diffs)
    raise UsageError(f"study {study!r} in {where} was made with other settings: made with "
                     f"{made}; this run has {now}. {action}")


@dataclass
class Evaluator:
    """Compiles and scores points: the model is imported and the data loaded once per study
    (`compiler.prepare`); every point is compiled by `compiler.compile_prepared` with the
    options `SearchConfig.compile_options` gives it, as a single compile is."""

    cfg: SearchConfig
    prepared: Prepared = field(init=False)
    base_target: Target = field(init=False)  # as loaded, without overrides
    target: Target = field(init=False)  # with the user's overrides: the space's defaults
    space: Space = field(init=False)
    float_accuracy: float | None = None  # the float model's accuracy objective value
    metric: str | None = None  # the headline metric (cfg.metric resolved on the outputs)

    def __post_init__(self) -> None:
        from imccompile.compiler import prepare
        from imccompile.spec import load_target

        opts = self.cfg.compile_options()
        self.base_target = load_target(self.cfg.target)
        self.target = load_target(self.base_target, list(opts.overrides))
        self.prepared = prepare(self.cfg.model, opts, self.cfg.data, reference=True)
        ref, data = self.prepared.reference, self.prepared.dataset
        if data is not None and ref is not None:
            from imccompile.metrics import objective_value
            from imccompile.simulate import score_outputs

            self.metric, value, _ = score_outputs(self.prepared.graph, ref, ref, data.labels,
                                                  self.cfg.metric)
            self.float_accuracy = objective_value(self.metric, value)
        fix = dict(self.cfg.fix)
        if self.cfg.auto_replicate:  # every trial auto-replicates: the knob would change nothing
            fix.setdefault("replicate", True)
        self.space = build_space(self.prepared.graph, self.target, fix, dict(self.cfg.space))

    @property
    def graph(self) -> Graph:
        return self.prepared.graph

    def evaluate(self, point: Mapping[str, Any]) -> tuple[CompileResult, dict[str, float]]:
        """(CompileResult with accuracy, objective values incl. 'arrays') for a point."""
        text, overrides, replicate = point_to_compile(
            {**self.space.fixed, **point}, self.space.layers, self.space.tied)
        return self.evaluate_text(text, overrides, replicate)

    def options(self, text: str, overrides: Mapping[str, Any], replicate: bool) -> CompileOptions:
        """The compile options of a trial (pipeline text, knob overrides, replicate knob)."""
        return self.cfg.compile_options(text, override_texts(overrides), replicate)

    def evaluate_text(self, text: str, overrides: Mapping[str, Any], replicate: bool,
                      sensitivity: bool = False) -> tuple[CompileResult, dict[str, float]]:
        from imccompile.compiler import compile_prepared

        opts = self.options(text, overrides, replicate)
        opts = opts.replace(sensitivity=sensitivity, max_accuracy_drop=self.cfg.max_accuracy_drop)
        res = compile_prepared(self.prepared, self.base_target, opts)
        values = {"energy": res.cost.energy_j, "latency": res.schedule.latency_s,
                  "area": res.cost.area_mm2, "arrays": float(res.mapping.arrays)}
        if res.accuracy is not None:  # maximized: the headline metric, or -relerr
            from imccompile.metrics import objective_value

            from imccompile.guardrails import accuracy_drop

            values["accuracy"] = objective_value(res.accuracy["metric"], res.accuracy["mean"])
            values["relative_error"] = res.accuracy["relative_error"]
            values["accuracy_drop"] = accuracy_drop(res.accuracy["metric"], res.accuracy["float"],
                                                    res.accuracy["mean"])
        return res, values


def override_texts(overrides: Mapping[str, Any]) -> list[str]:
    """A trial's knob overrides as ``--set`` texts (how trials store them)."""
    return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]


def _constraints(cfg: SearchConfig, values: Mapping[str, float], float_acc: float | None,
                 metric: str | None = None) -> list[float]:
    """Constraint values (<= 0 is feasible). The accuracy drop is in percentage points of the
    accuracy objective (relerr: percent of relative error), in dB for snr."""
    out = []
    if cfg.max_accuracy_drop is not None and float_acc is not None:  # imccompile.guardrails
        out.append(values["accuracy_drop"] - cfg.max_accuracy_drop)
    if cfg.max_area is not None:
        out.append(values["area"] - cfg.max_area)
    if cfg.max_arrays is not None:
        out.append(values["arrays"] - cfg.max_arrays)
    return out


def _constraint_names(cfg: SearchConfig) -> list[str]:
    names = []
    if cfg.max_accuracy_drop is not None and cfg.data:
        names.append("accuracy_drop")
    if cfg.max_area is not None:
        names.append("area")
    if cfg.max_arrays is not None:
        names.append("arrays")
    return names


def make_sampler(name: str, seed: int | None):
    """Samplers see constraints through ``trial.set_constraint`` (Optuna >= 5)."""
    import optuna

    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, multivariate=True)
    return optuna.samplers.RandomSampler(seed=seed)


def _storage(url: str | None):
    import optuna

    if url is None:
        return None
    if url.startswith(("sqlite:", "postgresql", "mysql")):
        with warnings.catch_warnings():  # heartbeats are "experimental": not the user's concern
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=90)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url[len("journal:"):]))
    raise UsageError(f"--storage {url}: expected an Optuna RDB URL (sqlite:///file.db, "
                     "postgresql://user@host/db) or journal:/path/to/file.log")


def _creation_race(e: Exception) -> bool:
    """Two processes creating the tables of a new RDB at once: one of them fails (e.g. a
    UNIQUE constraint on alembic_version, or "table already exists"); trying again loads it."""
    if not type(e).__module__.startswith("sqlalchemy"):
        return False
    text = str(e).lower()
    return type(e).__name__ == "IntegrityError" or "already exists" in text or "locked" in text


def open_study(cfg: SearchConfig, storage_url: str | None, study_name: str | None,
               sampler_seed: int | None):
    import optuna

    _quiet_optuna()
    directions: list[Any] = [OBJECTIVES[o][0] for o in cfg.objectives]
    for attempt in range(6):
        try:
            study = optuna.create_study(
                storage=_storage(storage_url), study_name=study_name, directions=directions,
                sampler=make_sampler(cfg.sampler, sampler_seed), load_if_exists=True)
            break
        except ImcCompileError:
            raise
        except Exception as e:
            if attempt < 5 and _creation_race(e):  # workers creating a new database together
                time.sleep(0.1 * (attempt + 1))
                continue
            hint = ""
            if isinstance(e, ImportError) and str(storage_url).startswith("postgresql"):
                hint = " (PostgreSQL needs a driver: pip install 'psycopg[binary]')"
            raise UsageError(f"--storage {storage_url}: cannot open the study: "
                             f"{type(e).__name__}: {str(e).splitlines()[0][:200]}{hint}") from None
    if [d.name.lower() for d in study.directions] != directions:
        raise UsageError(f"study {study.study_name!r} has other objectives; use another --study name")
    stored = study.user_attrs.get("config")
    if stored is None:
        study.set_user_attr("config", cfg.key())
        describe_study(study, cfg)
    else:
        refuse_other_settings(cfg, stored, study.study_name, str(storage_url or "memory"),
                              "Use another --study name or the same settings to resume it")
    return study


def metric_names(cfg: SearchConfig) -> list[str]:
    """The objectives as optuna-dashboard shows them: with their unit (energy_j, latency_s)."""
    return [OBJECTIVES[o][1] for o in cfg.objectives]


def describe_study(study, cfg: SearchConfig) -> None:
    """Metric names and readable user attributes (model, target, data, budget) for Optuna's
    dashboard; set once, when the study is made."""
    import optuna

    with warnings.catch_warnings():  # set_metric_names is "experimental" in Optuna 3/4
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(metric_names(cfg))
    for key, value in (("model", cfg.model), ("target", cfg.target), ("data", cfg.data),
                       ("objectives", ",".join(cfg.objectives)),
                       ("max_accuracy_drop", cfg.max_accuracy_drop)):
        study.set_user_attr(key, value)


def check_stored_settings(cfg: SearchConfig, storage_url: str | None, study_name: str) -> None:
    """Refuse at once (before importing the model) to resume a stored study made with other
    settings; a study that does not exist yet, or an in-memory one, passes."""
    if storage_url is None:
        return
    for prefix in ("sqlite:///", "journal:"):  # do not create a file for a study not made yet
        if storage_url.startswith(prefix) and not os.path.exists(storage_url[len(prefix):]):
            return
    import optuna

    _quiet_optuna()
    try:
        summaries = optuna.get_all_study_summaries(storage=_storage(storage_url),
                                                   include_best_trial=False)
    except ImcCompileError:
        raise
    except Exception:  # no database yet, or unreadable: open_study reports it
        return
    for summary in summaries:
        if summary.study_name == study_name:
            stored = summary.user_attrs.get("config")
            if stored is not None:
                refuse_other_settings(cfg, stored, study_name, storage_url,
                                      "Use another --study name or the same settings to "
                                      "resume it")
            return


def default_point(ev: Evaluator) -> dict[str, Any]:
    """The knob values of the target as specified, without compression (those in the space)."""
    t = ev.target
    values: dict[str, Any] = {"granularity": "element", "act_bits": t.precision.input_bits,
                              "replicate": False,
              "adc.bits": t.adc.bits, "array.rows": t.array.rows, "array.cols": t.array.cols,
              "array.bits_per_cell": t.array.bits_per_cell}
    for layer in ev.space.layers:
        values[f"weight_bits:{layer}"] = t.precision.weight_bits
        values[f"prune:{layer}"] = 0.0
    out = {}
    for k in ev.space.knobs:
        v = values.get(k.name)
        if v is None:
            continue
        if k.choices is not None and v not in k.choices:
            continue  # e.g. a narrowed space without the default: let the sampler choose
        if k.choices is None and not k.bounds()[0] <= v <= k.bounds()[1]:
            continue
        out[k.name] = v
    return out


def _quiet_optuna() -> None:
    """Optuna logs every failed trial with its traceback: an infeasible point (its error is kept
    in the trial) or Ctrl-C (the CLI says "interrupted"). Neither is news to the user."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna.study._optimize").setLevel(logging.ERROR)


# --- exactly N completed trials with many workers -------------------------------------------
# Every worker stops once the study holds N completed trials, but a trial another worker has in
# flight would still complete and overshoot. So a trial starts only if the completed trials plus
# the running ones numbered before it (numbers are given out atomically by the storage) are fewer
# than N; otherwise it is pruned at once, before any parameter is drawn, and does not count. A
# worker with nothing to start waits while others' trials are in flight (one may fail). Running
# trials of dead workers must not be waited for: each trial records its worker (host, pid, a
# token per process); on this host a dead pid marks the trial FAIL, on other hosts the RDB
# heartbeat does (grace period).

_ME: dict[str, Any] = {}
_POLL_S = 0.5


def _me() -> dict[str, Any]:
    if _ME.get("pid") != os.getpid():  # per process (spawned workers import the module anew)
        _ME.update(host=socket.gethostname(), pid=os.getpid(), token=uuid.uuid4().hex)
    return dict(_ME)


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: exists, not ours
        return True
    try:  # a killed child not yet reaped by its parent
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _in_flight(t, me: Mapping[str, Any]) -> bool:
    """Whether a RUNNING trial may still complete (its worker is alive, as far as we can tell)."""
    import datetime

    w = t.user_attrs.get("worker")
    if not isinstance(w, dict):  # just created (the worker is set first thing), or very old
        start = t.datetime_start
        return start is None or datetime.datetime.now() - start < datetime.timedelta(seconds=60)
    if w.get("host") != me["host"]:
        return True  # another machine: the RDB heartbeat fails it when its worker is gone
    if w.get("pid") == me["pid"]:
        return w.get("token") == me["token"]
    return _process_alive(int(w.get("pid", -1)))


def _surplus(study, number: int, trials: int, me: Mapping[str, Any]) -> bool:
    from optuna.trial import TrialState

    ts = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    done = sum(t.state == TrialState.COMPLETE for t in ts)
    ahead = sum(t.state == TrialState.RUNNING and t.number < number and _in_flight(t, me)
                for t in ts)
    return done + ahead >= trials


class _Interrupt:
    """Ctrl-C stops the search at once, but never inside Optuna's storage writes: during a
    trial's evaluation it raises there (Optuna records the trial as FAIL); elsewhere it is
    raised at the next safe point (before an evaluation, between trials)."""

    def __init__(self) -> None:
        self.requested = False
        self.evaluating = False
        self._previous: Any = None
        self._hook: Any = None

    def __enter__(self) -> "_Interrupt":
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._hook = sys.unraisablehook
            sys.unraisablehook = self._unraisable
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            sys.unraisablehook = self._hook

    def _handler(self, signum, frame) -> None:
        self.requested = True
        if self.evaluating:
            raise KeyboardInterrupt

    def _unraisable(self, unraisable) -> None:
        """A signal handler runs in whatever frame is executing, a finalizer or a weakref
        callback of the garbage collector included; Python swallows an exception raised there
        and prints "Exception ignored in". The stop is not lost: it is delivered again a moment
        later (during an evaluation) or at the next safe point (``check``)."""
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and self.requested:
            if self.evaluating:
                timer = threading.Timer(0.05, self._redeliver)
                timer.daemon = True
                timer.start()
            return
        self._hook(unraisable)

    def _redeliver(self) -> None:
        # only to this handler: once the search has ended, a late signal must not reach the
        # default handler (a KeyboardInterrupt in the CLI's clean-up)
        if self.evaluating and signal.getsignal(signal.SIGINT) == self._handler:
            os.kill(os.getpid(), signal.SIGINT)

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


def _objective(ev: Evaluator, cfg: SearchConfig, trials: int | None = None,
               interrupt: _Interrupt | None = None, outcome: dict | None = None):
    import optuna

    interrupt = interrupt or _Interrupt()
    outcome = outcome if outcome is not None else {}

    def objective(trial):
        me = _me()
        outcome["surplus"] = False
        trial.set_user_attr("worker", me)
        if trials is not None and _surplus(trial.study, trial.number, trials, me):
            outcome["surplus"] = True
            raise optuna.TrialPruned("the study has its trials (completed or in flight)")
        point = {k.name: k.suggest(trial) for k in ev.space.knobs}
        text, overrides, replicate = point_to_compile(
            {**ev.space.fixed, **point}, ev.space.layers, ev.space.tied)
        trial.set_user_attr("pipeline", text)
        trial.set_user_attr("overrides", override_texts(overrides))
        trial.set_user_attr("auto_replicate", replicate)
        try:
            interrupt.evaluating = True
            interrupt.check()
            _, values = ev.evaluate_text(text, overrides, replicate)
        except ImcCompileError as e:  # an infeasible point: recorded as failed, search goes on
            interrupt.evaluating = False  # before the storage write below
            trial.set_user_attr("error", str(e))
            raise
        finally:
            interrupt.evaluating = False
        trial.set_user_attr("values", values)
        if ev.float_accuracy is not None:
            trial.set_user_attr("float_accuracy", ev.float_accuracy)
            trial.set_user_attr("metric", ev.metric)
        cons = _constraints(cfg, values, ev.float_accuracy, ev.metric)
        trial.set_user_attr("constraints", cons)
        for name, value in zip(_constraint_names(cfg), cons):
            trial.set_constraint(name, value)
        return tuple(values[o] for o in cfg.objectives)

    return objective


def completed(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def run_worker(cfg: SearchConfig, storage_url: str | None, study_name: str | None, trials: int,
               sampler_seed: int | None, on_trial: Callable[[Any, Any], None] | None = None,
               study=None, ev: Evaluator | None = None):
    """Run trials on the study until it holds ``trials`` completed ones (exactly that many, with
    any number of workers on the same storage)."""
    import optuna
    from optuna.trial import TrialState

    ev = ev or Evaluator(cfg)
    study = study or open_study(cfg, storage_url, study_name, sampler_seed)
    callbacks = [on_trial] if on_trial else []
    me = _me()
    outcome: dict[str, bool] = {}
    attempts = 0  # bounded: a space where every point fails must not loop forever
    with _Interrupt() as interrupt:
        objective = _objective(ev, cfg, trials, interrupt, outcome)
        while True:
            interrupt.check()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # RDB heartbeats (other hosts)
            ts = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
            done = sum(t.state == TrialState.COMPLETE for t in ts)
            if done >= trials or attempts >= 3 * max(trials, 1):
                break
            live = 0
            for t in ts:
                if t.state != TrialState.RUNNING:
                    continue
                if _in_flight(t, me):
                    live += 1
                else:  # its worker is gone (killed): it will never finish
                    try:
                        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                    except Exception:  # another worker was faster
                        pass
            if done + live >= trials:  # others' trials in flight may finish the study
                time.sleep(_POLL_S)
                continue
            study.optimize(objective, n_trials=1, callbacks=callbacks,
                           catch=(ImcCompileError,), gc_after_trial=False)
            if not outcome.get("surplus"):
                attempts += 1
    return study


def _worker_entry(cfg: SearchConfig, storage_url: str, study_name: str, trials: int, seed: int | None) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers
    run_worker(cfg, storage_url, study_name, trials, seed)


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    better = False
    for x, y, d in zip(a, b, directions):
        if d == "maximize":
            x, y = -x, -y
        if x > y:
            return False
        if x < y:
            better = True
    return better


@dataclass
class SearchResult:
    """A study summarized: its Pareto front, every trial, the chosen point and the rule that
    chose it. In a notebook: a short ``repr``, ``_repr_html_``, ``trials_frame()`` (pandas)
    and ``to_csv(path)`` (every trial, `imccompile.tables.trial_table`)."""

    study: Any
    cfg: SearchConfig
    pareto: list[dict[str, Any]] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)  # the completed ones
    chosen: dict[str, Any] | None = None
    chosen_result: CompileResult | None = None
    baseline: dict[str, Any] | None = None
    rule: str = ""  # how the chosen point was chosen (or why none was)
    every: list[dict[str, Any]] = field(default_factory=list)  # every trial, any state
    float_accuracy: float | None = None  # the float model's accuracy objective
    metric: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study.study_name, "objectives": list(self.cfg.objectives),
                "directions": [OBJECTIVES[o][0] for o in self.cfg.objectives],
                "sampler": self.cfg.sampler, "completed_trials": len(self.trials),
                "constraints": {"max_accuracy_drop": self.cfg.max_accuracy_drop,
                                "max_area": self.cfg.max_area, "max_arrays": self.cfg.max_arrays},
                "pareto": self.pareto, "chosen": self.chosen["trial"] if self.chosen else None,
                "rule": self.rule, "float_accuracy": self.float_accuracy,
                "recreate_command": self.recreate_command(),
                "baseline": self.baseline, "trials": self.trials}

    def recreate_argv(self) -> list[str] | None:
        """The command line (argv) that compiles the chosen point as a single compile."""
        if self.chosen is None:
            return None
        from imccompile.recreate import recreate_argv

        return recreate_argv(self.cfg, self.chosen)

    def recreate_command(self) -> str | None:
        """`recreate_argv` on one line, shell-quoted (``shlex.join``): paste it into a shell."""
        import shlex

        argv = self.recreate_argv()
        return shlex.join(argv) if argv is not None else None

    def trial_table(self) -> list[dict[str, Any]]:
        """One row per trial (`imccompile.tables.trial_table`)."""
        from imccompile.tables import trial_table

        return trial_table(self)

    def trials_frame(self):
        """Every trial as a pandas DataFrame (needs the ``pandas`` extra)."""
        from imccompile.tables import frame

        return frame(self.trial_table())

    def to_csv(self, path: Any = None, pareto: bool = False) -> str:
        """trials.csv (or, with ``pareto``, pareto.csv) as text; written to ``path`` when given."""
        from imccompile.tables import trials_csv

        text = trials_csv(self, pareto=pareto)
        if path is not None:
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        return text

    def _summary(self) -> list[tuple[str, str]]:
        items = [("study", str(self.study.study_name)), ("trials", str(len(self.trials))),
                 ("front", str(len(self.pareto))),
                 ("chosen", f"trial {self.chosen['trial']}" if self.chosen else "none"),
                 ("rule", self.rule)]
        if self.chosen:
            v = self.chosen["values"]
            for o in self.cfg.objectives:
                items.append((OBJECTIVES[o][1], f"{v[o]:.4g}"))
        return items

    def __repr__(self) -> str:
        return "SearchResult(" + ", ".join(f"{k}={v!r}" if k in ("study", "rule") else f"{k}={v}"
                                           for k, v in self._summary()) + ")"

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>"
                       for k, v in self._summary())
        return f"<table><caption>SearchResult</caption>{rows}</table>"


def _trial_row(t) -> dict[str, Any]:
    return {"trial": t.number, "values": dict(t.user_attrs.get("values", {})),
            "pipeline": t.user_attrs.get("pipeline", ""),
            "overrides": list(t.user_attrs.get("overrides", [])),
            "auto_replicate": bool(t.user_attrs.get("auto_replicate", False)),
            "feasible": all(c <= 0 for c in t.user_attrs.get("constraints", [])),
            "params": {k: (v if not isinstance(v, float) else float(v)) for k, v in t.params.items()}}


def choice_rule(cfg: SearchConfig, float_accuracy: float | None, metric: str | None,
                chosen: bool) -> str:
    """How `summarize` chooses, in words (the terminal and report.json give it)."""
    from imccompile.guardrails import fmt_drop

    cost_objs = [o for o in cfg.objectives if o != "accuracy"]
    what = f"lowest {cost_objs[0]}" if cost_objs else "most accurate"
    others = []
    if cfg.max_area is not None:
        others.append(f"--max-area {cfg.max_area:g}")
    if cfg.max_arrays is not None:
        others.append(f"--max-arrays {cfg.max_arrays}")
    extra = f", within {' and '.join(others)}" if others else ""
    budget = cfg.max_accuracy_drop is not None and float_accuracy is not None
    if budget:
        assert cfg.max_accuracy_drop is not None and float_accuracy is not None
        shown = -float_accuracy if metric == "relerr" else float_accuracy
        where = (f"within {fmt_drop(metric, cfg.max_accuracy_drop)} of the float model's "
                 f"{metric} {shown:.4g} (--max-accuracy-drop {cfg.max_accuracy_drop:g})")
    elif cfg.data:
        where = "on the Pareto front, no accuracy budget (--max-accuracy-drop none)"
    else:
        where = "on the Pareto front (no --data: no accuracy budget)"
    if chosen:
        return f"{what} trial {where}{extra}"
    if budget or others:
        return (f"no completed trial is {where}{extra}: raise the budget, relax the "
                "constraints or run more trials")
    return "no completed trial"


def summarize(study, cfg: SearchConfig) -> SearchResult:
    """Pareto front (feasible, mutually non-dominated completed trials) and the chosen point.

    The chosen point: among the front (whose trials keep to the constraints, the accuracy
    budget by default: `imccompile.guardrails`), the one with the best value of the first
    non-accuracy objective (e.g. lowest energy); with accuracy as the only objective, the most
    accurate. `SearchResult.rule` says so in words.
    """
    from optuna.trial import TrialState

    every_trial = list(study.get_trials(deepcopy=False))
    trials = [t for t in every_trial if t.state == TrialState.COMPLETE]
    rows = [_trial_row(t) for t in trials]
    every = [{**_trial_row(t), "state": t.state.name} for t in every_trial]
    float_acc = next((t.user_attrs["float_accuracy"] for t in trials
                      if "float_accuracy" in t.user_attrs), None)
    metric = next((t.user_attrs["metric"] for t in trials if "metric" in t.user_attrs), None)
    dirs = [OBJECTIVES[o][0] for o in cfg.objectives]
    feasible = [r for r in rows if r["feasible"]]
    vec = {r["trial"]: [r["values"][o] for o in cfg.objectives] for r in feasible}
    front = [r for r in feasible
             if not any(dominates(vec[o["trial"]], vec[r["trial"]], dirs) for o in feasible)]
    # identical points: keep the earliest trial only
    seen: set[tuple] = set()
    pareto = []
    for r in sorted(front, key=lambda r: r["trial"]):
        key = tuple(vec[r["trial"]])
        if key not in seen:
            seen.add(key)
            pareto.append(r)
    cost_objs = [o for o in cfg.objectives if o != "accuracy"]
    chosen = None
    if pareto:
        if cost_objs:
            chosen = min(pareto, key=lambda r: (r["values"][cost_objs[0]], r["trial"]))
        else:
            chosen = max(pareto, key=lambda r: (r["values"]["accuracy"], -r["trial"]))
    pareto.sort(key=lambda r: [(-1 if d == "maximize" else 1) * r["values"][o]
                               for o, d in zip(cfg.objectives, dirs)])
    rule = choice_rule(cfg, float_acc, metric, chosen is not None)
    return SearchResult(study, cfg, pareto, rows, chosen, rule=rule, every=every,
                        float_accuracy=float_acc, metric=metric)


def hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of 2-D minimization points w.r.t. a reference point (exact sweep)."""
    pts = points[np.all(points < ref, axis=1)]
    if not len(pts):
        return 0.0
    pts = pts[np.argsort(pts[:, 0])]
    hv, best_y = 0.0, ref[1]
    for x, y in pts:
        if y < best_y:
            hv += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(hv)


def search(cfg: SearchConfig, trials: int, *, storage: str | None = None, study_name: str | None = None,
           n_jobs: int = 1, progress: Callable[[int, int, str], None] | None = None,
           sensitivity: bool = False) -> SearchResult:
    """Run (or resume) a study until it holds ``trials`` completed trials; summarize it.
    ``sensitivity``: the chosen point's compile also measures its per-layer sensitivity."""
    cfg.validate()
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UsageError(f"--search needs a number of trials >= 1, got {trials!r}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or not 1 <= n_jobs <= MAX_JOBS:
        raise UsageError(f"--n-jobs {n_jobs!r}: expected an integer in 1..{MAX_JOBS}")
    tmpdir = None
    procs = []
    try:  # the temporary store is removed however the search ends
        if n_jobs > 1 and storage is None:
            from imccompile.workers import make_store_dir

            tmpdir = make_store_dir()
            storage = f"journal:{os.path.join(tmpdir, 'study.log')}"
        study_name = study_name or f"imccompile-{Path(cfg.model).stem}"
        check_stored_settings(cfg, storage, study_name)  # before the import and the data
        ev = Evaluator(cfg)
        study = open_study(cfg, storage, study_name, cfg.seed)
        if not study.trials:  # the target's own settings are always a point of the front
            study.enqueue_trial(default_point(ev), skip_if_exists=True)
        start = completed(study)

        def on_trial(st, ft) -> None:
            if progress:
                progress(completed(st), trials, _best_text(st, cfg))

        if n_jobs > 1:
            from imccompile.workers import worker_main

            ctx = mp.get_context("spawn")
            for i in range(1, n_jobs):
                seed = None if cfg.seed is None else cfg.seed + i
                payload = pickle.dumps((_worker_entry, (cfg, storage, study_name, trials, seed)))
                # tied to this process: never outlives the search (imccompile.workers)
                p = ctx.Process(target=worker_main, args=(os.getpid(), tmpdir, payload),
                                daemon=True)
                p.start()
                procs.append(p)
        if progress:
            progress(start, trials, _best_text(study, cfg))
        run_worker(cfg, storage, study_name, trials, cfg.seed, on_trial, study=study, ev=ev)
        for p in procs:
            p.join()
        result = summarize(study, cfg)
        if result.chosen is not None:
            res, _ = ev.evaluate_text(result.chosen["pipeline"], _ov(result.chosen["overrides"]),
                                      result.chosen["auto_replicate"], sensitivity=sensitivity)
            result.chosen_result = res
        _, base_vals = ev.evaluate_text("", {}, False)
        result.baseline = {"values": base_vals, "pipeline": "", "overrides": []}
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
        if tmpdir:
            import shutil

            shutil.rmtree(tmpdir, ignore_errors=True)
    return result


def _ov(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        out[k] = json.loads(v)
    return out


def _best_text(study, cfg: SearchConfig) -> str:
    try:
        res = summarize(study, cfg)
    except Exception:
        return ""
    if not res.chosen:
        return "no feasible point yet"
    v = res.chosen["values"]
    parts = []
    for o in cfg.objectives:
        unit = OBJECTIVES[o][2]
        parts.append(f"{o} {si(v[o], unit) if unit else format(v[o], '.4g')}")
    return f"front {len(res.pareto)} | chosen #{res.chosen['trial']}: " + ", ".join(parts)


def recreate_trial(cfg: SearchConfig, storage: str, study_name: str, number: int
                   ) -> tuple[CompileResult, dict[str, float], dict[str, Any]]:
    """Re-create trial ``number`` of a stored study exactly: its CompileResult with accuracy."""
    import optuna

    _quiet_optuna()
    try:
        study = optuna.load_study(study_name=study_name, storage=_storage(storage))
    except KeyError:
        raise UsageError(f"--from-trial: no study {study_name!r} in {storage}") from None
    except ImcCompileError:
        raise
    except Exception as e:
        raise UsageError(f"--storage {storage}: cannot open the study: "
                         f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    directions = [OBJECTIVES[o][0] for o in cfg.objectives if o in OBJECTIVES]
    if [d.name.lower() for d in study.directions] != directions:
        raise UsageError(f"--from-trial: study {study_name!r} in {storage} was made with other "
                         f"objectives than --objectives {','.join(cfg.objectives)}; give the "
                         "study's settings")
    stored = study.user_attrs.get("config")
    if stored is not None:
        refuse_other_settings(cfg, stored, study_name, storage,
                              "Give --from-trial the settings the study was made with",
                              ignore=SEARCH_ONLY)
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not trials:
        raise UsageError(f"--from-trial {number}: study {study_name!r} has trials "
                         f"0..{len(study.trials) - 1}")
    t = trials[0]
    if "pipeline" not in t.user_attrs:
        raise UsageError(f"--from-trial {number}: the trial holds no pipeline (state {t.state.name})")
    ev = Evaluator(cfg)
    res, values = ev.evaluate_text(t.user_attrs["pipeline"], _ov(t.user_attrs.get("overrides", [])),
                                   bool(t.user_attrs.get("auto_replicate", False)))
    return res, values, _trial_row(t)


_DEFAULT_SETTINGS: dict[str, Any] = SearchConfig(model="", target="").settings()
