"""The physical layout of one matrix layer on crossbars, and the hardware rules it follows.

This module is the single place for the rules that turn a MatrixOp and a target into cells:

* **bits**: a layer's weight / input bits are its compression's, or the target's precision;
* **qmax**: a b-bit symmetric weight has integer codes in [-Q, Q], Q = 2^(b-1) - 1 (1 for b=1);
* **magnitudes**: with ``differential`` and ``differential_cell``, the sign is the polarity of
  the device, so a b-bit weight stores a (b-1)-bit magnitude (1 bit for b <= 2); ``offset``
  stores q + Q (b bits) and ``twos_complement`` the b-bit two's complement code;
* **slices**: ``ceil(magnitude bits / bits_per_cell)`` cells per weight; ``differential``
  doubles the device columns of every slice, ``differential_cell`` holds both polarities in one
  cell, ``offset`` keeps one reference column in every array (``usable_cols`` = cols - 1);
* **full scale**: the largest code of a column is programmed at g_max (IBM HERMES, aihwkit): the
  digit of slice s has full scale ``min(2^c - 1, max magnitude >> (c*s))``, so the top slice of
  a magnitude that does not fill it still spans the whole conductance range;
* **DAC codes**: b input bits give codes 0..2^b-1 (unsigned input) or -(2^(b-1)-1)..2^(b-1)-1.

`layer_layout` places one layer: for every group that keeps a weight, its kept rows and columns
(structured pruning removes the rest), tiled over arrays of ``rows`` x ``usable`` cells (tiles
holding no kept weight are not placed), or packed block-diagonally when every group block fits
one array. The result lists every block (array, group, row tile, column tile, rows, layout
columns); array counts, used cells, conversions and driven rows are derived from that list, and
the cost model, the schedule, the accuracy simulation (its ADC row groups) and the program image
all read it.

Layout columns of a group: its kept logical columns in order, each expanded to
``slices * column_devices`` physical columns: layout column p holds logical column
``p // (slices * cdev)``, slice ``(p // cdev) % slices`` and device (polarity) ``p % cdev``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from imccompile.errors import MappingError
from imccompile.ir import MatrixOp

if TYPE_CHECKING:
    from imccompile.spec import Target

SCHEMES = ("differential", "differential_cell", "offset", "twos_complement")


# -- the rules --------------------------------------------------------------------------------
def layer_bits(op: MatrixOp, target: Target) -> tuple[int, int]:
    """(weight bits, input bits) of a layer: its compression's, else the target's precision."""
    c = op.compression
    return (c.weight_bits or target.precision.weight_bits,
            c.act_bits or target.precision.input_bits)


def qmax(bits: int) -> int:
    """Largest integer code of a symmetric b-bit weight."""
    return 2 ** (bits - 1) - 1 if bits > 1 else 1


def magnitude_bits(bits: int, scheme: str) -> int:
    """Bits stored per weight: the magnitude for the differential schemes, the code otherwise."""
    if scheme in ("differential", "differential_cell"):
        return max(1, bits - 1)
    return bits


def max_stored(bits: int, scheme: str) -> int:
    """Largest value the cells of one weight hold (the magnitude, q + Q, or the b-bit code)."""
    if scheme == "offset":
        return 2 * qmax(bits)
    if scheme == "twos_complement":
        return 2 ** bits - 1
    return qmax(bits)


def n_slices(bits: int, bits_per_cell: int, scheme: str) -> int:
    return math.ceil(magnitude_bits(bits, scheme) / bits_per_cell)


def slice_full_scale(bits: int, bits_per_cell: int, scheme: str) -> tuple[int, ...]:
    """Per slice, the digit programmed at g_max: all the cell's levels for the lower slices, the
    largest digit the top slice can hold for the top one (so the largest code reaches g_max)."""
    levels = 2 ** bits_per_cell - 1
    top = max_stored(bits, scheme)
    return tuple(max(1, min(levels, top >> (bits_per_cell * s)))
                 for s in range(n_slices(bits, bits_per_cell, scheme)))


def column_devices(scheme: str) -> int:
    """Device columns per slice: 2 for a differential pair on two columns, else 1."""
    return 2 if scheme == "differential" else 1


def usable_cols(cols: int, scheme: str) -> int:
    """Columns of an array that hold weights (offset keeps one reference column)."""
    usable = cols - 1 if scheme == "offset" else cols
    if usable < 1:
        raise MappingError(f"array of {cols} columns leaves no column besides the offset column")
    return usable


def dac_codes(bits: int, unsigned: bool) -> tuple[int, int]:
    """(lowest, highest) DAC input code for b bits."""
    if unsigned:
        return 0, 2 ** bits - 1
    hi = 2 ** (bits - 1) - 1 if bits > 1 else 1
    return -hi, hi


def dac_step(value_range: float, hi: int) -> float:
    """Input value of one DAC code when ``value_range`` maps to the highest code."""
    return value_range / hi if value_range > 0 else 1.0


def dac_quantizer(bits: int, value_range: float, unsigned: bool) -> tuple[float, int, int]:
    """(step, lowest code, highest code) of a b-bit DAC whose highest code is ``value_range``."""
    lo, hi = dac_codes(bits, unsigned)
    return dac_step(value_range, hi), lo, hi


def adc_levels(bits: int) -> int:
    """Largest |code| of a signed b-bit ADC."""
    return 2 ** (bits - 1) - 1 if bits > 1 else 1


# -- the layout -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    """One weight tile (or packed group block) inside one array of a layer.

    Attributes:
        array: local index of the array (within one replica).
        group: the op's group whose weights it holds.
        row_tile / col_tile: tile indices within that group.
        row0: first array row it occupies; rows ``r0..r1`` of the group's kept-row list sit on
            array rows ``row0 .. row0 + r1 - r0``.
        r0 / r1: positions in the group's kept rows.
        p0 / p1: layout columns of the group (see the module docstring) it holds.
        col0: array column of layout column p0.
    """

    array: int
    group: int
    row_tile: int
    col_tile: int
    row0: int
    r0: int
    r1: int
    p0: int
    p1: int
    col0: int

    @property
    def n_rows(self) -> int:
        return self.r1 - self.r0

    @property
    def n_cols(self) -> int:
        return self.p1 - self.p0


@dataclass(frozen=True, eq=False)
class LayerLayout:
    """How one MatrixOp sits on crossbars: resolved precisions and the list of blocks.

    ``kept_rows[i]`` / ``kept_cols[i]`` are the W rows (within K) and global W columns that group
    ``groups_placed[i]`` keeps. A layer whose weight another layer already holds (``shares``)
    reads that layer's arrays: it places none (``placed_arrays`` 0) and is charged its reads.
    """

    name: str
    weight_bits: int
    input_bits: int
    scheme: str
    bits_per_cell: int
    slices: int
    column_devices: int
    full_scale: tuple[int, ...]
    array_rows: int
    array_cols: int
    groups_placed: tuple[int, ...]
    kept_rows: tuple[np.ndarray, ...]
    kept_cols: tuple[np.ndarray, ...]
    blocks: tuple[Block, ...]
    packed: bool
    blocks_per_array: int
    vectors: int
    macs: int
    weights: int
    replicas: int = 1
    first_array: int = 0
    shares: str | None = None
    sharers: tuple[str, ...] = field(default=())
    parallel_rows: int = 0  # rows driven in one read (0: all of array_rows)

    # -- rows read at once ------------------------------------------------------------------
    @property
    def read_rows(self) -> int:
        """Rows summed by one read (``array.parallel_rows``, at most the array's rows)."""
        return min(self.parallel_rows or self.array_rows, self.array_rows)

    @property
    def shared_reads(self) -> bool:
        """Packed group blocks that fit one read share reads with the other blocks of their
        array (reads aligned to the blocks)."""
        return self.packed and self.rows_used <= self.read_rows

    def block_reads(self, b: Block) -> int:
        """Reads that sum a block's rows: ceil(rows / parallel rows), or 1 with shared reads."""
        if self.shared_reads:
            return 1
        return -(-b.n_rows // self.read_rows)

    @cached_property
    def reads_per_array(self) -> tuple[int, ...]:
        """Reads of every array per input cycle (one copy): all its rows, parallel_rows at a
        time; packed group blocks that fit a read share it (floor(parallel rows / block rows)
        blocks per read, reads aligned to the blocks)."""
        reads = [0] * self.arrays
        for b in self.blocks:  # with shared reads, the blocks of each array first
            reads[b.array] += self.block_reads(b)
        if self.shared_reads:
            per_read = max(1, self.read_rows // self.rows_used)
            return tuple(-(-c // per_read) for c in reads)
        return tuple(reads)

    # -- derived counts (one copy) ----------------------------------------------------------
    @cached_property
    def arrays(self) -> int:
        """Arrays one copy of the layer reads."""
        return max((b.array for b in self.blocks), default=-1) + 1

    @property
    def total_arrays(self) -> int:
        """Arrays the layer reads, over its replicas."""
        return self.arrays * self.replicas

    @property
    def placed_arrays(self) -> int:
        """Arrays the layer places (0 when it reads another layer's arrays)."""
        return 0 if self.shares else self.total_arrays

    @property
    def groups(self) -> int:
        return len(self.groups_placed)

    @property
    def per_col(self) -> int:
        """Layout columns per logical column."""
        return self.slices * self.column_devices

    @cached_property
    def rows_used(self) -> int:
        """Kept rows of the tallest group."""
        return max((len(r) for r in self.kept_rows), default=0)

    @cached_property
    def input_rows(self) -> int:
        """Kept rows over all groups (inputs read per vector)."""
        return int(sum(len(r) for r in self.kept_rows))

    @cached_property
    def cols_logical(self) -> int:
        """Kept logical columns over all groups."""
        return int(sum(len(c) for c in self.kept_cols))

    @cached_property
    def phys_cols(self) -> int:
        """Layout columns of the widest group."""
        return max((len(c) for c in self.kept_cols), default=0) * self.per_col

    @cached_property
    def row_tiles(self) -> int:
        return max((b.row_tile for b in self.blocks), default=-1) + 1

    @cached_property
    def col_tiles(self) -> int:
        return max((b.col_tile for b in self.blocks), default=-1) + 1

    @cached_property
    def used_cells(self) -> int:
        """Cells holding weights (and offset reference cells on driven rows), one copy."""
        cells = sum(b.n_rows * b.n_cols for b in self.blocks)
        if self.scheme == "offset":
            cells += self.driven_rows
        return int(cells)

    @cached_property
    def converted_cols(self) -> int:
        """ADC conversions per input cycle, one copy: one per (logical column, slice) of every
        block and read (a differential pair is subtracted before the ADC), plus the offset
        reference column of every array in every read."""
        cdev = self.column_devices
        conv = sum(((b.p1 - 1) // cdev - b.p0 // cdev + 1) * self.block_reads(b)
                   for b in self.blocks if b.p1 > b.p0)
        if self.scheme == "offset":  # the reference column is digitized in every read
            conv += sum(self.reads_per_array)
        return int(conv)

    @cached_property
    def driven_rows(self) -> int:
        """DAC-driven rows per input cycle, one copy."""
        return int(sum(b.n_rows for b in self.blocks))

    @cached_property
    def rows_per_array(self) -> tuple[int, ...]:
        """Driven rows of every array of one copy (what a write programs, row by row)."""
        rows = [0] * self.arrays
        for b in self.blocks:
            rows[b.array] += b.n_rows
        return tuple(rows)

    @cached_property
    def row_groups(self) -> tuple[tuple[int, int, int, int, int], ...]:
        """The ADC row groups: (group, row tile, read, r0, r1) of every distinct row set one read
        of the arrays sums, in order (a block's rows ``r0..r1`` of its group's kept rows, cut
        into reads of ``parallel_rows``). The simulation quantizes one partial sum per group."""
        seen: dict[tuple[int, int, int], tuple[int, int, int, int, int]] = {}
        for b in self.blocks:
            n = self.block_reads(b)
            step = self.read_rows if n > 1 else b.n_rows
            for k in range(n):
                lo, hi = b.r0 + k * step, min(b.r0 + (k + 1) * step, b.r1)
                seen.setdefault((b.group, b.row_tile, k), (b.group, b.row_tile, k, lo, hi))
        return tuple(sorted(seen.values()))

    @cached_property
    def partial_sums(self) -> int:
        """Partial sums accumulated digitally per vector: every kept column of every row group."""
        width = {g: len(c) for g, c in zip(self.groups_placed, self.kept_cols)}
        return int(sum(width[g] for g, _, _, _, _ in self.row_groups))

    def utilization(self, rows: int | None = None, cols: int | None = None) -> float:
        rows = rows or self.array_rows
        cols = cols or self.array_cols
        return self.used_cells / (self.arrays * rows * cols) if self.arrays else 0.0

    def rows_of(self, b: Block) -> np.ndarray:
        """W rows (within K) of a block, in array-row order."""
        return self.kept_rows[self._gi[b.group]][b.r0:b.r1]

    def cols_of(self, b: Block) -> np.ndarray:
        """Global W columns of a block's layout columns (one per layout column)."""
        c = self.kept_cols[self._gi[b.group]]
        return c[np.arange(b.p0, b.p1) // self.per_col]

    @cached_property
    def _gi(self) -> dict[int, int]:
        return {g: i for i, g in enumerate(self.groups_placed)}

    def group_rows(self, group: int) -> np.ndarray:
        return self.kept_rows[self._gi[group]]

    def group_cols(self, group: int) -> np.ndarray:
        return self.kept_cols[self._gi[group]]

    def tiles(self) -> tuple[tuple[tuple[int, int, int], ...], ...]:
        """The ADC row groups by row tile, for the simulation: for every row tile index, the
        (group, first W row, last W row + 1) of each group that has that tile. Rows inside such
        a range that are not kept are pruned (their weights are zero)."""
        by_tile: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        for g, rt, k, r0, r1 in self.row_groups:
            rows = self.group_rows(g)[r0:r1]
            by_tile.setdefault((rt, k), []).append((g, int(rows[0]), int(rows[-1]) + 1))
        return tuple(tuple(by_tile[t]) for t in sorted(by_tile))


def _kept_groups(op: MatrixOp) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(group, kept W rows, kept global W columns) of every group that keeps a weight."""
    k, npg = op.rows, op.cols_per_group
    mask = op.compression.mask
    out = []
    for g in range(op.groups):
        if mask is None:
            out.append((g, np.arange(k), g * npg + np.arange(npg)))
            continue
        b = mask[:, g * npg:(g + 1) * npg]
        rows_any = b.any(axis=1)
        if rows_any.any():
            out.append((g, np.flatnonzero(rows_any), g * npg + np.flatnonzero(b.any(axis=0))))
    return out


def map_layer(op: MatrixOp, rows: int, cols: int, bits_per_cell: int, scheme: str,
              default_weight_bits: int, default_input_bits: int,
              replicas: int = 1, parallel_rows: int | None = None) -> LayerLayout:
    """Place one MatrixOp on arrays of rows x cols cells (pure; see the module docstring)."""
    if scheme not in SCHEMES:
        raise MappingError(f"unknown signed scheme {scheme!r}; expected one of {SCHEMES}")
    wb = op.compression.weight_bits or default_weight_bits
    ib = op.compression.act_bits or default_input_bits
    slices = n_slices(wb, bits_per_cell, scheme)
    cdev = column_devices(scheme)
    per_col = slices * cdev
    usable = usable_cols(cols, scheme)
    kept = _kept_groups(op)
    blocks: list[Block] = []
    k_max = max((len(r) for _, r, _ in kept), default=0)
    w_max = max((len(c) for _, _, c in kept), default=0) * per_col
    packed = len(kept) > 1 and op.groups > 1 and k_max <= rows and w_max <= usable
    bpa = 0
    if packed:  # block-diagonal: equal slots of the largest group block
        bpa = min(rows // k_max, usable // w_max)
        for i, (g, r, c) in enumerate(kept):
            a, slot = divmod(i, bpa)
            blocks.append(Block(a, g, 0, 0, slot * k_max, 0, len(r), 0, len(c) * per_col,
                                slot * w_max))
    else:
        mask = op.compression.mask
        a = 0
        for g, r_all, c_all in kept:
            width = len(c_all) * per_col
            for rt in range(-(-len(r_all) // rows)):
                r0, r1 = rt * rows, min((rt + 1) * rows, len(r_all))
                for ct in range(-(-width // usable)):
                    p0, p1 = ct * usable, min((ct + 1) * usable, width)
                    if mask is not None:  # block pruning: a tile without a kept weight is empty
                        lc = c_all[p0 // per_col:(p1 - 1) // per_col + 1]
                        if not mask[np.ix_(r_all[r0:r1], lc)].any():
                            continue
                    blocks.append(Block(a, g, rt, ct, 0, r0, r1, p0, p1, 0))
                    a += 1
    return LayerLayout(
        name=op.name, weight_bits=wb, input_bits=ib, scheme=scheme, bits_per_cell=bits_per_cell,
        slices=slices, column_devices=cdev,
        full_scale=slice_full_scale(wb, bits_per_cell, scheme), array_rows=rows,
        array_cols=cols, groups_placed=tuple(g for g, _, _ in kept),
        kept_rows=tuple(r for _, r, _ in kept), kept_cols=tuple(c for _, _, c in kept),
        blocks=tuple(blocks), packed=packed, blocks_per_array=bpa, vectors=op.vectors,
        macs=op.macs, weights=op.weights, replicas=replicas, parallel_rows=parallel_rows or rows)


def layer_layout(op: MatrixOp, target: Target, replicas: int = 1) -> LayerLayout:
    """`map_layer` with the target's array and precision."""
    a = target.array
    return map_layer(op, a.rows, a.cols, a.bits_per_cell, a.signed_scheme,
                     target.precision.weight_bits, target.precision.input_bits, replicas,
                     a.parallel_rows)
