"""Data movement: activation traffic at its real precision, its time, and the off-chip spill.

* **Precision.** An activation tensor is stored at the bits of the DACs that read it: the
  largest ``input_bits`` of the matrix layers that consume it, looking forward through digital
  ops (conv → ReLU → conv: the ReLU's tensors are at the second conv's bits); a tensor no matrix
  layer reads downstream (the network's outputs) keeps the bits of the matrix layer that made
  it, looking back; a graph with no matrix layer uses ``precision.input_bits``. A digital op
  reads and writes every element of its tensors (constants too) at ``periphery.digital_bits``
  when the spec declares it, else at the largest activation bits of its tensors — never at the
  ONNX dtype's 4 bytes (`activation_bits`, `digital_bytes`).
* **NoC hops** (`layer_hops`). A matrix layer sends its output from its last placed tile to the
  first tile of each matrix layer that reads it (downstream through digital ops; layers are
  placed in graph order, so this is the link of the placement chain), at least one hop (the
  output leaves its core; a layer no matrix layer reads sends one hop). Tiles sit on the chip by
  ``noc.topology``: ``mesh``: a ceil(sqrt(tiles)) wide grid, row-major, Manhattan distance;
  ``bus``: one shared bus, one transfer = one hop; ``tree``: tiles are the leaves of a binary
  tree, up to the common ancestor and down, 2 × bit_length(a XOR b) hops. Chips are taken to
  link at the same tile position (the tile distance is used across chips too). Energy: output
  bytes × hops × ``noc.hop_energy_per_byte_j`` (to its farthest reader).
* **Time.** A layer's data movement takes: its buffer bytes / (``buffers.bytes_per_cycle`` ×
  ``technology.clock_hz`` × the cores it spans: each core's buffer serves its own arrays), plus
  for a matrix layer its hops × ``noc.hop_latency_s`` and its output bytes / ``noc.bytes_per_s``
  (wormhole: the bytes stream behind the head), plus its DRAM bytes
  / ``dram.bytes_per_s`` and one ``dram.latency_s``. It is added to the compute time, not
  overlapped with it (NeuroSim likewise sums buffer and interconnect latency into a layer's
  latency): an upper bound for a design that double-buffers.
* **Memory hierarchy.** The chip's activation memory is its buffers: ``buffers.size_bytes`` per
  core, pooled over the cores of the chips the model occupies (an assumption: any core may hold
  any layer's activations, over the NoC). A layer whose working set (its input and output
  tensors, once each, at their precision) exceeds it keeps the excess off-chip: each excess
  byte crosses the DRAM interface once for this layer (the producer writes it, the consumer
  reads it back: each layer counts its side). Under ``--overflow reload`` a pooled layer also
  reads every weight code from DRAM every inference (weights × weight_bits / 8 per copy).
  DRAM bytes cost ``dram.energy_per_byte_j`` each; with no ``dram`` section they are reported
  but not priced, and the cost carries a warning saying so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imccompile.ir import DigitalOp, Graph, MatrixOp

if TYPE_CHECKING:
    from imccompile.layout import LayerLayout
    from imccompile.mapper import Mapping
    from imccompile.spec import Target


@dataclass(frozen=True)
class Traffic:
    """Bytes one layer moves per inference and the time they take.

    Attributes:
        buffer_bytes: bytes read from and written to the on-chip buffers.
        noc_bytes: bytes sent over the NoC (a matrix layer's output), ``noc_hops`` hops.
        dram_bytes: bytes moved off-chip (spilled activations, reloaded weights).
        buffer_s, noc_s, dram_s: their times.
    """

    buffer_bytes: float = 0.0
    noc_bytes: float = 0.0
    dram_bytes: float = 0.0
    buffer_s: float = 0.0
    noc_s: float = 0.0
    dram_s: float = 0.0
    noc_hops: int = 0

    @property
    def time_s(self) -> float:
        return self.buffer_s + self.noc_s + self.dram_s


def activation_bits(graph: Graph, mapping: Mapping, target: Target) -> dict[str, int]:
    """Bits each tensor of the graph is stored at (see the module docstring)."""
    default = target.precision.input_bits
    ins = {op.name: mapping.layer(op.name).input_bits for op in graph.matrix_ops}
    need: dict[str, int] = {}
    for op in reversed(graph.ops):
        if isinstance(op, MatrixOp):
            for t in op.inputs:
                need[t] = max(need.get(t, 0), ins[op.name])
        else:
            down = [need[o] for o in op.outputs if o in need]
            if down:
                for t in op.inputs:
                    if t:
                        need[t] = max(need.get(t, 0), max(down))
    made: dict[str, int] = {}
    for op in graph.ops:
        if isinstance(op, MatrixOp):
            for t in op.outputs:
                made[t] = ins[op.name]
        else:
            up = [made[t] for t in op.inputs if t in made]
            for t in op.outputs:
                made[t] = max(up) if up else default
    return {t: need.get(t, made.get(t, default)) for t in graph.tensors}


def digital_bytes(op: DigitalOp, graph: Graph, bits: dict[str, int], target: Target) -> float:
    """Bytes a digital op reads and writes: every element of its tensors at one width."""
    width = target.periphery.digital_bits
    if width is None:
        width = max((bits[t] for t in op.inputs + op.outputs if t in bits),
                    default=target.precision.input_bits)
    elements = 0
    for t in op.inputs + op.outputs:
        if not t:
            continue
        if t in op.constants:
            elements += int(op.constants[t].size)
        elif t in graph.tensors:
            elements += graph.tensors[t].size
    return elements * width / 8.0


def tensor_bytes(graph: Graph, name: str, bits: dict[str, int]) -> float:
    info = graph.tensors.get(name)
    return 0.0 if info is None else info.size * bits.get(name, 0) / 8.0


def capacity_bytes(mapping: Mapping, target: Target) -> int:
    """On-chip activation memory: the buffers of every core of the chips the model occupies."""
    h = target.hierarchy
    return target.buffers.size_bytes * h.cores_per_tile * h.tiles_per_chip * mapping.chips


def spill_bytes(working_bytes: float, capacity: float) -> float:
    """Bytes of a layer's working set that do not fit on chip."""
    return max(0.0, working_bytes - capacity)


def reload_bytes(lm: LayerLayout) -> float:
    """Weight codes a pooled layer reads from DRAM per inference (every copy is written)."""
    return lm.weights * lm.weight_bits / 8.0 * lm.replicas


def cores_spanned(arrays: int, target: Target) -> int:
    return max(1, math.ceil(arrays / target.hierarchy.arrays_per_core))


def buffer_time_s(nbytes: float, cores: int, target: Target) -> float:
    per_cycle = target.buffers.bytes_per_cycle
    if per_cycle is None or nbytes == 0:
        return 0.0
    return nbytes / (per_cycle * target.technology.clock_hz * cores)


def dram_time_s(nbytes: float, target: Target) -> float:
    d = target.dram
    if nbytes == 0 or d.bytes_per_s is None or d.latency_s is None:
        return 0.0
    return d.latency_s + nbytes / d.bytes_per_s


def traffic(buffer_bytes: float, noc_bytes: float, dram_bytes: float, cores: int,
            target: Target, *, hops: int) -> Traffic:
    """The times of a layer's bytes; ``hops``: NoC hops of its output (0: none sent)."""
    noc_s = hops * target.noc.hop_latency_s + noc_bytes / target.noc.bytes_per_s if hops else 0.0
    return Traffic(buffer_bytes, noc_bytes if hops else 0.0, dram_bytes,
                   buffer_time_s(buffer_bytes, cores, target), noc_s,
                   dram_time_s(dram_bytes, target), hops)


def tile_hops(a: int, b: int, target: Target) -> int:
    """NoC hops between tiles ``a`` and ``b`` of a chip under ``noc.topology``."""
    if a == b:
        return 0
    topology = target.noc.topology
    if topology == "bus":
        return 1
    if topology == "tree":
        return 2 * (a ^ b).bit_length()
    width = math.ceil(math.sqrt(target.hierarchy.tiles_per_chip))
    (ra, ca), (rb, cb) = divmod(a, width), divmod(b, width)
    return abs(ra - rb) + abs(ca - cb)


def layer_hops(graph: Graph, mapping: Mapping, target: Target) -> dict[str, int]:
    """NoC hops of every matrix layer's output (see the module docstring)."""
    from imccompile.mapper import slot

    readers: dict[str, set[str]] = {}
    for op in reversed(graph.ops):
        if isinstance(op, MatrixOp):
            for t in op.inputs:
                readers.setdefault(t, set()).add(op.name)
        else:
            down = set().union(*(readers.get(o, set()) for o in op.outputs))
            for t in op.inputs:
                if t:
                    readers.setdefault(t, set()).update(down)

    def tile(lm: LayerLayout, last: bool) -> int | None:
        owner = mapping.owner(lm)
        if not owner.arrays:
            return None
        local, replica = (owner.arrays - 1, lm.replicas - 1) if last else (0, 0)
        return slot(mapping.location(lm, local, replica)[0], target).tile

    out: dict[str, int] = {}
    for op in graph.matrix_ops:
        src = tile(mapping.layer(op.name), last=True)
        far = 0
        for name in readers.get(op.outputs[0], ()):
            dst = tile(mapping.layer(name), last=False)
            if src is not None and dst is not None:
                far = max(far, tile_hops(src, dst, target))
        out[op.name] = max(1, far)
    return out


def unpriced_warning(dram_bytes: float, target: Target) -> tuple[str, ...]:
    if dram_bytes > 0 and not target.dram.modelled:
        return (f"{dram_bytes:.0f} bytes per inference go off-chip (activations beyond the "
                "buffers, or reloaded weights) but the target has no dram section: they are not "
                "priced (add dram.energy_per_byte_j, dram.bytes_per_s and dram.latency_s)",)
    return ()
