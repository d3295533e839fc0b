"""Crossbar mapper: the physical layout of every layer (imccompile.layout), weights shared by
several nodes placed once, replication, placement onto cores / tiles / chips, and what happens
when the model does not fit one chip.

Pure functions over the IR and a Target; no ONNX here. The layout rules themselves (bits, slices,
signed schemes, tiling, packing) are in `imccompile.layout`.

* **Shared weights.** MatrixOps whose ``weight_id`` is the same (the same constant tensor read by
  several nodes: an unrolled RNN, tied embeddings, a conv applied twice) and whose stored
  weights are identical (bits, mask and values) are placed once: the first one holds the arrays,
  the others read them (``LayerLayout.shares``) and are charged their own reads. Uses that a
  pass compressed differently cannot share cells: they are placed separately, with a warning.
* **Overflow** (more arrays than one chip): ``chips`` maps onto as many chips as needed;
  ``error`` stops; ``reload`` keeps a *resident* prefix of the layers (in placement order) on
  the chip and runs the others one after another on the remaining *pool* of arrays, writing
  their weights every inference. The resident prefix is the longest one that leaves a pool
  large enough for the largest remaining layer; when even the whole chip is smaller than that
  layer, nothing is resident and layers run in rounds of the whole chip.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal, Mapping as TMapping, Sequence

import numpy as np

from imccompile.errors import MappingError
from imccompile.ir import Graph, MatrixOp
from imccompile.layout import LayerLayout, layer_layout

if TYPE_CHECKING:
    from imccompile.spec import Target

OverflowPolicy = Literal["chips", "reload", "error"]
LOW_UTILIZATION = 0.25  # layers below this share of used cells are named in a warning
POOL = "reload pool"  # the schedule's resource name for the arrays layers take turns on


@dataclass(frozen=True)
class ArraySlot:
    """Where an array sits: chip, tile, core, index in core (all 0-based)."""

    chip: int
    tile: int
    core: int
    index: int


@dataclass(frozen=True)
class ReloadPlan:
    """``--overflow reload``: which layers stay on the chip, and the pool the others share.

    Attributes:
        resident: layers whose arrays stay programmed.
        pool_first: physical index of the pool's first array; pool_arrays: its size.
        first_round: per pooled layer, the index of its first write round (over the inference).
    """

    resident: frozenset[str]
    pool_first: int
    pool_arrays: int
    first_round: dict[str, int]

    def rounds(self, lm: LayerLayout) -> int:
        """Write-and-compute rounds of a pooled layer on the pool."""
        return math.ceil(lm.total_arrays / self.pool_arrays) if lm.total_arrays else 0


@dataclass(frozen=True)
class Mapping:
    """The whole model's mapping onto one or more chips."""

    layers: tuple[LayerLayout, ...]
    rows: int
    cols: int
    chip_arrays: int
    overflow_policy: OverflowPolicy
    warnings: tuple[str, ...] = ()
    reload: ReloadPlan | None = None

    @property
    def arrays(self) -> int:
        """Arrays placed (a shared weight counts once)."""
        return sum(lm.placed_arrays for lm in self.layers)

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
        used = sum(lm.used_cells * lm.replicas for lm in self.layers if not lm.shares)
        return used / (self.arrays * self.rows * self.cols) if self.arrays else 0.0

    @cached_property
    def _by_name(self) -> dict[str, LayerLayout]:
        return {lm.name: lm for lm in self.layers}

    def layer(self, name: str) -> LayerLayout:
        return self._by_name[name]

    def owner(self, lm: LayerLayout) -> LayerLayout:
        """The layer whose arrays ``lm`` reads (itself unless it shares a weight)."""
        return self.layer(lm.shares) if lm.shares else lm

    def pooled(self, name: str) -> bool:
        """Whether the layer runs on the reload pool (its weights written every inference)."""
        if self.reload is None:
            return False
        lm = self.owner(self.layer(name))
        return lm.name not in self.reload.resident and lm.total_arrays > 0

    def resource(self, name: str) -> str:
        """The physical arrays a layer computes on, as a schedule resource: layers with the same
        resource cannot compute at the same time."""
        if self.pooled(name):
            return POOL
        return self.owner(self.layer(name)).name

    def location(self, lm: LayerLayout, local: int, replica: int = 0) -> tuple[int, int]:
        """(physical array index, reload round) of array ``local`` of replica ``replica``."""
        owner = self.owner(lm)
        j = replica * owner.arrays + local
        if self.reload is not None and self.pooled(owner.name):
            r, k = divmod(j, self.reload.pool_arrays)
            return self.reload.pool_first + k, self.reload.first_round[owner.name] + r
        return owner.first_array + j, 0


def _replicas_for(name: str, replicate: TMapping[str, int]) -> int:
    for pat, r in replicate.items():
        if name == pat or fnmatch.fnmatchcase(name, pat):
            if r < 1:
                raise MappingError(f"replication for {pat!r} must be >= 1, got {r}")
            return int(r)
    return 1


def _patterns_must_match(ops: Sequence[MatrixOp], replicate: TMapping[str, int]) -> None:
    """A replication pattern that names no crossbar layer is a mistake, never ignored."""
    for pat in replicate:
        if not any(op.name == pat or fnmatch.fnmatchcase(op.name, pat) for op in ops):
            names = [op.name for op in ops]
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
            raise MappingError(f"replicate {pat!r}: matches no crossbar layer (name or glob); "
                               f"the layers are: {shown or 'none'}")


def balance_replicas(layers: list[LayerLayout], spare: int) -> list[LayerLayout]:
    """Give spare arrays to the pipeline's bottleneck (most input vectors per copy), greedily,
    until the bottleneck's next copy no longer fits in the spare arrays. Layers reading a shared
    weight are balanced by their owner's copies."""
    out = list(layers)
    while True:
        live = [i for i, lm in enumerate(out) if lm.arrays and not lm.shares]
        if not live:
            return out
        i = max(live, key=lambda j: (out[j].vectors / out[j].replicas, -j))
        lm = out[i]
        if lm.arrays > spare or lm.replicas >= lm.vectors:
            return out
        spare -= lm.arrays
        out[i] = dataclasses.replace(lm, replicas=lm.replicas + 1)


def same_weight(a: MatrixOp, b: MatrixOp) -> bool:
    """Whether two matrix ops read one stored weight tensor: the same ``weight_id``, the same
    logical shape and groups, identical values."""
    return (a.weight_id is not None and a.weight_id == b.weight_id
            and a.weight.shape == b.weight.shape and a.groups == b.groups
            and (a.weight is b.weight or bool(np.array_equal(a.weight, b.weight))))


def _same_storage(a: MatrixOp, b: MatrixOp, la: LayerLayout, lb: LayerLayout) -> bool:
    """Whether two uses of one weight tensor would program the same cells."""
    if la.weight_bits != lb.weight_bits:
        return False
    ma, mb = a.compression.mask, b.compression.mask
    if ma is None or mb is None:
        if ma is not mb:
            return False
    elif not np.array_equal(ma, mb):
        return False
    return same_weight(a, b)


def _share(ops: tuple[MatrixOp, ...], layers: list[LayerLayout], warnings: list[str]) -> None:
    """Mark the layers that read a weight an earlier layer already holds (in place)."""
    first: dict[str, list[int]] = {}
    differ: dict[str, list[str]] = {}
    for i, op in enumerate(ops):
        if op.weight_id is None or not layers[i].arrays:
            continue
        owners = first.setdefault(op.weight_id, [])
        for j in owners:
            if _same_storage(ops[j], op, layers[j], layers[i]):
                layers[i] = dataclasses.replace(
                    layers[j], name=op.name, input_bits=layers[i].input_bits,
                    vectors=op.vectors, macs=op.macs, weights=op.weights, replicas=1,
                    shares=layers[j].name, sharers=())
                layers[j] = dataclasses.replace(layers[j], sharers=layers[j].sharers + (op.name,))
                break
        else:
            if owners:
                differ.setdefault(op.weight_id, [ops[owners[0]].name]).append(op.name)
            owners.append(i)
    for wid, names in differ.items():
        warnings.append(f"layers {', '.join(names)} read the same weight {wid!r} but were "
                        "compressed differently (weight bits or pruning): each use is placed on "
                        "its own arrays")


def _reload_plan(layers: list[LayerLayout], chip_arrays: int) -> ReloadPlan:
    owners = [lm for lm in layers if not lm.shares and lm.total_arrays]
    sizes = [lm.total_arrays for lm in owners]
    prefix = [0]
    for s in sizes:
        prefix.append(prefix[-1] + s)
    k = 0
    for cand in range(len(owners), -1, -1):
        rest = max(sizes[cand:], default=0)
        if prefix[cand] + rest <= chip_arrays and (cand == len(owners) or rest > 0):
            k = cand
            break
    resident = frozenset(lm.name for lm in owners[:k])
    pool_first = prefix[k]
    pool = chip_arrays - pool_first
    first_round: dict[str, int] = {}
    r = 0
    for lm in owners[k:]:
        first_round[lm.name] = r
        r += math.ceil(lm.total_arrays / pool)
    return ReloadPlan(resident, pool_first, pool, first_round)


def map_graph(graph: Graph, target: Target, *, overflow: OverflowPolicy = "chips",
              replicate: TMapping[str, int] | None = None,
              auto_replicate: bool = False) -> Mapping:
    """Map every MatrixOp of the graph onto the target's arrays and place them in order."""
    a, h = target.array, target.hierarchy
    chip_arrays = h.arrays_per_core * h.cores_per_tile * h.tiles_per_chip
    ops = graph.matrix_ops
    _patterns_must_match(ops, replicate or {})
    layers = [layer_layout(op, target, _replicas_for(op.name, replicate or {})) for op in ops]
    warnings: list[str] = []
    _share(ops, layers, warnings)
    if auto_replicate:
        spare = chip_arrays - sum(lm.placed_arrays for lm in layers)
        if spare > 0:
            layers = balance_replicas(layers, spare)
    placed, nxt = [], 0
    for lm in layers:
        placed.append(dataclasses.replace(lm, first_array=nxt))
        nxt += lm.placed_arrays
    by_name = {lm.name: lm for lm in placed}
    placed = [dataclasses.replace(lm, first_array=by_name[lm.shares].first_array,
                                  replicas=by_name[lm.shares].replicas) if lm.shares else lm
              for lm in placed]
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
            plan = _reload_plan(placed, chip_arrays)
            m = dataclasses.replace(m, reload=plan)
            pooled = len(plan.first_round)
            warnings.append(msg + f"; {pooled} layers take turns on a pool of "
                            f"{plan.pool_arrays} arrays, their weights written every inference, "
                            f"one layer after another (--overflow reload)")
    shared = [lm for lm in placed if lm.sharers]
    if shared:
        shown = "; ".join(f"{lm.name} is also read by {', '.join(lm.sharers[:3])}"
                          + (f" and {len(lm.sharers) - 3} more" if len(lm.sharers) > 3 else "")
                          for lm in shared[:3])
        more = f"; and {len(shared) - 3} more weights" if len(shared) > 3 else ""
        warnings.append(f"weights read by several layers are placed once (the readers take turns "
                        f"on the arrays): the weight of {shown}{more}")
    empty = [lm.name for lm in placed if not lm.arrays and not lm.shares]
    if empty:  # e.g. prune{ratio=1.0}: defined, but worth saying
        shown = ", ".join(empty[:4]) + (f" and {len(empty) - 4} more" if len(empty) > 4 else "")
        warnings.append(f"{len(empty)} layers hold no nonzero weight and take no arrays: {shown} "
                        "(each outputs its bias only)")
    low = sorted((lm.utilization(a.rows, a.cols), lm.name) for lm in placed
                 if lm.arrays and not lm.shares and lm.utilization(a.rows, a.cols) < LOW_UTILIZATION)
    if low:
        shown = ", ".join(f"{name} {100 * u:.1f}%" for u, name in low[:4])
        more = f" and {len(low) - 4} more" if len(low) > 4 else ""
        n_owned = sum(1 for lm in placed if not lm.shares)
        warnings.append(f"{len(low)} of {n_owned} layers use under "
                        f"{100 * LOW_UTILIZATION:.0f}% of their arrays' cells: {shown}{more} "
                        "(small layers on large arrays; smaller arrays or packing would help)")
    return dataclasses.replace(m, warnings=tuple(warnings))


def slot(index: int, target: Target) -> ArraySlot:
    """Placement of physical array number ``index`` (row-major over chip, tile, core, array)."""
    h = target.hierarchy
    per_core = h.arrays_per_core
    per_tile = per_core * h.cores_per_tile
    per_chip = per_tile * h.tiles_per_chip
    chip, r = divmod(index, per_chip)
    tile, r = divmod(r, per_tile)
    core, idx = divmod(r, per_core)
    return ArraySlot(chip, tile, core, idx)
