"""Accuracy-simulation time vs float onnxruntime inference of the same samples, per model, each
model in a fresh process (so its peak memory is its own).

    python benchmarks/bench_simulate.py [--target pcm] [--samples 64] [--threads 2]
                                        [--models resnet18_cifar,mobilenetv2,minilm,karate_gcn]

Per model (synthetic ones written with onnx.helper, `models.py`; seeded random inputs):
  * float s: onnxruntime on the source model (weights constant, batch dim freed as imccompile
    runs it), the same samples, the same thread count; best of 2 at 64 samples per call and
    at the simulation's `batch_size`;
  * compile s: imccompile.compile without data (import, map, cost, schedule), the second
    call in the process (the first pays the lazy imports; bench_compile.py times first calls);
  * sim s: ``compile(..., data, seeds=2)`` minus the compile without data, up to the end of the
    first seed (calibration + one noise seed, pcm defaults: device noise, DAC, ADC per row
    tile); seed+ s: the second seed alone (same process: the session is reused);
  * ratio = sim / float (goal <= 3), seed+ ratio = seed+ / float (goal <= 1.5);
  * sessions: onnxruntime sessions created in the whole compile with data;
  * peak MB: the process's peak resident memory (VmHWM);
  * CPU s: the same spans in CPU time of the process (all its threads): steadier than wall
    time on a loaded machine.
The load average of the machine is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = ("resnet18_cifar", "mobilenetv2", "minilm", "karate_gcn")


def model_and_data(name: str, folder: Path, samples: int) -> tuple[Path, Path]:
    """The model file and an .npz of ``samples`` seeded random samples (the examples' own data)."""
    import numpy as np

    if (ROOT / "examples" / f"{name}.onnx").exists():
        return ROOT / "examples" / f"{name}.onnx", ROOT / "examples" / f"{name}.npz"
    sys.path.insert(0, str(HERE))
    import models

    model, _ = getattr(models, name)()
    path = models.save(model, folder / f"{name}.onnx")
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((samples, *shape[1:]), dtype=np.float32)
    if name != "minilm":
        x = np.abs(x)  # images: non-negative
    npz = folder / f"{name}.npz"
    np.savez(npz, **{model.graph.input[0].name: x})
    return path, npz


def child(name: str, target: str, samples: int, threads: int) -> dict:
    import numpy as np

    import imccompile
    from imccompile import sessions
    from imccompile.emit import emit
    from imccompile.simulate import BATCH, _batched_copy, _stack, batch_size, load_data

    with tempfile.TemporaryDirectory() as tmp:
        path, npz = model_and_data(name, Path(tmp), samples)
        imccompile.compile(str(path), target)  # warm: lazy imports out of the compile time
        t, c = time.perf_counter(), time.process_time()
        res = imccompile.compile(str(path), target)
        t_compile = time.perf_counter() - t
        c_compile = time.process_time() - c
        feeds = load_data(str(npz), res.graph, limit=samples).feeds
        # float onnxruntime: the source model's function with constant weights, batched
        float_model = emit(res.graph)[0]
        batched = _batched_copy(float_model)
        sess = sessions.make((batched or float_model).SerializeToString(), threads)
        # the float baseline at its fastest: as many samples per call as the simulation
        # uses (`batch_size`) and at 64, best of 2 each
        t_float = c_float = float("inf")
        for step in sorted({batch_size(res.graph), BATCH}) if batched is not None else [1]:
            for _ in range(2):
                t, c = time.perf_counter(), time.process_time()
                for s in range(0, len(feeds), step):
                    sess.run(None, _stack(feeds[s:s + step]))
                t_float = min(t_float, time.perf_counter() - t)
                c_float = min(c_float, time.process_time() - c)
        del sess
        marks: list[tuple[float, float]] = []
        before = dict(sessions.stats)
        t0, c0 = time.perf_counter(), time.process_time()
        full = imccompile.compile(str(path), target, data=str(npz), samples=samples, seeds=2,
                                  threads=threads,
                                  progress=lambda i, n: marks.append(
                                      (time.perf_counter(), time.process_time())))
        created = sessions.stats["created"] - before["created"]
        t_sim = marks[0][0] - t0 - t_compile
        t_seed = marks[1][0] - marks[0][0]
        c_sim = marks[0][1] - c0 - c_compile
        c_seed = marks[1][1] - marks[0][1]
        acc = full.accuracy
        assert acc is not None
    rss = next(int(line.split()[1]) for line in open("/proc/self/status")
               if line.startswith("VmHWM")) / 1024.0
    return {"model": name, "weights": int(res.graph.total_weights), "samples": len(feeds),
            "float_s": t_float, "compile_s": t_compile, "sim_s": t_sim, "seed_s": t_seed,
            "float_cpu_s": c_float, "sim_cpu_s": c_sim, "seed_cpu_s": c_seed,
            "sessions": created, "peak_mb": rss, "metric": acc["metric"],
            "accuracy": acc["mean"], "batched": batched is not None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="pcm")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--json", help="also write the rows as JSON here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.target, args.samples, args.threads)))
        return 0
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} on {os.cpu_count()} "
          f"cores; target {args.target}, {args.samples} samples, {args.threads} threads")
    print(f"{'model':16} {'weights':>9} {'float s':>8} {'compile s':>9} {'sim s':>7} {'ratio':>6} "
          f"{'seed+ s':>7} {'ratio':>6} {'sess':>4} {'peak MB':>8} | CPU s: {'float':>6} "
          f"{'sim':>6} {'ratio':>6} {'seed+':>6} {'ratio':>6}")
    rows = []
    for name in args.models.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", name, "--target", args.target,
                              "--samples", str(args.samples), "--threads", str(args.threads)],
                             capture_output=True, text=True)
        if out.returncode:
            print(f"{name:16} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"{name:16} {r['weights'] / 1e6:8.2f}M {r['float_s']:8.2f} {r['compile_s']:9.2f} "
              f"{r['sim_s']:7.2f} {r['sim_s'] / r['float_s']:6.2f} {r['seed_s']:7.2f} "
              f"{r['seed_s'] / r['float_s']:6.2f} {r['sessions']:4d} {r['peak_mb']:8.0f} |        "
              f"{r['float_cpu_s']:6.2f} {r['sim_cpu_s']:6.2f} "
              f"{r['sim_cpu_s'] / r['float_cpu_s']:6.2f} {r['seed_cpu_s']:6.2f} "
              f"{r['seed_cpu_s'] / r['float_cpu_s']:6.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
