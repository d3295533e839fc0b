"""Compile time (import + map + cost, no accuracy) and peak memory vs onnxruntime's
InferenceSession creation for the same file, measured side by side in fresh processes.

    python benchmarks/bench_compile.py [--target pcm] [--repeat 3] [--models examples,vgg,resnet50,bert]

Prints one row per model: weights, compile s, session s, ratio (goal <= 1.5), peak RSS of each.
Synthetic models are generated (seeded) into benchmarks/_models/ (gitignored).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

CHILD = r"""
import json, sys, time
kind, path, target = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "compile":
    import imccompile
    from imccompile.compiler import compile as c
    t = time.perf_counter(); r = c(path, target); dt = time.perf_counter() - t
    t = time.perf_counter(); c(path, target); warm = time.perf_counter() - t
    extra = {"arrays": r.mapping.arrays, "weights": r.graph.total_weights}
else:
    import onnxruntime as ort
    so = ort.SessionOptions(); so.log_severity_level = 3
    t = time.perf_counter(); ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]); dt = time.perf_counter() - t
    t = time.perf_counter(); ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]); warm = time.perf_counter() - t
    extra = {}
# VmHWM is this process's own peak (ru_maxrss survives exec and would include the parent's).
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024.0
print(json.dumps({"s": dt, "warm_s": warm, "rss_mb": rss, **extra}))
"""


def run_child(kind: str, path: Path, target: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(path), target], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def model_paths(names: list[str]) -> list[tuple[str, Path]]:
    import models

    out = []
    for n in names:
        if n == "examples":
            out += [(p.stem, p) for p in sorted((ROOT / "examples").glob("*.onnx"))]
            continue
        path = HERE / "_models" / f"{n}.onnx"
        if not path.exists():
            model, _ = getattr(models, n)()
            models.save(model, path)
        out.append((n, path))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="pcm")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", default="examples,vgg,resnet50,bert")
    args = ap.parse_args()
    print("first call in a fresh process (cold) and a second call (warm); peak RSS of the process")
    print(f"{'model':22} {'weights':>11} {'arrays':>7} {'compile s':>10} {'session s':>10} "
          f"{'ratio':>6} {'warm ratio':>10} {'compile MB':>10} {'session MB':>10}")
    for name, path in model_paths(args.models.split(",")):
        comp = min((run_child("compile", path, args.target) for _ in range(args.repeat)), key=lambda r: r["s"])
        sess = min((run_child("session", path, args.target) for _ in range(args.repeat)), key=lambda r: r["s"])
        print(f"{name:22} {comp['weights']:>11,} {comp['arrays']:>7} {comp['s']:>10.3f} {sess['s']:>10.3f} "
              f"{comp['s'] / sess['s']:>6.2f} {comp['warm_s'] / sess['warm_s']:>10.2f} "
              f"{comp['rss_mb']:>10.0f} {sess['rss_mb']:>10.0f}")


if __name__ == "__main__":
    main()
