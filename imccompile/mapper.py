"""Crossbar mapper: bit slicing, signed-weight scheme, row/column tiling, block-diagonal packing of
grouped convs, replication and placement onto cores / tiles / chips.

Pure functions over the IR and a Target; no ONNX here.

Physical layout of one logical weight matrix W (K x N) of a MatrixOp:
  * a b-bit weight on c-bit cells takes ``slices = ceil(b / c)`` cells;
  * ``differential``: a positive and a negative device column per slice (x2 columns);
    ``differential_cell``: both devices sit in one unit cell (no extra columns, HERMES-style);
    ``offset``: one column per slice, plus one shared reference column in every array;
  * ``devices_per_slice`` devices in parallel per polarity live inside the unit cell;
  * physical columns = N_kept * slices * column_devices; row tiles = ceil(K_kept / rows);
    column tiles = ceil(physical columns / usable columns per array).
  * grouped ops: one block per group that keeps a weight, as tall (K kept) and as wide (N kept)
    as the largest group after pruning.
Grouped ops whose block fits one array are packed block-diagonally: blocks per array =
min(rows // K, usable_cols // block_cols).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np

from imccompile.errors import MappingError
from imccompile.ir import Graph, MatrixOp

OverflowPolicy = Literal["chips", "reload", "error"]
LOW_UTILIZATION = 0.25  # layers below this share of used cells are named in a warning


@dataclass(frozen=True)
class LayerMapping:
    """How one MatrixOp sits on crossbars.

    Attributes:
        name: the MatrixOp's name.
        weight_bits / input_bits: precisions used.
        slices: cells per weight (bit slices).
        column_devices: device columns per slice (2 for differential on two columns, else 1).
        rows_used: crossbar rows per group after structured pruning (K kept).
        cols_logical: logical columns kept (N kept, all groups).
        phys_cols: physical columns per group block (kept columns of the widest group * slices *
            column_devices; cols_logical/groups * slices * column_devices when unpruned).
        groups: groups placed (the op's groups less those pruned away entirely).
        row_tiles / col_tiles: tiles of one copy (per group when not packed).
        packed: groups packed block-diagonally; blocks_per_array when packed.
        arrays: arrays for one copy; replicas: copies; total_arrays = arrays * replicas.
        used_cells: cells holding weights (one copy); utilization = used / (arrays*rows*cols).
        converted_cols: ADC conversions per input cycle (one copy, all tiles).
        driven_rows: DAC-driven rows per input cycle (one copy, all tiles).
        first_array: global index of the layer's first array (placement).
    """

    name: str
    weight_bits: int
    input_bits: int
    slices: int
    column_devices: int
    rows_used: int
    cols_logical: int
    phys_cols: int
    groups: int
    row_tiles: int
    col_tiles: int
    packed: bool
    blocks_per_array: int
    arrays: int
    replicas: int
    used_cells: int
    converted_cols: int
    driven_rows: int
    vectors: int
    macs: int
    weights: int
    first_array: int = 0

    @property
    def total_arrays(self) -> int:
        return self.arrays * self.replicas

    def utilization(self, rows: int, cols: int) -> float:
        return self.used_cells / (self.arrays * rows * cols) if self.arrays else 0.0


@dataclass(frozen=True)
class ArraySlot:
    """Where an array sits: chip, tile, core, index in core (all 0-based)."""

    chip: int
    tile: int
    core: int
    index: int


@dataclass(frozen=True)
class Mapping:
    """The whole model's mapping onto one or more chips."""

    layers: tuple[LayerMapping, ...]
    rows: int
    cols: int
    chip_arrays: int
    overflow_policy: OverflowPolicy
    warnings: tuple[str, ...] = ()

    @property
    def arrays(self) -> int:
        return sum(lm.total_arrays for lm in self.layers)

    @property
    def overflow_arrays(self) -> int:
        return max(0, self.arrays - self.chip_arrays)

    @property
    def chips(self) -> int:
        if self.overflow_policy == "reload":
            return 1
        return max(1, math.ceil(self.arrays / self.chip_arrays))

    @property
    def utilization(self) -> float:
        used = sum(lm.used_cells * lm.replicas for lm in self.layers)
        return used / (self.arrays * self.rows * self.cols) if self.arrays else 0.0

    def layer(self, name: str) -> LayerMapping:
        for lm in self.layers:
            if lm.name == name:
                return lm
        raise KeyError(name)


def column_devices(scheme: str) -> int:
    return 2 if scheme == "differential" else 1


def _kept(op: MatrixOp) -> tuple[int, int, int, int]:
    """(rows per group, logical columns, groups, columns per group) that still hold weights after
    structured pruning. A group block is as tall and as wide as the largest kept group (so every
    group fits its block); a group whose weights are all pruned (e.g. a removed depthwise
    channel) is not placed."""
    mask = op.compression.mask
    if mask is None:
        return op.rows, op.cols, op.groups, op.cols_per_group
    if op.groups == 1:
        n = int(mask.any(axis=0).sum())
        return int(mask.any(axis=1).sum()), n, 1, n
    blocks = mask.reshape(op.rows, op.groups, op.cols_per_group)
    rows_g = int(blocks.any(axis=2).sum(axis=0).max())
    cols_g = int(blocks.any(axis=0).sum(axis=1).max())
    live = int(blocks.any(axis=(0, 2)).sum())
    return rows_g, int(mask.any(axis=0).sum()), live, cols_g


def _live_tiles(mask: np.ndarray, rows: int, usable: int, phys_per_col: int) -> int:
    """Tiles of the compacted mask (empty rows/columns removed) that hold any kept weight."""
    m = mask[mask.any(axis=1)][:, mask.any(axis=0)]
    k, n = m.shape
    rt = -(-k // rows)
    by_row_tile = np.zeros((rt * rows, n), bool)
    by_row_tile[:k] = m
    by_row_tile = by_row_tile.reshape(rt, rows, n).any(axis=1)  # (row tiles, logical cols)
    phys = np.repeat(by_row_tile, phys_per_col, axis=1)  # (row tiles, physical cols)
    ct = -(-phys.shape[1] // usable)
    padded = np.zeros((rt, ct * usable), bool)
    padded[:, :phys.shape[1]] = phys
    return int(padded.reshape(rt, ct, usable).any(axis=2).sum())


def map_layer(op: MatrixOp, rows: int, cols: int, bits_per_cell: int, scheme: str,
              default_weight_bits: int, default_input_bits: int, replicas: int = 1) -> LayerMapping:
    """Map one MatrixOp onto rows x cols arrays (pure; see module docstring for the rules)."""
    wb = op.compression.weight_bits or default_weight_bits
    ib = op.compression.act_bits or default_input_bits
    slices = math.ceil(wb / bits_per_cell)
    cdev = column_devices(scheme)
    usable = cols - 1 if scheme == "offset" else cols
    if usable < 1:
        raise MappingError(f"array of {cols} columns leaves no column besides the offset column")
    k, n, g, n_per_group = _kept(op)
    block_cols = n_per_group * slices * cdev
    if k == 0 or n == 0:  # everything pruned away
        return LayerMapping(op.name, wb, ib, slices, cdev, 0, 0, 0, g, 0, 0, False, 0, 0, replicas,
                            0, 0, 0, op.vectors, op.macs, op.weights)
    packed = g > 1 and k <= rows and block_cols <= usable
    if packed:
        bpa = min(rows // k, usable // block_cols)
        arrays = math.ceil(g / bpa)
        row_tiles, col_tiles = 1, 1
        used = g * k * block_cols
        converted = g * n_per_group * slices
        driven = g * k
    else:
        bpa = 0
        row_tiles = math.ceil(k / rows)
        col_tiles = math.ceil(block_cols / usable)
        arrays = g * row_tiles * col_tiles
        used = g * k * block_cols
        converted = g * row_tiles * n_per_group * slices
        driven = g * k * col_tiles
        if g == 1 and op.compression.mask is not None:
            live = _live_tiles(op.compression.mask, rows, usable, slices * cdev)
            if live < arrays:  # block pruning emptied whole tiles: they are not placed
                used = used * live // arrays
                converted = converted * live // arrays
                driven = driven * live // arrays
                arrays = live
    if scheme == "offset":
        converted += arrays  # the reference column is digitized too
        used += arrays * rows  # it holds reference cells
    return LayerMapping(
        name=op.name, weight_bits=wb, input_bits=ib, slices=slices, column_devices=cdev,
        rows_used=k, cols_logical=n, phys_cols=block_cols, groups=g, row_tiles=row_tiles,
        col_tiles=col_tiles, packed=packed, blocks_per_array=bpa, arrays=arrays,
        replicas=replicas, used_cells=used, converted_cols=converted, driven_rows=driven,
        vectors=op.vectors, macs=op.macs, weights=op.weights)


def _replicas_for(name: str, replicate: Mapping[str, int]) -> int:
    for pat, r in replicate.items():
        if name == pat or fnmatch.fnmatchcase(name, pat):
            if r < 1:
                raise MappingError(f"replication for {pat!r} must be >= 1, got {r}")
            return int(r)
    return 1


def balance_replicas(layers: list[LayerMapping], spare: int) -> list[LayerMapping]:
    """Give spare arrays to the pipeline's bottleneck (most input vectors per copy), greedily,
    until the bottleneck's next copy no longer fits in the spare arrays."""
    out = list(layers)
    while True:
        live = [i for i, lm in enumerate(out) if lm.arrays]
        if not live:
            return out
        i = max(live, key=lambda j: (out[j].vectors / out[j].replicas, -j))
        lm = out[i]
        if lm.arrays > spare or lm.replicas >= lm.vectors:
            return out
        spare -= lm.arrays
        out[i] = dataclasses.replace(lm, replicas=lm.replicas + 1)


def map_graph(graph: Graph, target, *, overflow: OverflowPolicy = "chips",
              replicate: Mapping[str, int] | None = None, auto_replicate: bool = False) -> Mapping:
    """Map every MatrixOp of the graph onto the target's arrays and place them in order."""
    a, h = target.array, target.hierarchy
    chip_arrays = h.arrays_per_core * h.cores_per_tile * h.tiles_per_chip
    layers = [map_layer(op, a.rows, a.cols, a.bits_per_cell, a.signed_scheme,
                        target.precision.weight_bits, target.precision.input_bits,
                        _replicas_for(op.name, replicate or {}))
              for op in graph.matrix_ops]
    if auto_replicate:
        spare = chip_arrays - sum(lm.total_arrays for lm in layers)
        if spare > 0:
            layers = balance_replicas(layers, spare)
    placed, nxt = [], 0
    for lm in layers:
        placed.append(dataclasses.replace(lm, first_array=nxt))
        nxt += lm.total_arrays
    warnings: list[str] = []
    m = Mapping(tuple(placed), a.rows, a.cols, chip_arrays, overflow)
    if m.overflow_arrays:
        msg = (f"the model needs {m.arrays} arrays but one chip has {chip_arrays}: "
               f"{m.overflow_arrays} arrays ({100.0 * m.overflow_arrays / chip_arrays:.0f}% of a "
               "chip) over")
        if overflow == "error":
            raise MappingError(msg + "; use --overflow chips or --overflow reload")
        if overflow == "chips":
            warnings.append(msg + f"; mapped onto {m.chips} chips (--overflow chips)")
        else:
            warnings.append(msg + "; the arrays over are reprogrammed every inference, with their "
                                  "write energy and time (--overflow reload)")
    low = sorted((lm.utilization(a.rows, a.cols), lm.name) for lm in placed
                 if lm.arrays and lm.utilization(a.rows, a.cols) < LOW_UTILIZATION)
    if low:
        shown = ", ".join(f"{name} {100 * u:.1f}%" for u, name in low[:4])
        more = f" and {len(low) - 4} more" if len(low) > 4 else ""
        warnings.append(f"{len(low)} of {len(placed)} layers use under "
                        f"{100 * LOW_UTILIZATION:.0f}% of their arrays' cells: {shown}{more} "
                        "(small layers on large arrays; smaller arrays or packing would help)")
    return dataclasses.replace(m, warnings=tuple(warnings))


def slot(index: int, target) -> ArraySlot:
    """Placement of global array number ``index`` (row-major over chip, tile, core, array)."""
    h = target.hierarchy
    per_core = h.arrays_per_core
    per_tile = per_core * h.cores_per_tile
    per_chip = per_tile * h.tiles_per_chip
    chip, r = divmod(index, per_chip)
    tile, r = divmod(r, per_tile)
    core, idx = divmod(r, per_core)
    return ArraySlot(chip, tile, core, idx)

