"""Technology scaling of the spec's digital figures to ``technology.node_nm``.

A spec gives its periphery, buffer and router figures at ``technology.figures_node_nm`` (absent:
at ``node_nm``). At another node they follow classical constant-field scaling (Dennard et al.,
IEEE JSSC 1974): a length scales by s = node_nm / figures_node_nm, so a gate's capacitance and
its switching energy C·V² (at the spec's ``vdd_v``, which is given separately) scale by s and
its area by s². This is the first-order law; Stillmaker & Baas (Integration 2017) show that
below ~45 nm real processes scale energy less than it predicts (up to several-fold at 7 nm), so
a re-targeted estimate is optimistic there: give figures at the node instead where you can.

What scales: ``periphery`` shift-add, accumulate and digital-op energies and the periphery area,
``buffers`` energy per byte and area, ``noc.router_area_mm2``. What does not: the crossbar
cells and the converters (their own figures and laws over bits), leakage (not a C·V² law),
wires (``noc.hop_energy_per_byte_j``: the wire length of a hop does not shrink with the gates
when the tiles keep their size) and every time (the clock and bandwidths are given directly).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imccompile.spec import Target


def node_scale(target: Target) -> float:
    """s = node_nm / figures_node_nm (1 when the figures are given at the node)."""
    tech = target.technology
    ref = tech.figures_node_nm
    return 1.0 if ref is None else tech.node_nm / ref


def at_node(target: Target) -> Target:
    """The target with its digital figures scaled to ``node_nm`` (energy x s, area x s²) and
    ``figures_node_nm`` cleared; the target itself when s = 1 (so applying it twice is safe)."""
    s = node_scale(target)
    if s == 1.0:
        return target
    p, b, n = target.periphery, target.buffers, target.noc
    periphery = p.model_copy(update={
        "shift_add_energy_j": p.shift_add_energy_j * s,
        "accumulate_energy_j": p.accumulate_energy_j * s,
        "digital_energy_per_op_j": p.digital_energy_per_op_j * s,
        "area_mm2_per_array": p.area_mm2_per_array * s * s,
    })
    buffers = b.model_copy(update={"energy_per_byte_j": b.energy_per_byte_j * s,
                                   "area_mm2": b.area_mm2 * s * s})
    noc = n.model_copy(update={"router_area_mm2": n.router_area_mm2 * s * s})
    tech = target.technology.model_copy(update={"figures_node_nm": None})
    return target.model_copy(update={"periphery": periphery, "buffers": buffers, "noc": noc,
                                      "technology": tech})
