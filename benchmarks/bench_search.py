"""Co-optimization search (digits_cnn and its full data set by default, or --model): how much
energy the search saves against a uniform 8-bit design at <= 1 point accuracy loss, front quality per sampler, speed.

    python benchmarks/bench_search.py [--trials 100] [--samplers nsga2,tpe,random] [--samples N]
                                      [--seed 0] [--json out.json] [--model NAME] [--threads N]

``--model``: an example (digits_cnn, the default) or a synthetic model of ``models.py`` (e.g.
resnet18_cifar, with seeded random inputs, `bench_simulate.model_and_data`; no labels, so the
accuracy objective is the agreement with the float model).

Per sampler (same seed, in-memory study, objectives accuracy,energy, --max-accuracy-drop 1):
  * best energy on the feasible front, its accuracy, and its ratio to the uniform 8-bit design
    (``--passes 'quantize{weight_bits=8,act_bits=8}'``, target defaults otherwise);
  * hypervolume of the feasible front in (-accuracy, energy / E8) with the reference point
    (accuracy 0, energy 2 x E8), E8 = the uniform 8-bit energy (so the ideal is 2.0);
  * trials per minute (wall clock of the whole search call, one process).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
UNIFORM8 = "quantize{weight_bits=8,act_bits=8}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--samplers", default="nsga2,tpe,random")
    ap.add_argument("--samples", type=int, default=None, help="first N samples (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", default="pcm")
    ap.add_argument("--json", help="also write the figures as JSON here")
    ap.add_argument("--model", default="digits_cnn")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import os
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_simulate import model_and_data

    tmp = tempfile.mkdtemp()
    model_path, data_path = model_and_data(args.model, Path(tmp), args.samples or 256)
    MODEL, DATA = str(model_path), str(data_path)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    import imccompile
    from imccompile.search import SearchConfig, hypervolume, search

    u8 = imccompile.compile(MODEL, args.target, passes=UNIFORM8, data=DATA,
                            samples=args.samples, threads=args.threads)
    e8, a8, fl = u8.cost.energy_j, u8.accuracy["mean"], u8.accuracy["float"]
    print(f"{args.model} on {args.target}, {u8.accuracy['samples']} samples: float accuracy {fl:.4f}")
    print(f"uniform 8-bit ({UNIFORM8}): energy {e8:.4g} J, accuracy {a8:.4f}")
    ref = np.array([0.0, 2.0])  # (-accuracy, energy / E8)
    out = {"uniform8": {"energy_j": e8, "accuracy": a8}, "float_accuracy": fl, "samplers": {}}
    print(f"\n{'sampler':8} {'best E (J)':>11} {'acc':>7} {'E/E8':>7} {'HV':>7} {'front':>5} "
          f"{'feasible':>8} {'trials/min':>10}")
    for sampler in args.samplers.split(","):
        cfg = SearchConfig(model=MODEL, target=args.target, data=DATA,
                           samples=args.samples, objectives=("accuracy", "energy"),
                           max_accuracy_drop=1.0, sampler=sampler, seed=args.seed,
                           threads=args.threads)
        t0 = time.perf_counter()
        res = search(cfg, args.trials, study_name=f"bench-{sampler}")
        dt = time.perf_counter() - t0
        front = res.pareto
        feasible = sum(t["feasible"] for t in res.trials)
        row: dict = {"trials": len(res.trials), "feasible_trials": feasible,
                     "front_size": len(front), "seconds": dt,
                     "trials_per_min": 60.0 * len(res.trials) / dt}
        if front:
            best = min(front, key=lambda p: p["values"]["energy"])
            pts = np.array([[-p["values"]["accuracy"], p["values"]["energy"] / e8] for p in front])
            row.update(best_trial=best["trial"], best_energy_j=best["values"]["energy"],
                       best_accuracy=best["values"]["accuracy"],
                       energy_ratio=best["values"]["energy"] / e8,
                       hypervolume=hypervolume(pts, ref), best_pipeline=best["pipeline"],
                       best_overrides=best["overrides"])
            print(f"{sampler:8} {row['best_energy_j']:11.4g} {row['best_accuracy']:7.4f} "
                  f"{row['energy_ratio']:7.3f} {row['hypervolume']:7.4f} {len(front):5d} "
                  f"{feasible:8d} {row['trials_per_min']:10.1f}")
        else:
            print(f"{sampler:8} {'(no feasible point)':>35} {feasible:8d} "
                  f"{row['trials_per_min']:10.1f}")
        out["samplers"][sampler] = row
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
