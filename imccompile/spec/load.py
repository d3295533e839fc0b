"""Loading target specs: bundled names or paths, ``--set`` overrides, one-line error messages.

Every failure is one :class:`~imccompile.errors.SpecError` whose lines read
``<where>: <field.path>: <what is expected>, got <bad value>``, where ``<where>`` is the file
(``hwspecs/rram.json``) or the override that caused it (``--set adc.bits=abc``).
"""

from __future__ import annotations

import copy
import difflib
import importlib.resources
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, NoReturn, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic import BaseModel, ValidationError

from imccompile.errors import SpecError
from imccompile.spec.schema import Expect, SpecProblems, Target

__all__ = [
    "bundled_targets",
    "load_target",
    "parse_override",
    "target_from_dict",
    "target_summary",
]

_PACKAGE = "imccompile.hwspecs"
_MAX_LINES = 20
Loc = tuple[str | int, ...]


# ----------------------------------------------------------------------------- public API


def _fail(*lines: str) -> NoReturn:
    """Raise the one SpecError: one line per problem, line-breaking characters escaped."""
    raise SpecError("\n".join(_safe(line) for line in lines)) from None


def _safe(text: str) -> str:
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)


def bundled_targets() -> list[str]:
    """Names of the specs shipped in ``hwspecs/`` (``pcm``, ``rram``, ``sram``, ...)."""
    root = importlib.resources.files(_PACKAGE)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def load_target(
    name_or_path: str | os.PathLike[str] | Target,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> Target:
    """Load and validate a target spec.

    Args:
        name_or_path: a bundled name (``"pcm"``), a path to a JSON file, or a Target (then only
            the overrides are applied).
        overrides: ``["adc.bits=6", "noise.model=none"]`` (values parsed as JSON, else kept as a
            plain string), or ``{"adc.bits": 6}``.

    Raises:
        SpecError: unknown name, unreadable file, bad JSON, or a field that fails validation.
    """
    if not isinstance(overrides, (Sequence, Mapping)) or isinstance(overrides, bytes):
        _fail(f"overrides {_fmt(overrides)}: expected a list of PATH=VALUE texts or a "
              "dict of PATH -> value")
    items = _parse_overrides(overrides)
    if isinstance(name_or_path, Target):
        return _replace_items(name_or_path, items)
    if isinstance(name_or_path, Mapping):
        return _build(copy.deepcopy(dict(name_or_path)), "<dict>", items)
    if not isinstance(name_or_path, (str, os.PathLike)) or name_or_path == "":
        _fail(f"target {name_or_path!r}: expected a bundled target name "
              f"({', '.join(bundled_targets())}), a spec JSON path, a dict or a Target")
    label, data = _read(name_or_path)
    return _build(data, label, items)


def target_from_dict(data: Any, label: str = "<dict>") -> Target:
    """Validate a plain dict (e.g. ``Target.to_dict()``) into a Target; errors as for files."""
    if not isinstance(data, dict):
        _fail(f"{label}: expected a JSON object at the top level, got {_fmt(data)}")
    return _build(copy.deepcopy(data), label, [])


def parse_override(text: str) -> tuple[str, Any]:
    """``"adc.bits=6"`` -> ``("adc.bits", 6)``; the value is JSON, else a plain string."""
    if not isinstance(text, str) or "=" not in text:
        _fail(_safe(f"--set {text}") + ": expected PATH=VALUE, e.g. adc.bits=6")
    path, raw = text.split("=", 1)
    path = path.strip()
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        value = raw
    return path, value


def target_summary(t: Target) -> str:
    """One line: name, device, array size, bits per cell, ADC, arrays on the chip."""
    a, h = t.array, t.hierarchy
    return (f"{t.name}: {a.device.upper()} {a.rows}x{a.cols}, {a.bits_per_cell} bit/cell "
            f"({a.signed_scheme}), {t.precision.weight_bits}-bit weights, "
            f"{t.precision.input_bits}-bit inputs ({t.dac.bits}-bit {t.dac.mode.replace('_', '-')} "
            f"DAC), ADC {t.adc.bits}-bit "
            f"{t.adc.type}, {h.arrays_per_chip} arrays/chip ({h.tiles_per_chip} tiles x "
            f"{h.cores_per_tile} cores x {h.arrays_per_core} arrays)")


# ----------------------------------------------------------------------------- reading


class _JsonProblem(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _JsonProblem(f"{name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _JsonProblem(f"duplicate key {json.dumps(k)}")
        out[k] = v
    return out


def _read(name_or_path: str | os.PathLike[str]) -> tuple[str, Any]:
    bundled = bundled_targets()
    text: str
    if not isinstance(name_or_path, Path) and str(name_or_path) in bundled:
        label = f"hwspecs/{name_or_path}.json"
        text = importlib.resources.files(_PACKAGE).joinpath(f"{name_or_path}.json").read_text(
            encoding="utf-8")
    else:
        path = Path(name_or_path)
        label = _safe(str(name_or_path))
        looks_like_path = (isinstance(name_or_path, Path) or "/" in label or "\\" in label
                           or label.endswith(".json"))
        if not path.exists():
            names = ", ".join(bundled)
            if looks_like_path:
                _fail(f"{label}: no such file (bundled targets: {names})")
            close = difflib.get_close_matches(label.lower(), bundled, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            _fail(f"unknown target {json.dumps(label)}: not a bundled target ({names}) and "
                  f"no file of that name{hint}")
        from imccompile.userfile import read_text

        text = read_text(path, label, SpecError)  # bounded: /dev/zero is refused, not read
    try:
        data = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        _fail(f"{label}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}")
    except _JsonProblem as e:
        _fail(f"{label}: not valid JSON: {e}")
    except RecursionError:
        _fail(f"{label}: not valid JSON: nested too deeply")
    if not isinstance(data, dict):
        _fail(f"{label}: expected a JSON object at the top level, got {_fmt(data)}")
    return label, data


# ----------------------------------------------------------------------------- overrides

_Override = tuple[str, tuple[str, ...], Any]  # (label, path parts, value)


def _parse_overrides(overrides: Sequence[str] | Mapping[str, Any]) -> list[_Override]:
    if isinstance(overrides, str):
        overrides = [overrides]
    pairs: list[tuple[str, str, Any]] = []
    if isinstance(overrides, Mapping):
        for path, value in overrides.items():
            pairs.append((_safe(f"--set {path}={_fmt(value)}"), str(path), value))
    else:
        for text in overrides:
            path, value = parse_override(text)
            pairs.append((_safe(f"--set {text}"), path, value))
    return [(label, _resolve_path(path, label), value) for label, path, value in pairs]


def _resolve_path(path: str, label: str) -> tuple[str, ...]:
    """Check ``path`` names a field; the part after a dict-valued field is one key."""
    parts = path.split(".")
    if not path or any(not p for p in parts):
        _fail(f"{label}: expected PATH=VALUE with a dotted field path, e.g. adc.bits=6")
    model: type[BaseModel] = Target
    for i, part in enumerate(parts):
        fields = model.model_fields
        here = ".".join(parts[: i + 1])
        if part not in fields:
            _fail(f"{label}: {here}: unknown field{_known(part, list(fields))}")
        tp, _ = _unwrap(fields[part].annotation, fields[part].metadata)
        rest = parts[i + 1:]
        if _is_model(tp):
            model = tp
            continue
        if get_origin(tp) is dict:
            return tuple(parts[: i + 1]) + ((".".join(rest),) if rest else ())
        if rest:
            what = "a list" if get_origin(tp) in (tuple, list) else "not an object"
            _fail(f"{label}: {here}.{rest[0]}: {here} is {what}; set {here} as a whole")
        return tuple(parts)
    return tuple(parts)  # the path ends on a section: set it as a whole


def _set(data: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    node = data
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)


def _replace(target: Target, changes: Mapping[str, Any]) -> Target:
    items = [(_safe(f"replace {path}={_fmt(value)}"), _resolve_path(path, _safe(f"replace {path}")),
              value) for path, value in changes.items()]
    return _replace_items(target, items)


def _replace_items(target: Target, items: list[_Override]) -> Target:
    if not items:
        return target
    return _build(target.to_dict(), f"target {target.name}", items)


# ----------------------------------------------------------------------------- validation


# array fields per array that follow its geometry when an override changes array.rows /
# array.cols and leaves them alone: the cells have a fixed pitch, so their area and static power
# scale with how many there are; the part of the area given as per row (array.area_per_row_mm2,
# e.g. MNSIM's row drivers) scales with the rows (the converters and drivers priced per column
# and per row elsewhere, adc.* and dac.*, follow on their own)
PER_CELL_FIELDS = ("area_mm2", "leakage_w")
GEOMETRY = (("array", "rows"), ("array", "cols"))


def _build(data: dict[str, Any], label: str, items: list[_Override]) -> Target:
    for i, (where, parts, value) in enumerate(items):
        if tuple(parts) in GEOMETRY:
            _follow_geometry(data, parts[1], value, items[i + 1:], items)
        _set(data, parts, value)
        sources = data.get("sources")
        path = ".".join(parts)
        if len(parts) == 2 and isinstance(sources, dict) and path not in sources \
                and parts[0] not in ("sources", "anchors", "search", "precision"):
            # a field the spec leaves unset (e.g. array.parallel_rows) set by an override: the
            # override is its source
            sources[path] = f"override: {where}"
    try:
        return Target.model_validate(data)
    except ValidationError as e:
        lines = _messages(e, label, items)
    except RecursionError:
        lines = [f"{label}: nested too deeply"]
    if len(lines) > _MAX_LINES:
        lines = lines[:_MAX_LINES] + [f"... and {len(lines) - _MAX_LINES} more problems"]
    _fail(*lines)


def _follow_geometry(data: dict[str, Any], dim_name: str, value: Any,
                     later: list[_Override], items: list[_Override]) -> None:
    """Before the override array.<dim_name> = value is applied: scale the array's
    `PER_CELL_FIELDS` as it stands by the new cell count over the old (the per-row part of
    the area by the rows), unless an override sets that field, or a later one replaces the
    whole array. Values that are not valid are left for validation to report."""
    array = data.get("array")
    if not isinstance(array, dict) or any(tuple(p) == ("array",) for _, p, _ in later):
        return

    def dim(v: Any) -> int | None:
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None

    def num(v: Any) -> float | None:
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    r0, c0 = dim(array.get("rows")), dim(array.get("cols"))
    r1, c1 = (dim(value), c0) if dim_name == "rows" else (r0, dim(value))
    if r0 is None or c0 is None or r1 is None or c1 is None or (r0, c0) == (r1, c1):
        return
    cells, rows = (r1 * c1) / (r0 * c0), r1 / r0
    explicit = {".".join(p) for _, p, _ in items}
    sources = data.get("sources")
    per_row = num(array.get("area_per_row_mm2")) or 0.0
    for name in PER_CELL_FIELDS:
        v = num(array.get(name))
        if f"array.{name}" in explicit or v is None or v == 0:
            continue
        fixed = per_row * r0 if name == "area_mm2" else 0.0  # the per-row part
        array[name] = (v - fixed) * cells + fixed * rows
        if isinstance(sources, dict):
            was = sources.get(f"array.{name}")
            how = (f"x {cells:g} for {r1}x{c1} cells instead of {r0}x{c0}" if not fixed else
                   f"{v - fixed:g} mm2 of cells x {cells:g} + {fixed:g} mm2 of rows x {rows:g}"
                   f" for {r1}x{c1} instead of {r0}x{c0}")
            sources[f"array.{name}"] = (f"{was}; " if was else "") + how + \
                " (follows the geometry override)"


def _messages(exc: ValidationError, label: str, items: list[_Override]) -> list[str]:
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err.get("loc", ()))
        ctx = err.get("ctx") or {}
        problem = ctx.get("error")
        if isinstance(problem, SpecProblems):
            for rel, message, got, related in problem.problems:
                full = loc + tuple(rel)
                where = _where(full, label, items, [loc + tuple(r) for r in related])
                text = f"{where}: {_display(full)}: {message}"
                lines.append(text + (f", got {_fmt(got)}" if got is not None else ""))
            continue
        try:
            text = _one(err, loc)
        except Exception:  # noqa: BLE001 - never let message building hide the real error
            text = f"{_display(loc)}: {err.get('msg', 'invalid')}, got {_fmt(err.get('input'))}"
        lines.append(f"{_where(loc, label, items)}: {text}")
    return list(dict.fromkeys(lines))


def _one(err: Any, loc: Loc) -> str:
    kind = err["type"]
    path = _display(loc)
    if kind == "missing":
        return f"{path}: missing field"
    if kind == "extra_forbidden":
        parent, _, _ = _walk(loc[:-1])
        known = list(parent.model_fields) if _is_model(parent) else []
        return f"{path}: unknown field{_known(str(loc[-1]), known)}"
    tp, meta, is_key = _walk(loc)
    expected = _describe(tp, meta) if tp is not None else err.get("msg", "a valid value")
    if is_key:
        expected = f"a key that is {expected}"
    unit = _unit(loc)
    return f"{path}: expected {expected}{unit}, got {_fmt(err.get('input'))}"


def _where(loc: Loc, label: str, items: list[_Override], related: Sequence[Loc] = ()) -> str:
    """The override that set ``loc`` (or, failing that, a related field), else the file."""
    for candidate in (loc, *related):
        parts = tuple(str(p) for p in candidate if p != "[key]")
        for ov_label, ov_parts, _ in reversed(items):
            if parts[: len(ov_parts)] == ov_parts:
                return ov_label
    return label


def _display(loc: Loc) -> str:
    out = ""
    tp: Any = Target
    for item in loc:
        if item == "[key]":
            continue
        if _is_model(tp) and isinstance(item, str) and item in tp.model_fields:
            f = tp.model_fields[item]
            tp, _ = _unwrap(f.annotation, f.metadata)
            out += ("." if out else "") + item
        elif get_origin(tp) is dict:
            out += f"[{json.dumps(str(item))}]"
            tp = _unwrap(get_args(tp)[1], [])[0]
        elif get_origin(tp) in (tuple, list) and isinstance(item, int):
            out += f"[{item}]"
            tp = _unwrap(get_args(tp)[0], [])[0]
        else:
            out += ("." if out else "") + str(item)
            tp = None
    return out or "(top level)"


def _walk(loc: Loc) -> tuple[Any, list[Any], bool]:
    """(type, metadata, is_dict_key) of what sits at ``loc`` in the Target schema."""
    tp: Any = Target
    meta: list[Any] = []
    items = list(loc)
    for i, item in enumerate(items):
        if item == "[key]":
            continue
        key_next = i + 1 < len(items) and items[i + 1] == "[key]"
        if _is_model(tp):
            if not isinstance(item, str) or item not in tp.model_fields:
                return None, [], False
            f = tp.model_fields[item]
            tp, meta = _unwrap(f.annotation, f.metadata)
        elif get_origin(tp) is dict:
            k, v = get_args(tp)
            if key_next:
                tp, meta = _unwrap(k, [])
                return tp, meta, True
            tp, meta = _unwrap(v, [])
        elif get_origin(tp) in (tuple, list):
            tp, meta = _unwrap(get_args(tp)[0], [])
        else:
            return None, [], False
    return tp, meta, False


def _unwrap(tp: Any, meta: Sequence[Any]) -> tuple[Any, list[Any]]:
    out = list(meta)
    while get_origin(tp) is Annotated:
        args = get_args(tp)
        tp = args[0]
        out = list(args[1:]) + out
    return tp, out


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _describe(tp: Any, meta: Sequence[Any]) -> str:
    for m in meta:
        if isinstance(m, Expect):
            return m.text
    lo: Any = None
    hi: Any = None
    lo_strict = hi_strict = False
    min_len = 0
    for m in meta:
        if isinstance(m, Ge):
            lo = m.ge
        elif isinstance(m, Gt):
            lo, lo_strict = m.gt, True
        elif isinstance(m, Le):
            hi = m.le
        elif isinstance(m, Lt):
            hi, hi_strict = m.lt, True
        elif isinstance(m, MinLen):
            min_len = m.min_length
    if tp is bool:
        return "true or false"
    if tp is int or tp is float:
        base = "an integer" if tp is int else "a number"
        if lo is not None and hi is not None and not lo_strict and not hi_strict:
            return f"{base} in {lo}..{hi}"
        bounds = []
        if lo is not None:
            bounds.append(f"{'>' if lo_strict else '>='} {lo}")
        if hi is not None:
            bounds.append(f"{'<' if hi_strict else '<='} {hi}")
        return base + (" " + " and ".join(bounds) if bounds else "")
    if tp is str:
        return "a non-empty string" if min_len else "a string"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in get_args(tp))
    if _is_model(tp):
        return "an object with fields " + ", ".join(tp.model_fields)
    if get_origin(tp) in (tuple, list):
        item = _describe(*_unwrap(get_args(tp)[0], []))
        return f"a {'non-empty ' if min_len else ''}list of {_plural(item)}"
    if get_origin(tp) is dict:
        k, v = get_args(tp)
        return f"an object {{{_describe(*_unwrap(k, []))}: {_describe(*_unwrap(v, []))}}}"
    if get_origin(tp) in (Union, UnionType) and type(None) in get_args(tp):
        rest = [a for a in get_args(tp) if a is not type(None)]
        if len(rest) == 1:  # an optional field: its type, or null (absent)
            return f"{_describe(*_unwrap(rest[0], []))}, or null"
    return "a JSON value"


def _plural(item: str) -> str:
    for a, b in (("an integer", "integers"), ("a number", "numbers"),
                 ("a non-empty string", "non-empty strings"), ("a string", "strings"),
                 ("an object", "objects")):
        if item.startswith(a):
            return b + item[len(a):]
    return item


_UNITS = (("bytes_per_s", "bytes/s"), ("ops_per_s", "ops/s"), ("_mm2", "mm²"), ("_hz", "Hz"),
          ("_us", "µS"), ("_nm", "nm"), ("_j", "J"), ("_s", "s"), ("_v", "V"),
          ("_bytes", "bytes"))


def _unit(loc: Loc) -> str:
    names = [p for p in loc if isinstance(p, str) and p != "[key]"]
    if not names or names[0] in ("sources", "anchors") or len(loc) != 2:
        return ""
    for suffix, unit in _UNITS:
        if names[-1].endswith(suffix):
            return f" ({unit})"
    return ""


def _known(name: str, known: list[str]) -> str:
    if not known:
        return ""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f" (known: {', '.join(known)}){hint}"


def _fmt(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
