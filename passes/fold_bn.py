"""`fold-bn`: fold BatchNormalization into the preceding matrix op."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from imccompile.fuse import fold_batchnorm
from imccompile.ir import Graph
from imccompile.passes.base import Pass, PassContext, register_pass


@register_pass
@dataclass(frozen=True)
class FoldBatchNorm(Pass):
    """Fold inference-mode BatchNormalization into the Conv/ConvTranspose/Gemm/MatMul before it
    (scales the weight columns, shifts the bias) and remove the BN op.

    The frontend already does this at import, so on an imported graph it changes nothing; it is
    here so that a pipeline states it. It must run before `prune` and `quantize`: scaling
    columns afterwards would move quantized weights off their grid and re-rank magnitudes.
    """

    name: ClassVar[str] = "fold-bn"
    stats_set_ranges_only: ClassVar[bool] = True
    runs_before: ClassVar[tuple[str, ...]] = ("prune", "quantize")

    def apply(self, graph: Graph, ctx: PassContext) -> Graph:
        return fold_batchnorm(graph)
