"""Rebuild all example models and their calibration/eval sets in this directory (or argv[1]).

    python examples/build_all.py            # writes examples/*.onnx and examples/*.npz

Each builder is seeded and deterministic (torch 2.13.0 CPU); about 25 s in total on 2 cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build_digits_cnn  # noqa: E402
import build_digits_transformer  # noqa: E402
import build_karate_gcn  # noqa: E402


def main(outdir: Path) -> dict[str, float]:
    return {
        "digits_cnn": build_digits_cnn.main(outdir),
        "digits_transformer": build_digits_transformer.main(outdir),
        "karate_gcn": build_karate_gcn.main(outdir),
    }


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
