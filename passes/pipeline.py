"""Pipeline text (parse and canonical print) and the pass manager.

Grammar (whitespace is allowed between tokens)::

    pipeline := ""  |  pass ("," pass)*
    pass     := NAME ( "{" [ option ("," option)* ] "}" )?
    option   := KEY "=" value
    value    := BARE | QUOTED
    NAME     := [A-Za-z_][A-Za-z0-9_.-]*          e.g. fold-bn
    KEY      := [A-Za-z_][A-Za-z0-9_]*            a field of the pass
    BARE     := one or more characters other than whitespace , { } = " \\
    QUOTED   := '"' ( any character but " and \\  |  '\\"'  |  '\\\\' )* '"'

A value is read by the option's declared type. Layer names such as ``/features/features.0/Conv``
and globs such as ``/classifier*`` are BARE. `pipeline_text` prints options in field order and
omits defaults, so ``parse_pipeline(pipeline_text(p)) == p`` and the text of a pipeline is
canonical (it is what a result stores).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imccompile.errors import ImcCompileError, PassError
from imccompile.ir import Graph
from imccompile.passes import stats_plan
from imccompile.passes.base import ActivationStats, Pass, PassContext, get_pass
from imccompile.passes.options import BARE_VALUE, option_types
from imccompile.passes.verify import graph_problems

if TYPE_CHECKING:
    from imccompile.spec.schema import Target

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WS = re.compile(r"\s*")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def error(self, msg: str, at: int | None = None) -> PassError:
        at = self.i if at is None else at
        return PassError(f"pipeline {self.text!r}, column {at + 1}: {msg}")

    def ws(self) -> None:
        self.i = _WS.match(self.text, self.i).end()  # type: ignore[union-attr]

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def expect(self, rx: re.Pattern[str], what: str) -> str:
        m = rx.match(self.text, self.i)
        if not m:
            got = repr(self.peek()) if self.peek() else "the end"
            raise self.error(f"expected {what}, got {got}")
        self.i = m.end()
        return m.group()

    def value(self) -> str:
        if self.peek() != '"':
            return self.expect(BARE_VALUE, "a value (quote it with \"...\" if it holds "
                                           "spaces or any of , { } = \" \\)")
        start = self.i
        self.i += 1
        out: list[Any] = []
        while True:
            ch = self.peek()
            if not ch:
                raise self.error("unterminated quoted value", start)
            self.i += 1
            if ch == '"':
                return "".join(out)
            if ch == "\\":
                nxt = self.peek()
                if nxt not in ('"', "\\"):
                    raise self.error('in a quoted value, a backslash escapes only " or \\')
                out.append(nxt)
                self.i += 1
            else:
                out.append(ch)

    def one_pass(self) -> Pass:
        start = self.i
        name = self.expect(_NAME, "a pass name")
        self.ws()
        raw: dict[str, tuple[str, int]] = {}
        if self.peek() == "{":
            self.i += 1
            self.ws()
            if self.peek() == "}":
                self.i += 1
            else:
                while True:
                    self.ws()
                    at = self.i
                    key = self.expect(_KEY, "an option name")
                    if key in raw:
                        raise self.error(f"option {key} is given twice", at)
                    self.ws()
                    self.expect(re.compile("="), f"'=' after option name {key!r}")
                    self.ws()
                    raw[key] = (self.value(), at)
                    self.ws()
                    sep = self.expect(re.compile("[,}]"), "',' or '}'")
                    if sep == "}":
                        break
        return self.build(name, raw, start)

    def build(self, name: str, raw: dict[str, tuple[str, int]], start: int) -> Pass:
        try:
            cls = get_pass(name)
        except PassError as e:
            raise self.error(str(e), start) from None
        types_ = option_types(cls)
        kwargs: dict[str, Any] = {}
        for key, (text, at) in raw.items():
            if key not in types_:
                raise self.error(f"pass `{name}` has no option {key!r}; its options: "
                                 f"{', '.join(types_) or 'none'}", at)
            try:
                kwargs[key] = types_[key].parse(text)
            except ValueError:
                raise self.error(f"pass `{name}`: option {key}={text!r} is not accepted; "
                                 f"expected {types_[key].describe()}", at) from None
        try:
            return cls(**kwargs)
        except PassError as e:
            raise self.error(str(e), start) from None
        except TypeError as e:  # a required option is missing
            raise self.error(f"pass `{name}`: {e}", start) from None

    def pipeline(self) -> tuple[Pass, ...]:
        self.ws()
        if self.i == len(self.text):
            return ()
        passes = []
        while True:
            passes.append(self.one_pass())
            self.ws()
            if self.i == len(self.text):
                return tuple(passes)
            self.expect(re.compile(","), "',' between passes")
            self.ws()


def parse_pipeline(text: str) -> tuple[Pass, ...]:
    """Parse pipeline text into pass objects (see the module docstring for the grammar).

    Raises:
        PassError: bad syntax, unknown pass (lists the known ones), unknown option (lists the
            pass's options), or a bad option value (says what is accepted); with the column.
    """
    if not isinstance(text, str):
        raise PassError(f"pipeline text must be a str, got {type(text).__name__}")
    return _Parser(text).pipeline()


def pipeline_text(passes: Iterable[Pass]) -> str:
    """The canonical text of a pipeline: options in field order, defaults left out."""
    return ",".join(p.text() for p in passes)


def as_passes(pipeline: str | Pass | Sequence[Pass] | None) -> tuple[Pass, ...]:
    """Pipeline text, one pass, or a sequence of passes, as a tuple of passes."""
    if pipeline is None:
        return ()
    if isinstance(pipeline, str):
        return parse_pipeline(pipeline)
    if isinstance(pipeline, Pass):
        return (pipeline,)
    passes = tuple(pipeline)
    for p in passes:
        if not isinstance(p, Pass):
            raise PassError(f"a pipeline holds Pass objects, got {type(p).__name__}: {p!r}")
    return passes


def check_order(passes: Sequence[Pass]) -> None:
    """Check the ordering needs passes declare (``runs_before``).

    Raises:
        PassError: a pass comes after one it must precede.
    """
    for j, p in enumerate(passes):
        for q in passes[:j]:
            if q.name in p.runs_before:
                raise PassError(f"pass `{p.name}` must run before `{q.name}` (it declares "
                                f"runs_before={list(p.runs_before)}); move it earlier in the "
                                f"pipeline {pipeline_text(passes)!r}")


@dataclass(frozen=True)
class PassManager:
    """Runs passes in order, checking the graph after each and giving failures context.

    Attributes:
        passes: the pipeline.
        verify: check the graph invariants (imccompile.passes.verify) after each pass.
    """

    passes: tuple[Pass, ...]
    verify: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "passes", as_passes(self.passes))
        check_order(self.passes)

    @property
    def text(self) -> str:
        return pipeline_text(self.passes)

    def run(self, graph: Graph, ctx: PassContext | None = None) -> Graph:
        """Apply every pass to ``graph`` and return the result.

        Raises:
            PassError: "pass `quantize` failed after [fold-bn, prune]: <why>" for user errors
                (any ImcCompileError) and for a graph a pass left invalid. Other exceptions are
                bugs of a pass: they propagate unchanged with that context added as a note.
        """
        ctx = ctx if ctx is not None else PassContext()
        if self.verify and self.passes:  # a problem of the model is not blamed on the first pass
            problems = graph_problems(graph)
            if problems:
                more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
                raise PassError("the model cannot be compressed (pipeline "
                                f"{self.text!r}): " + "; ".join(problems[:5]) + more)
        planned = stats_plan.plan(self.passes, graph, ctx)
        if planned is not None:  # one calibration run answers the requests it can
            ctx = dataclasses.replace(ctx, activation_stats=planned)
        done: list[str] = []
        for p in self.passes:
            where = f"pass `{p.name}` failed after [{', '.join(done)}]"
            try:
                out = p(graph, ctx)
            except ImcCompileError as e:
                raise PassError(f"{where}: {e}") from e
            except Exception as e:
                e.add_note(f"{where} (pipeline {self.text!r})")
                raise
            if self.verify:
                problems = graph_problems(out, graph)
                if problems:
                    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
                    raise PassError(f"{where}: it left an invalid graph: "
                                    + "; ".join(problems[:5]) + more)
            graph = out
            done.append(p.name)
        return graph


def run_pipeline(graph: Graph, pipeline: str | Pass | Sequence[Pass] | None,
                 target: Target | None = None, activation_stats: ActivationStats | None = None,
                 verify: bool = True) -> tuple[Graph, str]:
    """Run a pipeline on a graph.

    Args:
        graph: the input graph (not modified).
        pipeline: pipeline text, a pass, or a sequence of passes.
        target: the hardware Target, for passes that need it (block pruning sizes).
        activation_stats: activation statistics on calibration data, for ``quantize``'s
            activation ranges: ``imccompile.compiler.activation_stats_for(dataset)``.
        verify: check the graph after every pass.

    Returns:
        The transformed graph and the pipeline's canonical text.
    """
    pm = PassManager(as_passes(pipeline), verify=verify)
    if not pm.passes:
        return graph, ""
    ctx = PassContext(target=target, activation_stats=activation_stats)
    return pm.run(graph, ctx), pm.text
