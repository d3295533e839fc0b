"""`quantize`: per-column symmetric weight quantization and activation (DAC) precision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping

import numpy as np

from imccompile.errors import PassError
from imccompile.ir import Graph, MatrixOp
from imccompile.noise import quantize_columns
from imccompile.passes.base import LayerPass, PassContext, register_pass

WEIGHT_BITS = (1, 8)
ACT_BITS = (1, 16)


def quantize_weight(w: np.ndarray, bits: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-column symmetric quantization of a (K, N) weight, returned dequantized (float32).

    b >= 2: ``Q = 2^(b-1) - 1``, ``s = max|w_col| / Q``, ``w' = clip(rint(w / s), -Q, Q) * s``
    (round half to even). b == 1: ``w' = sign(w) * mean|w_col|``, the mean over the column's
    kept weights (so pruned and exactly-zero weights stay zero). All-zero columns stay zero.
    """
    x = np.asarray(w, np.float64)
    if mask is not None:
        x = np.where(mask, x, 0.0)
    if bits == 1:
        kept = np.ones(x.shape, bool) if mask is None else mask
        count = kept.sum(axis=0)
        mean = np.abs(x).sum(axis=0) / np.maximum(count, 1)
        return (np.sign(x) * mean[None, :]).astype(np.float32)
    if not x.size:
        return x.astype(np.float32)
    codes, step = quantize_columns(x, bits)  # the same grid the simulation and mapper use
    return (codes * step).astype(np.float32)


def _bits_choices(values: Any, lo: int, hi: int) -> list[int] | tuple[int, int]:
    if values is None:
        return (lo, hi)
    ok = sorted({int(v) for v in values if lo <= int(v) <= hi})
    return ok or (lo, hi)


@register_pass
@dataclass(frozen=True)
class Quantize(LayerPass):
    """Quantize weights per crossbar column (symmetric, ``weight_bits`` incl. sign) and set the
    activation (DAC input) precision of the selected matrix ops.

    ``weight`` becomes the dequantized values (see `quantize_weight`; for 1 bit, sign times the
    column's mean |w|), ``compression.weight_bits`` / ``act_bits`` the options. With calibration
    data, ``compression.act_range`` becomes max |x| of each op's input over the data
    (``calibration=max``) or the ``percentile`` of |x| (``calibration=percentile``), and
    ``act_signed`` whether that input is ever negative; without data they are left to the
    simulation's own calibration (max), and calibration=percentile is an error.

    A layer cannot be re-quantized to more bits than it already has (its precision is gone):
    exclude it from the earlier quantize instead, e.g.
    ``quantize{exclude=/classifier*,weight_bits=4},quantize{match=/classifier*,weight_bits=8}``.

    Attributes:
        weight_bits: weight bits incl. sign, 1..8.
        act_bits: DAC input bits, 1..16.
        calibration: max or percentile (of |x| over the data).
        percentile: the percentile for calibration=percentile, in (0, 100].
    """

    name: ClassVar[str] = "quantize"
    stats_set_ranges_only: ClassVar[bool] = True
    weight_bits: int = 8
    act_bits: int = 8
    calibration: Literal["max", "percentile"] = "max"
    percentile: float = 99.99

    def validate(self) -> None:
        super().validate()
        if not WEIGHT_BITS[0] <= self.weight_bits <= WEIGHT_BITS[1]:
            raise self.bad("weight_bits", self.weight_bits, "an int in 1..8")
        if not ACT_BITS[0] <= self.act_bits <= ACT_BITS[1]:
            raise self.bad("act_bits", self.act_bits, "an int in 1..16")
        if not 0.0 < self.percentile <= 100.0:
            raise self.bad("percentile", self.percentile, "a float in (0, 100]")
        if self.calibration == "max" and self.percentile != 99.99:
            raise self.bad("percentile", self.percentile,
                           "no percentile unless calibration=percentile")

    @classmethod
    def search_space(cls, target: Any = None) -> dict[str, list | tuple]:
        search = getattr(target, "search", None)
        return {"weight_bits": _bits_choices(getattr(search, "weight_bits", None), *WEIGHT_BITS),
                "act_bits": _bits_choices(getattr(search, "input_bits", None), *ACT_BITS)}

    def quantize_op(self, op: MatrixOp, act: tuple[float, float] | None = None) -> MatrixOp:
        """The op quantized; ``act`` = (range, min) of its input from calibration, if any."""
        c = op.compression.replace(weight_bits=self.weight_bits, act_bits=self.act_bits)
        if act is not None:
            c = c.replace(act_range=float(act[0]), act_signed=bool(act[1] < 0.0))
        return op.replace(weight=quantize_weight(op.weight, self.weight_bits, c.mask),
                          compression=c)

    def apply(self, graph: Graph, ctx: PassContext) -> Graph:
        chosen = self.selected(graph)
        for op in chosen:
            had = op.compression.weight_bits
            if had is not None and had < self.weight_bits:
                raise PassError(
                    f"pass `{self.name}`: layer {op.name} already has {had}-bit weights; "
                    f"quantizing it to {self.weight_bits} bits cannot restore precision. "
                    f"Leave it out of the earlier quantize (exclude=...) and quantize it once")
        stats: Mapping[str, tuple[float, float]] = {}
        if ctx.activation_stats is not None and chosen:
            pct = self.percentile if self.calibration == "percentile" else None
            stats = ctx.activation_stats(graph, pct)  # measured by the driver on the data
        elif self.calibration == "percentile":
            raise PassError(f"pass `{self.name}`: calibration=percentile needs calibration "
                            "data (give data / --data), or use calibration=max")
        names = {op.name for op in chosen}
        return graph.with_ops(
            self.quantize_op(op, stats.get(op.inputs[0])) if isinstance(op, MatrixOp)
            and op.name in names else op for op in graph.ops)
