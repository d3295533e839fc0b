"""Validation against the peer simulators: runs the peer presets on VGG-8 and writes
docs/validation.md (tool vs peer per layer and in total, the convention compared under, each known
difference explained, and what the tool predicts when one knob turns).

    python benchmarks/validate.py            # rewrite docs/validation.md
    python benchmarks/validate.py --check    # exit 1 if docs/validation.md is not current

The peer figures are those of reference/peer-vgg8.md (NeuroSim V1.4's default run; MNSIM 2.0's
results are held back, so only the tool's predictions are printed). Nothing is fitted here: the
neurosim-sram22 constants come from benchmarks/neurosim_calibration.py (that one run), the
mnsim-rram130 constants are MNSIM's stock ones.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import aihwkit_ref  # noqa: E402
from neurosim_calibration import DENSITY, RUN_ENERGY_PJ, RUN_LATENCY_NS  # noqa: E402
from vgg8 import vgg8  # noqa: E402

DOC = HERE.parent / "docs" / "validation.md"
ZETA = 1.22  # NeuroSim's post-layout factor: enters its TOPS/W, not its printed energies
NEUROSIM_OPS = 1.2318e9  # NeuroSim's op count: 2 x MACs over the full 32x32 maps
NEUROSIM = {"area_mm2": 80.06, "energy_j": 37.76e-6 + 0.298e-6, "period_s": 132.97e-6,
            "pipelined_tops": 9.264, "tops_per_w": 26.53}
# NeuroSim's known responses to one knob (issue 14; held-back runs, not fitted): energy ratio
NEUROSIM_KNOWN = {"adc4_rows64": 1.10, "half_density": 0.89}
MNSIM_KNOWN = {"xbar128_adc4": 0.74}
# 128x128 crossbars with a 4-bit ADC, and its 128 ADCs per crossbar; the preset's crossbar area
# follows the geometry by MNSIM's law (Crossbar.py, Area_Calculation 0: rows x cols x 1.44 um2 +
# 1150 um2 x rows, array.area_per_row_mm2)
MNSIM_KNOB = ["array.rows=128", "array.cols=128", "adc.bits=4", "adc.columns_per_adc=2"]


@dataclass(frozen=True)
class Figures:
    """What one compile gives, under one convention."""

    area_mm2: float
    energy_j: float
    period_s: float
    latency_s: float
    ops: float
    layers: dict[str, tuple[float, float]]  # name -> (energy J, latency s), matrix layers
    breakdown: dict[str, float]
    arrays: int

    def pipelined_tops(self, ops: float | None = None) -> float:
        return (self.ops if ops is None else ops) / self.period_s / 1e12

    def tops_per_w(self, ops: float | None = None, zeta: float = 1.0) -> float:
        return (self.ops if ops is None else ops) / (self.energy_j * zeta) / 1e12


def figures(target: str, convention: str, overrides: list[str] | None = None,
            activity: dict[str, float] | None = None) -> Figures:
    import imccompile as ic

    res = ic.compile(vgg8(convention), target, overrides=overrides or [], activity=activity)
    layers = {lc.name: (lc.energy_j, lc.latency_s) for lc in res.cost.layers
              if lc.kind != "digital"}
    return Figures(res.cost.area_mm2, res.cost.energy_j, res.schedule.period_s,
                   res.schedule.latency_s, 2.0 * res.graph.total_macs, layers,
                   res.cost.energy_breakdown_j, res.mapping.arrays)


def neurosim_figures(overrides: list[str] | None = None,
                     density_scale: float = 1.0) -> Figures:
    """neurosim-sram22 on VGG-8 under NeuroSim's counting, with its trace densities."""
    act = {k: v * density_scale for k, v in DENSITY.items()}
    return figures("neurosim-sram22", "neurosim", overrides, act)


def compare_neurosim(f: Figures) -> dict[str, tuple[float, float]]:
    """(tool, peer) per headline figure, under NeuroSim's convention: its (H-k+1)² work
    counting, its full-map op count for TOPS, zeta in TOPS/W only."""
    return {
        "area_mm2": (f.area_mm2, NEUROSIM["area_mm2"]),
        "energy_j": (f.energy_j, NEUROSIM["energy_j"]),
        "period_s": (f.period_s, NEUROSIM["period_s"]),
        "pipelined_tops": (f.pipelined_tops(NEUROSIM_OPS), NEUROSIM["pipelined_tops"]),
        "tops_per_w": (f.tops_per_w(NEUROSIM_OPS, ZETA), NEUROSIM["tops_per_w"]),
    }


def layer_shares(f: Figures) -> dict[str, tuple[float, float]]:
    """(tool, peer) share of the matrix layers' dynamic energy, per layer."""
    tool_total = sum(e for e, _ in f.layers.values())
    peer_total = sum(RUN_ENERGY_PJ.values())
    return {n: (f.layers[n][0] / tool_total, RUN_ENERGY_PJ[n] / peer_total)
            for n in RUN_ENERGY_PJ}


def _r(a: float, b: float) -> str:
    return f"{a / b:.3f}"


def render() -> str:
    base = neurosim_figures()
    phys = figures("neurosim-sram22", "physics", activity=dict(DENSITY))
    knobs = {
        "adc.bits=4, array.parallel_rows=64": neurosim_figures(["adc.bits=4",
                                                                "array.parallel_rows=64"]),
        "adc.bits=4": neurosim_figures(["adc.bits=4"]),
        "array.parallel_rows=64": neurosim_figures(["array.parallel_rows=64"]),
        "input densities x 0.5": neurosim_figures(density_scale=0.5),
    }
    m = figures("mnsim-rram130", "physics")
    m_knob = figures("mnsim-rram130", "physics", MNSIM_KNOB)
    out: list[str] = []
    w = out.append
    w("# Validation against the peer simulators")
    w("")
    w("Generated by `python benchmarks/validate.py` (do not edit by hand; `--check` tells whether "
      "it is current). Network: VGG-8 for CIFAR-10 as NeuroSim's `NetWork_VGG8.csv` "
      "(`benchmarks/vgg8.py`). Peer figures: `reference/peer-vgg8.md`. Rule: each preset is "
      "calibrated on one run of its peer (NeuroSim) or takes the peer's stock constants (MNSIM); "
      "other configurations are predicted by turning only the knob that changes, never fitted.")
    w("")
    w("## NeuroSim V1.4 default (`--target neurosim-sram22`)")
    w("")
    w("**Convention compared under.** NeuroSim counts its reads and conversions over (H-k+1)² "
      "output positions of a 3x3 'same' conv (30², 14², 6²) but its ops over the full maps "
      "(1.2318e9). The tool models the physics (every padded position is computed), so the "
      "comparison compiles `vgg8('neurosim')`: unpadded convs on the CSV's input sizes, each "
      "followed by a zero Pad that restores the map size, so the tool counts exactly NeuroSim's "
      "positions. Pipelined TOPS = NeuroSim's 1.2318e9 ops / pipeline period; TOPS/W = those ops "
      "/ (energy per image x zeta 1.22), NeuroSim's post-layout factor, which enters its TOPS/W "
      "but not the energies it prints. The per-layer input activities are NeuroSim's trace "
      "densities, given per layer (`compile(..., activity={...})`).")
    w("")
    w("| figure | tool | NeuroSim | tool / NeuroSim | tool, physics counting |")
    w("|---|---|---|---|---|")
    cmp_ = compare_neurosim(base)
    phys_cmp = compare_neurosim(phys)
    units = {"area_mm2": ("chip area, mm²", 1.0), "energy_j": ("energy per image, µJ", 1e6),
             "period_s": ("pipeline cycle, µs", 1e6), "pipelined_tops": ("pipelined TOPS", 1.0),
             "tops_per_w": ("TOPS/W (x 1/zeta)", 1.0)}
    for k, (tool, peer) in cmp_.items():
        label, s = units[k]
        phys_v = phys_cmp[k][0] if k != "pipelined_tops" else phys.pipelined_tops(NEUROSIM_OPS)
        w(f"| {label} | {tool * s:.4g} | {peer * s:.4g} | {_r(tool, peer)} | {phys_v * s:.4g} |")
    w("")
    w(f"Arrays placed: {base.arrays} (NeuroSim: about 6457 subarrays, from its 98.1 % memory "
      "utilisation; the tool places no weight duplicates, NeuroSim's novel mapping duplicates "
      "some layers and spreads L1's 27 rows over 9 kernel-position subarrays).")
    w("")
    w("Per layer (NeuroSim's counting):")
    w("")
    w("| layer | density | tool energy, pJ | NeuroSim, pJ | tool share | NeuroSim share | "
      "share ratio | tool latency, ns | NeuroSim, ns |")
    w("|---|---|---|---|---|---|---|---|---|")
    shares = layer_shares(base)
    for n in RUN_ENERGY_PJ:
        e, t = base.layers[n]
        ts, ps = shares[n]
        w(f"| {n} | {DENSITY[n]:.2f} | {e * 1e12:.4g} | {RUN_ENERGY_PJ[n]:.4g} | {ts:.2%} | "
          f"{ps:.2%} | {ts / ps:.3f} | {t * 1e9:.4g} | {RUN_LATENCY_NS[n]:.4g} |")
    w("")
    bd = base.breakdown
    w("Breakdown (µJ): tool read-out (adc: sense amps, encoder, column mux) {:.2f}, row "
      "drive scaled by activity (dac + array) {:.2f}, accumulation (shift_add + accumulate) "
      "{:.2f}, leakage {:.3f}; NeuroSim: ADC 26.42 (sense amps and the array's bit/word-line "
      "energy), accumulation 3.82, other periphery (mux, decoder, word-line switches) 7.52, "
      "leakage 0.298. The activity-driven row energy sits in NeuroSim's ADC bucket "
      "(readDynamicEnergyArray); the tool keeps it apart because it is the part that moves "
      "with the data."
      .format(bd["adc"] * 1e6, (bd["dac"] + bd["array"]) * 1e6,
              (bd["shift_add"] + bd["accumulate"]) * 1e6, bd["leakage"] * 1e6))
    w("")
    w("**Predictions when one knob turns** (NeuroSim's known response from issue 14 where "
      "given; not fitted):")
    w("")
    w("| knob | tool energy | tool area | tool pipeline cycle | NeuroSim energy |")
    w("|---|---|---|---|---|")
    known = {"adc.bits=4, array.parallel_rows=64": NEUROSIM_KNOWN["adc4_rows64"],
             "input densities x 0.5": NEUROSIM_KNOWN["half_density"]}
    for k, f in knobs.items():
        peer = f"{known[k]:.2f}x" if k in known else "held back"
        w(f"| {k} | {_r(f.energy_j, base.energy_j)}x | {_r(f.area_mm2, base.area_mm2)}x | "
          f"{_r(f.period_s, base.period_s)}x | {peer} |")
    w("")
    w("Why they move so: with 64 rows per read every 128-row tile takes two reads per input "
      "bit, each sensed and added (NeuroSim's `numAdd`): twice the sense-amp conversions and "
      "their adds (shift_add here, one per conversion), while a 4-bit sense amp fires 15 "
      "instead of 31 comparators (sense_amp law, NeuroSim's MultilevelSenseAmp); the column "
      "mux and the rows' charge do not change, so the sense-amp part nearly cancels and the "
      "added accumulation tips the total up. Halving the input density halves only the activity-driven row "
      "energy (word lines and bit lines charge only for '1' inputs, `SubArray.cpp`), a quarter "
      "of the total in the calibration run.")
    w("")
    w("**Known differences.**")
    w("")
    w("- Counting convention: under the tool's own physics counting (every padded position, "
      f"last column above) energy and pipeline cycle are {_r(phys.energy_j, NEUROSIM['energy_j'])}x "
      f"and {_r(phys.period_s, NEUROSIM['period_s'])}x NeuroSim's; that is the (H-k+1)² "
      "convention, not a circuit difference.")
    w("- Calibration: dac energy (one active row, one read), the fixed energy per conversion, "
      "and the accumulation time per read were derived from this one run "
      "(`benchmarks/neurosim_calibration.py`): a least-squares fit of the per-layer energies "
      "of L2-L7 as fixed x conversions + row energy x density x row reads, then split by "
      "NeuroSim's buckets. L1 and L8 are outside the fit: NeuroSim's novel mapping puts L1's 27 "
      "rows on 9 kernel-position subarrays (the tool's im2col puts them on one), and NeuroSim "
      "senses all 128 columns of L8's 80-column subarrays (the tool converts the used columns "
      "only), so L8, 0.004 % of the energy, is under-priced.")
    w("- Latency per layer: NeuroSim duplicates weights (speed-up degree 8) and its deeper "
      "layers pay adder-tree and bus time the tool prices as one overhead per read; only the "
      "slowest stage (L1 = L2 here, without replication) sets the pipeline cycle.")
    w("- NeuroSim's 'other periphery' (column mux and decoder, once per subarray and input "
      "bit) is `adc.mux_energy_per_read_j`, priced in the tool's adc component; NeuroSim's "
      "buffers and interconnect, which it spreads into its per-layer figures, ride on it "
      "(assumption).")
    w("- Area: per-array shares of the run's totals (arrays, sense amps, everything else); "
      "with parallel_rows < rows NeuroSim adds adder and DFF area, the tool none.")
    w("")
    w("## MNSIM 2.0 stock (`--target mnsim-rram130`)")
    w("")
    w("MNSIM's results are held back; these are the tool's predictions from MNSIM's stock "
      "constants (physics counting: every padded position; 9-bit weights and activations).")
    w("")
    w("| figure | tool prediction |")
    w("|---|---|")
    w(f"| crossbars (256x256 cells, both polarities) | {m.arrays} |")
    w(f"| area, mm² | {m.area_mm2:.4g} |")
    w(f"| latency per image (no pipelining), ms | {m.latency_s * 1e3:.4g} |")
    w(f"| energy per image, mJ | {m.energy_j * 1e3:.4g} |")
    parts = ", ".join(f"{k} {v / m.energy_j:.1%}" for k, v in m.breakdown.items() if v > 0)
    w(f"| energy shares | {parts} |")
    w("")
    w("Per layer (tool prediction):")
    w("")
    w("| layer | energy, µJ | latency, µs |")
    w("|---|---|---|")
    for n, (e, t) in m.layers.items():
        w(f"| {n} | {e * 1e6:.4g} | {t * 1e6:.4g} |")
    w("")
    w("| knob | tool energy | tool area | tool latency | MNSIM energy |")
    w("|---|---|---|---|---|")
    w(f"| 128x128 crossbars, 4-bit ADC (ASPDAC3), 128 ADCs per crossbar | "
      f"{_r(m_knob.energy_j, m.energy_j)}x | {_r(m_knob.area_mm2, m.area_mm2)}x | "
      f"{_r(m_knob.latency_s, m.latency_s)}x | {MNSIM_KNOWN['xbar128_adc4']:.2f}x |")
    w("")
    w(f"Overrides for that knob: `{' '.join(MNSIM_KNOB)}` (MNSIM keeps 128 ADCs per "
      "crossbar: at 128 columns each ADC serves one differential column pair, 2 device columns "
      "here; the crossbar area follows MNSIM's area law at 128 x 128 by itself: the geometry "
      "override scales the cells and keeps `array.area_per_row_mm2` per row).")
    w("")
    w("**Known differences.**")
    w("")
    w("- MNSIM prices every module as power x busy time: all ADCs, buffers and registers of "
      "every tile of a layer draw power for the time one tile computes (`Model_energy.py`). "
      "For the ADC that equals conversions x 10.08 pJ (1.26 mW x 8 ns), which the tool prices "
      "per conversion; for the buffers it charges each access to every PE of the layer and "
      "includes leakage over the busy time, which the tool, pricing bytes moved, does not "
      "copy. MNSIM prices ReLU/MaxPool traffic at 4 bytes per element; the tool prices digital "
      "ops by their bytes.")
    w("- In the tool's prediction the ADC is almost all of the energy, so a 4-bit ADC "
      "(4.2 pJ per conversion) cuts the energy by more than half; MNSIM's own fall (26 %) "
      "says its non-ADC terms (the buffer power x time above) are about half of its total. "
      "The direction agrees; the size does not, and this is not fitted.")
    w("- MNSIM's crossbar read power uses V² = 0.9·0² + 0.1·(0.15 V)², an input activity of "
      "0.1: the preset states it as `dac.input_activity`. MNSIM keeps each DAC powered for "
      "both column passes and regardless of the input; the tool prices one DAC step per read "
      "at the activity (DACs are 0.01 % of the energy).")
    w("- Latency: MNSIM overlaps consecutive layers within one image (a layer starts on the "
      "rows of its input map that are ready, `Model_latency.py`); the tool's latency is the "
      "critical path of whole layers, one after another, so it should come out longer.")
    w("- ADC latency: the tool's sar law scales the 8 ns linearly in bits (5.33 ns at 4 bits); "
      "MNSIM uses (bits + 2) / sample rate (6 ns). The per-read overhead (DAC, crossbar, "
      "registers around each ADC pass) is that of the stock 2 column passes and does not "
      "shrink with 128 columns.")
    w("")
    out.extend(aihwkit_ref.section())
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 when docs/validation.md differs from what would be written")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC} is not current: run python benchmarks/validate.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
