"""`prune`: magnitude pruning of crossbar weights at element, row, column or block granularity."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from imccompile.errors import PassError
from imccompile.ir import Graph, MatrixOp
from imccompile.layout import column_devices, layer_bits, n_slices, usable_cols
from imccompile.passes.base import LayerPass, PassContext, register_pass

GRANULARITIES = ("element", "row", "column", "block")


def pruned_units(ratio: float, units: int) -> int:
    """How many of ``units`` a ratio prunes: floor(ratio * units), at most units - 1 unless
    ratio == 1 (a layer is never pruned away entirely by accident)."""
    if units == 0:
        return 0
    if ratio >= 1.0:
        return units
    return min(units - 1, math.floor(ratio * units + 1e-9))


def unit_ids(shape: tuple[int, int], granularity: str, block: tuple[int, int] = (1, 1)
             ) -> np.ndarray:
    """For each weight of a (K, N) matrix, the index of the pruning unit it belongs to."""
    k, n = shape
    i = np.arange(k)[:, None]
    j = np.arange(n)[None, :]
    if granularity == "element":
        return i * n + j
    if granularity == "row":
        return np.broadcast_to(i, shape)
    if granularity == "column":
        return np.broadcast_to(j, shape)
    br, bc = block
    return (i // br) * math.ceil(n / bc) + j // bc


@register_pass
@dataclass(frozen=True)
class Prune(LayerPass):
    """Magnitude pruning: zero the weights of the smallest units and record them in the mask.

    Per selected matrix op (see ``match`` / ``exclude``), the units of the chosen granularity
    are ranked by the L2 norm of their weights and floor(ratio x units) of the smallest are
    pruned: ``compression.mask`` (bool K x N) becomes False and ``weight`` zero there.

    * ``element``: single weights, over the whole layer. The mapper still places every row and
      column; only hardware that skips zero cells saves anything.
    * ``row``: whole crossbar rows (rows of W). For a grouped op each group's block of N/groups
      columns has its own K rows and loses the same number of them.
    * ``column``: whole crossbar columns (output features); per group for grouped ops.
    * ``block``: array-sized tiles of ``block_rows`` x ``block_cols`` logical weights (per
      group); by default one crossbar's worth: rows = array.rows, cols = the logical columns
      one array holds, usable columns // (slices x polarity columns) with the layout's
      slices (imccompile.layout: magnitude bits / bits_per_cell for differential schemes) and
      the offset scheme's reference column not usable.

    Structured pruning (row, column, and block when whole row or column stripes go) lowers the
    rows and columns the mapper places. Pruning composes: already pruned weights stay pruned and
    count towards the ratio (a unit with no kept weight is pruned first). Unless ratio == 1,
    every layer (every group) keeps at least one unit.

    Attributes:
        ratio: fraction of the units to prune, 0..1.
        granularity: element, row, column or block.
        block_rows / block_cols: block size in weights (granularity=block only); None = from
            the target's array (an error when there is no target).
    """

    name: ClassVar[str] = "prune"
    stats_set_ranges_only: ClassVar[bool] = True
    ratio: float = 0.5
    granularity: Literal["element", "row", "column", "block"] = "element"
    block_rows: int | None = None
    block_cols: int | None = None

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.ratio <= 1.0:
            raise self.bad("ratio", self.ratio, "a float in 0..1 (the fraction pruned)")
        for opt in ("block_rows", "block_cols"):
            v = getattr(self, opt)
            if v is None:
                continue
            if self.granularity != "block":
                raise self.bad(opt, v, f"no {opt} unless granularity=block "
                                       f"(granularity={self.granularity})")
            if v < 1:
                raise self.bad(opt, v, "an int >= 1 (weights per block)")

    @classmethod
    def search_space(cls, target: Any = None) -> dict[str, list | tuple]:
        return {"ratio": (0.0, 0.9), "granularity": list(GRANULARITIES)}

    def block_shape(self, op: MatrixOp, target: Any) -> tuple[int, int]:
        """(rows, cols) of a block for ``op``: the options, else one array of the target."""
        br, bc = self.block_rows, self.block_cols
        if br is not None and bc is not None:
            return br, bc
        if target is None:
            raise PassError(f"pass `{self.name}`: granularity=block needs the target's array "
                            "size; compile for a target or give block_rows and block_cols")
        a = target.array
        if br is None:
            br = int(a.rows)
        if bc is None:
            wb, _ = layer_bits(op, target)
            slices = n_slices(wb, a.bits_per_cell, a.signed_scheme)
            usable = usable_cols(a.cols, a.signed_scheme)
            bc = max(1, usable // (slices * column_devices(a.signed_scheme)))
        return br, bc

    def prune_op(self, op: MatrixOp, target: Any = None) -> MatrixOp:
        """The op with its smallest units pruned (unchanged when nothing new is pruned)."""
        w = op.weight
        old = op.compression.mask
        alive_w = np.ones(w.shape, bool) if old is None else old
        block = self.block_shape(op, target) if self.granularity == "block" else (1, 1)
        if self.granularity == "element" or op.groups == 1:
            parts = [slice(None)]
        else:
            cpg = op.cols_per_group
            parts = [slice(g * cpg, (g + 1) * cpg) for g in range(op.groups)]
        keep = np.ones(w.shape, bool)
        for cols in parts:
            sub_w = w[:, cols].astype(np.float64)
            sub_alive = alive_w[:, cols]
            ids = unit_ids(sub_w.shape, self.granularity, block)
            units = int(ids.max()) + 1 if ids.size else 0
            energy = np.bincount(ids.ravel(), weights=(np.where(sub_alive, sub_w, 0.0) ** 2)
                                 .ravel(), minlength=units)
            alive = np.bincount(ids.ravel(), weights=sub_alive.ravel().astype(np.float64),
                                minlength=units) > 0
            order = np.lexsort((energy, alive))  # dead units first, then by magnitude
            keep_units = np.ones(units, bool)
            keep_units[order[:pruned_units(self.ratio, units)]] = False
            keep[:, cols] = keep_units[ids]
        mask = alive_w & keep
        if mask.all():
            return op
        weight = np.where(mask, w, np.float32(0)).astype(np.float32)
        return op.replace(weight=weight, compression=op.compression.replace(mask=mask))

    def apply(self, graph: Graph, ctx: PassContext) -> Graph:
        chosen = {op.name for op in self.selected(graph)}
        return graph.with_ops(
            self.prune_op(op, ctx.target) if isinstance(op, MatrixOp) and op.name in chosen
            else op for op in graph.ops)
