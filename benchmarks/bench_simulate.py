"""Simulation-model evaluation time on the calibration set vs float onnxruntime inference of the
same samples, measured side by side in one process (same session options, same loop).

    python benchmarks/bench_simulate.py [--target pcm] [--repeat 3]

Rows: float model (the source .onnx), simulation model with ADC per array, bit-accurate model.
The ratio column is simulation time / float time (goal <= 3 for ADC per array).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import onnxruntime as ort

import imccompile
from imccompile.emit import emit
from imccompile.simulate import SimOptions, load_data, simulation_model_of

ROOT = Path(__file__).resolve().parents[1]


def session(model) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.intra_op_num_threads = 1
    data = model if isinstance(model, (bytes, str)) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def time_run(sess: ort.InferenceSession, feeds: list[dict], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for f in feeds:
            sess.run(None, f)
        best = min(best, time.perf_counter() - t)
    return best


def time_batched(model, feeds: list[dict], repeat: int) -> float | None:
    """The whole set in one call (batch dim freed), as imccompile's evaluation runs it."""
    from imccompile.simulate import _batched_copy, _stack

    copy = _batched_copy(model)
    if copy is None:
        return None
    sess = session(copy)
    batch = _stack(feeds)
    try:
        sess.run(None, batch)
    except Exception:
        return None
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        sess.run(None, batch)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="pcm")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"{'model':20} {'mode':9} {'samples':>7} {'float s':>8} {'sim s':>8} {'ratio':>6} "
          f"{'bit-acc s':>9} {'ratio':>6}")
    for name in ("digits_cnn", "digits_transformer", "karate_gcn"):
        onnx_path = ROOT / "examples" / f"{name}.onnx"
        npz = ROOT / "examples" / f"{name}.npz"
        res = imccompile.compile(onnx_path, args.target, data=npz)
        bit = imccompile.compile(onnx_path, args.target, data=npz,
                                 sim_options=SimOptions(bit_accurate=True))
        feeds = load_data(npz, res.graph).feeds
        float_model = emit(res.graph)[0]
        sim, bitm = simulation_model_of(res, 0), simulation_model_of(bit, 0)
        t_float = time_run(session(str(onnx_path)), feeds, args.repeat)
        t_sim = time_run(session(sim), feeds, args.repeat)
        t_bit = time_run(session(bitm), feeds, args.repeat)
        print(f"{name:20} {'per-sample':9} {len(feeds):>7} {t_float:>8.4f} {t_sim:>8.4f} "
              f"{t_sim / t_float:>6.2f} {t_bit:>9.4f} {t_bit / t_float:>6.2f}")
        b_float = time_batched(float_model, feeds, args.repeat)
        b_sim = time_batched(sim, feeds, args.repeat)
        b_bit = time_batched(bitm, feeds, args.repeat)
        if None not in (b_float, b_sim, b_bit) and len(feeds) > 1:
            print(f"{name:20} {'batched':9} {len(feeds):>7} {b_float:>8.4f} {b_sim:>8.4f} "
                  f"{b_sim / b_float:>6.2f} {b_bit:>9.4f} {b_bit / b_float:>6.2f}")


if __name__ == "__main__":
    main()
