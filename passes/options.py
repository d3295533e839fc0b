"""Typed pass options: what values an option accepts, and their text form in a pipeline.

An option is a dataclass field of a pass. Its annotation decides the accepted values:
``int``, ``float``, ``bool``, ``str``, ``Literal["a", "b", ...]`` (of str), each optionally
``| None`` (None cannot be written in pipeline text; it can only be a default). Values are parsed
from text *by the option's type* (no guessing), so ``match=1.5`` is the string "1.5" when
``match`` is a str option.

Text form of a value: ``true``/``false`` for bools, ``repr`` for floats (exact round trip),
decimal for ints, and strings bare when they hold none of the pipeline's special characters
(whitespace ``,{}="\\``), otherwise double-quoted with ``\\"`` and ``\\\\`` escapes.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import numpy as np

from imccompile.errors import PassError

BARE_VALUE = re.compile(r'[^\s,{}="\\]+')
_KINDS = (bool, int, float, str)


@dataclass(frozen=True)
class OptionType:
    """The values one option accepts.

    Attributes:
        kind: bool, int, float or str.
        choices: the allowed strings of a Literal option, else None.
        optional: None is an accepted value (only as a default: it has no text form).
    """

    kind: type
    choices: tuple[str, ...] | None = None
    optional: bool = False

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + "|".join(self.choices)
        return {bool: "true or false", int: "an int", float: "a float", str: "a string"}[self.kind]

    def coerce(self, value: Any) -> Any:
        """Check a Python value and return it in canonical type (int -> float for floats).

        Raises:
            ValueError: the value is not accepted (the caller adds pass and option names).
        """
        if value is None:
            if self.optional:
                return None
            raise ValueError("None is not accepted")
        if self.kind is bool:
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
        elif self.kind is int:
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                return int(value)
        elif self.kind is float:
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                return float(value)
        elif isinstance(value, str) and (self.choices is None or value in self.choices):
            return value
        raise ValueError(f"got {value!r}")

    def parse(self, raw: str) -> Any:
        """Parse the text of a value. Raises ValueError when it is not of this type."""
        if self.kind is bool:
            low = raw.lower()
            if low in ("true", "false"):
                return low == "true"
        elif self.kind is int:
            if re.fullmatch(r"[+-]?\d+", raw.strip()):
                return int(raw)
        elif self.kind is float:
            try:
                return float(raw)
            except ValueError:
                pass
        elif self.choices is None or raw in self.choices:
            return raw
        raise ValueError(f"got {raw!r}")

    def format(self, value: Any) -> str:
        """The text of a value, such that ``parse(format(v)) == v``."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return repr(value)
        if isinstance(value, int):
            return str(value)
        return format_str(str(value))


def format_str(s: str) -> str:
    """A string bare when it can be, else double-quoted with backslash escapes."""
    if BARE_VALUE.fullmatch(s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _option_type(owner: str, field: str, hint: Any) -> OptionType:
    optional = False
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        optional = len(args) < len(get_args(hint))
        if len(args) != 1:
            raise PassError(f"pass class {owner}: option {field!r} has type {hint}; an option "
                            "has one type of int, float, bool, str or Literal[str, ...], "
                            "optionally | None")
        hint = args[0]
        origin = get_origin(hint)
    if origin is Literal:
        choices = get_args(hint)
        if not choices or not all(isinstance(c, str) for c in choices):
            raise PassError(f"pass class {owner}: option {field!r}: Literal choices must be "
                            f"strings, got {choices!r}")
        return OptionType(str, tuple(choices), optional)
    if hint in _KINDS:
        return OptionType(hint, None, optional)
    raise PassError(f"pass class {owner}: option {field!r} has type {hint!r}; an option has "
                    "one type of int, float, bool, str or Literal[str, ...], optionally | None")


_CACHE: dict[type, dict[str, OptionType]] = {}


def option_types(cls: type) -> dict[str, OptionType]:
    """The options of a pass class in field order, with their types.

    Raises:
        PassError: a field's annotation is not a supported option type.
    """
    if cls not in _CACHE:
        try:
            hints = typing.get_type_hints(cls)
        except Exception as e:  # noqa: BLE001 -- any failure to evaluate an annotation
            raise PassError(f"pass class {cls.__qualname__}: cannot resolve its option "
                            f"annotations ({type(e).__name__}: {e}); define the types it "
                            "uses at module level") from None
        _CACHE[cls] = {f.name: _option_type(cls.__name__, f.name, hints[f.name])
                       for f in dataclasses.fields(cls)}
    return _CACHE[cls]
