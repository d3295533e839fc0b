"""The pass contract and the pass registry.

A pass is a frozen dataclass deriving from `Pass`: its fields are its options (typed, see
`imccompile.passes.options`), its class attribute ``name`` is how pipeline text calls it, and its
docstring says what it changes. Calling it on a Graph returns a new Graph; the input graph and its
arrays are never modified (parallel search trials share them).

Passes are found by name in a registry: the built-in ones register themselves with
`register_pass`; third-party packages declare theirs in the entry-point group
``imccompile.passes`` (loaded on the first lookup)::

    [project.entry-points."imccompile.passes"]
    mypass = "mypkg.passes:MyPass"
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Optional, TypeVar

from imccompile.errors import PassError
from imccompile.ir import Graph, MatrixOp
from imccompile.passes.options import OptionType, option_types

ENTRY_POINT_GROUP = "imccompile.passes"
PASS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")

if TYPE_CHECKING:
    from imccompile.spec.schema import Target

# (graph, percentile or None for max) -> crossbar-input tensor -> (max |x| or that percentile of
# |x|, min x), measured on the calibration data by the compile driver
# (imccompile.compiler.activation_stats_for); passes never run a model themselves.
ActivationStats = Callable[[Graph, Optional[float]], Mapping[str, tuple[float, float]]]


@dataclass(frozen=True)
class PassContext:
    """What a pass may use besides the graph.

    Attributes:
        target: the hardware Target (imccompile.spec), or None when compiling for no target.
        activation_stats: activation statistics on the calibration data (see
            `ActivationStats`), or None when there is no data.
    """

    target: Target | None = None
    activation_stats: ActivationStats | None = None


@dataclass(frozen=True)
class Pass:
    """Base of every pass. Subclasses are frozen dataclasses with a ``name`` and a docstring.

    Override `apply` (the transformation), and `validate` for range checks of option values
    (their types are checked here before it). Override `search_space` to declare the tunable
    options. ``runs_before`` names passes this one must precede when both are in a pipeline.
    """

    name: ClassVar[str] = ""
    runs_before: ClassVar[tuple[str, ...]] = ()
    # True: the pass's changes never depend on the values of the activation statistics it asks
    # for, and it reads those of the inputs of the ops it changes only (the driver may then
    # answer a pipeline's requests from one measurement: imccompile.passes.stats_plan)
    stats_set_ranges_only: ClassVar[bool] = False

    def __post_init__(self) -> None:
        for field, otype in option_types(type(self)).items():
            value = getattr(self, field)
            try:
                object.__setattr__(self, field, otype.coerce(value))
            except ValueError:
                raise self.bad(field, value, otype.describe()) from None
        self.validate()

    # -- to override ---------------------------------------------------------------------------
    def validate(self) -> None:
        """Check option values beyond their types; raise `bad(...)` on the first wrong one."""

    def apply(self, graph: Graph, ctx: PassContext) -> Graph:
        """Return the transformed graph (a new one; never modify ``graph``)."""
        raise NotImplementedError(f"pass `{self.name}` does not implement apply()")

    @classmethod
    def search_space(cls, target: Any = None) -> dict[str, list | tuple]:
        """The options a search may tune, for a target (or None).

        Returns:
            option -> a list of categorical choices, or a ``(low, high)`` tuple: an inclusive
            range, of ints when both ends are ints, else of floats.
        """
        return {}

    # -- provided ------------------------------------------------------------------------------
    def __call__(self, graph: Graph, ctx: PassContext | None = None) -> Graph:
        out = self.apply(graph, ctx if ctx is not None else PassContext())
        if not isinstance(out, Graph):
            raise PassError(f"pass `{self.name}` returned {type(out).__name__}, not a Graph")
        return out

    def bad(self, option: str, value: Any, accepted: str) -> PassError:
        """The error for a bad option value: names the pass, the option, the value, the fix."""
        return PassError(f"pass `{self.name}`: option {option}={value!r} is not accepted; "
                         f"expected {accepted}")

    @classmethod
    def option_types(cls) -> dict[str, OptionType]:
        return option_types(cls)

    def options(self) -> dict[str, Any]:
        """Options that differ from their defaults, in field order (the canonical text's)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and v == f.default \
                    and type(v) is type(f.default):
                continue
            if f.default_factory is not dataclasses.MISSING and v == f.default_factory():
                continue
            out[f.name] = v
        return out

    def text(self) -> str:
        """This pass as pipeline text, e.g. ``prune{ratio=0.5,granularity=column}``."""
        types_ = option_types(type(self))
        opts = self.options()
        if not opts:
            return self.name
        return self.name + "{" + ",".join(f"{k}={types_[k].format(v)}"
                                          for k, v in opts.items()) + "}"

    def __str__(self) -> str:
        return self.text()

    def replace(self, **kw: Any) -> Pass:
        return dataclasses.replace(self, **kw)


@dataclass(frozen=True)
class LayerPass(Pass):
    """A pass that acts on matrix ops, optionally only on some layers.

    Attributes:
        match: glob (fnmatch, case-sensitive) or exact name of the matrix ops to change; None =
            all. It is an error when it selects none.
        exclude: glob or exact name of matrix ops to leave alone (applied after ``match``).
    """

    match: str | None = None
    exclude: str | None = None

    def validate(self) -> None:
        for opt in ("match", "exclude"):
            v = getattr(self, opt)
            if v is not None and not v:
                raise self.bad(opt, v, "a non-empty layer name or glob such as /classifier*")

    def selects(self, op: MatrixOp) -> bool:
        def hit(pat: str) -> bool:
            return op.name == pat or fnmatch.fnmatchcase(op.name, pat)

        return (self.match is None or hit(self.match)) and \
            (self.exclude is None or not hit(self.exclude))

    def selected(self, graph: Graph) -> tuple[MatrixOp, ...]:
        """The matrix ops this pass changes; an error when a match/exclude selects none."""
        ops = tuple(op for op in graph.matrix_ops if self.selects(op))
        if not ops and (self.match is not None or self.exclude is not None) and graph.matrix_ops:
            names = [op.name for op in graph.matrix_ops]
            shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12
                                             else "")
            sel = ",".join(f"{k}={getattr(self, k)!r}" for k in ("match", "exclude")
                           if getattr(self, k) is not None)
            raise PassError(f"pass `{self.name}`: {sel} selects no matrix op; the layers are: "
                            f"{shown}")
        return ops


# -- registry ----------------------------------------------------------------------------------
P = TypeVar("P", bound=type)
_REGISTRY: dict[str, type[Pass]] = {}
_ENTRY_POINT_ERRORS: dict[str, str] = {}
_entry_points_loaded = False


def _check_pass_class(cls: Any) -> None:
    label = getattr(cls, "__qualname__", repr(cls))
    if not (isinstance(cls, type) and issubclass(cls, Pass)):
        raise PassError(f"{label} is not a subclass of imccompile.passes.Pass")
    params = cls.__dict__.get("__dataclass_params__")
    if params is None or not params.frozen:
        raise PassError(f"pass class {label} must be decorated with @dataclass(frozen=True)")
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not PASS_NAME.fullmatch(name):
        raise PassError(f"pass class {label} needs a class attribute `name` matching "
                        f"{PASS_NAME.pattern}, got {name!r}")
    doc = cls.__dict__.get("__doc__") or ""
    if not doc.strip() or doc.startswith(cls.__name__ + "("):
        raise PassError(f"pass class {label} (`{name}`) needs a docstring saying what it changes")
    if cls.apply is Pass.apply:
        raise PassError(f"pass class {label} (`{name}`) does not override apply()")
    option_types(cls)  # raises on unsupported option types


def register_pass(cls: P) -> P:
    """Class decorator: make a pass class callable by its ``name`` in pipeline text.

    Raises:
        PassError: the class breaks the pass contract, or another class has that name.
    """
    _check_pass_class(cls)
    other = _REGISTRY.get(cls.name)  # type: ignore[attr-defined]
    if other is not None and other is not cls:
        raise PassError(f"pass name `{cls.name}` is taken by {other.__module__}."  # type: ignore[attr-defined]
                        f"{other.__qualname__}; cannot register {cls.__module__}."
                        f"{cls.__qualname__} under it")
    _REGISTRY[cls.name] = cls  # type: ignore[attr-defined]
    return cls


def unregister_pass(name: str) -> None:
    """Remove a pass from the registry (for tests and interactive use)."""
    _REGISTRY.pop(name, None)


def load_entry_points(reload: bool = False) -> None:
    """Register the passes of installed packages (entry-point group ``imccompile.passes``).

    A plugin that fails to load does not break other pipelines: its error is reported when its
    name is asked for.
    """
    global _entry_points_loaded
    if _entry_points_loaded and not reload:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
            register_pass(cls)
        except Exception as e:  # noqa: BLE001 -- a broken plugin: remember why, report on use
            _ENTRY_POINT_ERRORS[ep.name] = (f"entry point {ep.name} = {ep.value!r} "
                                            f"({ENTRY_POINT_GROUP}) failed to load: "
                                            f"{type(e).__name__}: {e}")
        else:
            _ENTRY_POINT_ERRORS.pop(ep.name, None)


def registered_passes() -> dict[str, type[Pass]]:
    """All known passes by name (built-in and installed plugins), sorted by name."""
    load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def get_pass(name: str) -> type[Pass]:
    """The pass class called ``name``.

    Raises:
        PassError: unknown name; the message lists the known passes.
    """
    known = registered_passes()
    if name in known:
        return known[name]
    msg = f"unknown pass `{name}`; known passes: {', '.join(known) or 'none'}"
    if name in _ENTRY_POINT_ERRORS:
        msg += f" ({_ENTRY_POINT_ERRORS[name]})"
    elif _ENTRY_POINT_ERRORS:
        msg += " (plugins that failed to load: " + "; ".join(_ENTRY_POINT_ERRORS.values()) + ")"
    raise PassError(msg)
