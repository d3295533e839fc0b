"""Read a program image back from its folder, validated: JSON Schema (the files shipped under
imccompile/schemas/), then cross-file consistency (every array has its conductances, within the
device's range; every layer has its decode tables; the schedule names placed arrays only).

Reads only the files in the folder: numpy and the standard library (onnx for graph.onnx, when
the executor needs it). No compiler IR here.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imccompile.errors import ImcCompileError

FORMAT = 1
CROSSBAR_DOMAIN = "ai.imccompile"
CROSSBAR_OP = "Crossbar"
FILES = ("placement.json", "schedule.json", "conductances.npz", "graph.onnx")
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
LAYER_TABLES = ("row_map", "col_array", "col_index", "col_logical", "col_slice", "col_polarity",
                "significance", "g_zero_us", "g_step_us", "weight_step", "scale", "offset")


class ProgramError(ImcCompileError):
    """A program image is missing, unreadable, corrupt or inconsistent (the message names the
    file and what is wrong)."""


# -- JSON Schema validation (jsonschema) ----------------------------------------------------
def _where(path: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "(root)"


def _what(err: Any) -> str:
    """One error in words: the bad value and what the schema accepts."""
    bad = json.dumps(err.instance, default=str)[:60]
    if err.validator == "minimum":
        return f"{bad} is below the minimum {err.validator_value}"
    if err.validator == "maximum":
        return f"{bad} is above the maximum {err.validator_value}"
    if err.validator == "exclusiveMinimum":
        return f"{bad} must be above {err.validator_value}"
    if err.validator == "required":
        return f"missing required property {err.message.split(' is a required')[0]}"
    if err.validator in ("type", "enum", "const"):
        expected = err.validator_value
        if isinstance(expected, list):
            expected = " or ".join(map(json.dumps, expected)) if err.validator == "enum" \
                else " or ".join(expected)
        elif err.validator == "const":
            expected = json.dumps(expected)
        return f"expected {expected}, got {bad}"
    return err.message[:200]


def schema_errors(doc: Any, schema: dict) -> list[str]:
    """Errors of ``doc`` against the JSON Schema ``schema`` ("where: what", where as
    ``arrays[3].chip``), [] when valid; validated by the jsonschema library (draft 2020-12)."""
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(schema).iter_errors(doc),
                    key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{_where(e.absolute_path)}: {_what(e)}" for e in errors]


def load_schema(name: str) -> dict:
    """A shipped schema: "placement" or "schedule"."""
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))


# -- the image ------------------------------------------------------------------------------
@dataclass
class Image:
    """A program image read from its folder. ``arrays`` holds every entry of conductances.npz."""

    path: Path
    placement: dict
    schedule: dict
    npz: dict[str, np.ndarray]
    graph: Any  # onnx.ModelProto of graph.onnx
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def target(self) -> dict:
        return self.placement["target"]

    @property
    def layers(self) -> list[dict]:
        return self.placement["layers"]

    def layer(self, name_or_key: str) -> dict:
        for lay in self.layers:
            if name_or_key in (lay["name"], lay["key"]):
                return lay
        raise KeyError(name_or_key)

    def table(self, layer: dict, name: str) -> np.ndarray:
        return self.npz[f"{layer['key']}/{name}"]

    def conductance(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(G, None) or, for differential_cell, (G_pos, G_neg) of global array ``index`` (µS)."""
        key = f"array_{index:05d}"
        if key in self.npz:
            return self.npz[key], None
        return self.npz[key + "_pos"], self.npz[key + "_neg"]


def _read_json(path: Path, schema_name: str, kind: str) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ProgramError(f"{path}: not UTF-8 text ({e.reason}); the file is corrupt") from None
    except OSError as e:
        raise ProgramError(f"{path}: cannot read: {e.strerror}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProgramError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column "
                           f"{e.colno}); the file is corrupt or truncated") from None
    if not isinstance(doc, dict):
        raise ProgramError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    if doc.get("format") != FORMAT or doc.get("kind") != kind:
        raise ProgramError(f"{path}: not a format-{FORMAT} {kind} file (format "
                           f"{doc.get('format')!r}, kind {doc.get('kind')!r}); this imccompile "
                           f"reads program images of format {FORMAT}")
    errs = schema_errors(doc, load_schema(schema_name))
    if errs:
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        raise ProgramError(f"{path}: does not match {schema_name}.schema.json: {errs[0]}{more}")
    return doc


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise ProgramError(f"{path}: not a readable .npz file ({type(e).__name__}: {e}); the "
                           "file is corrupt or truncated") from None


def _read_graph(path: Path):
    import onnx

    try:
        data = path.read_bytes()
    except OSError as e:
        raise ProgramError(f"{path}: cannot read: {e.strerror}") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError and friends
        raise ProgramError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e}); the "
                           "file is corrupt or truncated") from None
    if not model.graph.node and not model.graph.output:
        raise ProgramError(f"{path}: an empty ONNX model; the file is corrupt or truncated")
    return model


def _check_graph(img: Image) -> None:
    gf = img.path / "graph.onnx"
    seen = {}
    for node in img.graph.graph.node:
        if node.domain == CROSSBAR_DOMAIN and node.op_type == CROSSBAR_OP:
            key = next((a.s.decode() for a in node.attribute if a.name == "layer"), None)
            seen[key] = node
    for lay in img.layers:
        node = seen.get(lay["key"])
        if node is None:
            raise ProgramError(f"{gf}: no {CROSSBAR_DOMAIN}.{CROSSBAR_OP} node for layer "
                               f"{lay['key']} ({lay['name']})")
        if list(node.input)[:1] != [lay["input"]] or list(node.output)[:1] != [lay["output"]]:
            raise ProgramError(f"{gf}: the node of layer {lay['key']} reads/writes "
                               f"{list(node.input)} -> {list(node.output)}, placement.json says "
                               f"{lay['input']} -> {lay['output']}")
    names = {t["name"] for t in img.placement["inputs"]}
    if names != {i.name for i in img.graph.graph.input}:
        raise ProgramError(f"{gf}: graph inputs do not match placement.json's inputs")


def _check(img: Image) -> None:
    """Cross-file consistency, with messages naming the file and the entry."""
    p, s, z = img.placement, img.schedule, img.npz
    pf, cf, sf = (img.path / n for n in ("placement.json", "conductances.npz", "schedule.json"))
    t = p["target"]
    rows, cols = t["rows"], t["cols"]
    lo, hi = t["g_min_us"], t["g_max_us"]
    tol = 1e-9 * max(hi, 1.0)
    layers = {lay["key"]: lay for lay in p["layers"]}
    by_index = {}
    for a in p["arrays"]:
        if a["index"] in by_index:
            raise ProgramError(f"{pf}: array {a['index']} is listed twice")
        by_index[a["index"]] = a
        if a["layer_key"] not in layers:
            raise ProgramError(f"{pf}: array {a['index']} names unknown layer {a['layer_key']}")
        for suffix in a["cells"]:
            key = a["key"] + suffix
            g = z.get(key)
            if g is None:
                raise ProgramError(f"{cf}: no conductance matrix {key!r} for array {a['index']} "
                                   f"of layer {a['layer']}")
            if g.shape != (rows, cols) or g.dtype.kind != "f":
                raise ProgramError(f"{cf}: {key} has shape {list(g.shape)} ({g.dtype}); "
                                   f"expected a float {rows}x{cols} matrix")
            if not np.all(np.isfinite(g)) or g.min() < lo - tol or g.max() > hi + tol:
                raise ProgramError(f"{cf}: {key} holds conductances outside the device's range "
                                   f"[{lo}, {hi}] µS")
    if len(by_index) != p["arrays_total"]:
        raise ProgramError(f"{pf}: {len(by_index)} arrays listed, arrays_total is "
                           f"{p['arrays_total']}")
    for lay in p["layers"]:
        key = lay["key"]
        for a in lay["arrays"]:
            if a not in by_index or by_index[a]["layer_key"] != (lay.get("shares") or key):
                raise ProgramError(f"{pf}: layer {lay['name']} lists array {a}, which is not one "
                                   "of its arrays")
        if len(lay["arrays"]) != lay["arrays_per_replica"] * lay["replicas"]:
            raise ProgramError(f"{pf}: layer {lay['name']}: {len(lay['arrays'])} arrays for "
                               f"{lay['replicas']} x {lay['arrays_per_replica']}")
        for name in LAYER_TABLES + (("bias",) if lay["bias"] else ()) + \
                (("dac_step", "dac_range") if lay["dac"] else ()):
            if f"{key}/{name}" not in z:
                raise ProgramError(f"{cf}: missing {key}/{name} (layer {lay['name']})")
        e = lay["readout_columns"]
        for name in LAYER_TABLES[1:-3] + ("scale", "offset"):
            if z[f"{key}/{name}"].shape != (e,):
                raise ProgramError(f"{cf}: {key}/{name} has shape {list(z[f'{key}/{name}'].shape)}"
                                   f", expected [{e}]")
        if z[f"{key}/row_map"].shape != (lay["arrays_per_replica"], rows):
            raise ProgramError(f"{cf}: {key}/row_map has shape "
                               f"{list(z[f'{key}/row_map'].shape)}, expected "
                               f"[{lay['arrays_per_replica']}, {rows}]")
        if z[f"{key}/weight_step"].shape != (lay["cols"],):
            raise ProgramError(f"{cf}: {key}/weight_step has shape "
                               f"{list(z[f'{key}/weight_step'].shape)}, expected [{lay['cols']}]")
        ca, ci, cl = (z[f"{key}/{n}"] for n in ("col_array", "col_index", "col_logical"))
        rm = z[f"{key}/row_map"]
        if e and (ca.min() < 0 or ca.max() >= lay["arrays_per_replica"] or ci.min() < 0
                  or ci.max() >= cols or cl.min() < 0 or cl.max() >= lay["cols"]):
            raise ProgramError(f"{cf}: {key}: readout tables index outside the layer's arrays / "
                               "columns")
        if rm.size and (rm.min() < -1 or rm.max() >= lay["rows"] * lay["groups"]):
            raise ProgramError(f"{cf}: {key}/row_map holds an input index outside the layer")
    for st in s["steps"]:
        for a in st["arrays"]:
            if a not in by_index:
                raise ProgramError(f"{sf}: step {st['name']!r} fires array {a}, which "
                                   "placement.json does not place")
        if st["type"] == "crossbar" and st.get("layer_key") not in layers:
            raise ProgramError(f"{sf}: crossbar step {st['name']!r} names no layer of "
                               "placement.json")


def load(path: str | Path) -> Image:
    """Read and validate a program image folder (written by ``imccompile ... --program DIR``).

    Raises ProgramError (an ImcCompileError) naming the file for anything missing, unreadable,
    corrupt or inconsistent.
    """
    d = Path(path)
    if not d.is_dir():
        raise ProgramError(f"{d}: no such program image folder" if not d.exists() else
                           f"{d}: not a folder (a program image is a folder holding "
                           f"{', '.join(FILES)})")
    for name in FILES:
        if not (d / name).is_file():
            raise ProgramError(f"{d}: missing {name}; a program image holds {', '.join(FILES)}")
    placement = _read_json(d / "placement.json", "placement", "imccompile.placement")
    schedule = _read_json(d / "schedule.json", "schedule", "imccompile.schedule")
    npz = _read_npz(d / "conductances.npz")
    img = Image(d, placement, schedule, npz, _read_graph(d / "graph.onnx"))
    _check(img)
    _check_graph(img)
    return img
