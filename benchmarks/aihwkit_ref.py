"""aihwkit's PCM reference protocol (shared/reference/peer-vgg8.md) run through imccompile.

One Linear 256 -> 128 (weights and bias ~ U(-1/16, 1/16), nn.Linear's init), x ~ N(0, 1) of
shape (64, 256), all from numpy seeds (torch is not needed); the metric is
||y - y_digital|| / ||y_digital|| over the whole batch, mean +- std over 10 noise seeds.
aihwkit's ``t_inference`` counts from t0 = 20 s: our ``t_inference_s`` is it plus 20 s.

    python benchmarks/aihwkit_ref.py            # the table of docs/validation.md (## aihwkit)
"""

from __future__ import annotations

import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from imccompile.frontend import import_model
from imccompile.simulate import Dataset, SimOptions, evaluate
from imccompile.spec import load_target

T0_S = 20.0
#: aihwkit 1.2.0, IOParameters(is_perfect=True) (device noise only), mean and std over 10 seeds
AIHWKIT = {1.0: (0.0834, 0.0006), 3600.0: (0.0981, 0.0009), 86400.0: (0.1146, 0.0011),
           3.15e7: (0.1530, 0.0015)}
LABELS = {1.0: "1 s", 3600.0: "1 h", 86400.0: "1 day", 3.15e7: "1 year"}


def linear_model(seed: int = 0, realization: str = "numpy"):
    """The ONNX model (Gemm x @ W.T + b) and its input x (64, 256): drawn with numpy's
    generator, or (``realization="torch"``, needs torch) the very tensors of aihwkit's protocol
    (``torch.manual_seed(0)``, ``x = torch.randn(64, 256)``, ``nn.Linear(256, 128)``)."""
    if realization == "torch":
        import torch

        torch.manual_seed(seed)
        x = torch.randn(64, 256).numpy()
        lin = torch.nn.Linear(256, 128)
        w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    else:
        rng = np.random.default_rng(seed)
        bound = 1 / 16  # nn.Linear(256, 128): kaiming-uniform bound 1/sqrt(256) for W and b
        w = rng.uniform(-bound, bound, (128, 256)).astype(np.float32)
        b = rng.uniform(-bound, bound, 128).astype(np.float32)
        x = rng.standard_normal((64, 256)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 128])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m, x


def relative_error(t_aihwkit_s: float, converters: bool, seeds: int = 10,
                   overrides: list[str] | None = None, base_seed: int = 100,
                   realization: str = "numpy") -> tuple[float, float]:
    """(mean, std) of the relative output error of the aihwkit-pcm preset at aihwkit's
    ``t_inference`` = ``t_aihwkit_s``; ``converters`` False = device noise only."""
    model, x = linear_model(realization=realization)
    graph = import_model(model)
    target = load_target("aihwkit-pcm", [f"noise.t_inference_s={t_aihwkit_s + T0_S}"]
                         + list(overrides or []))
    opts = SimOptions(dac=converters, adc=converters)
    data = Dataset([{"x": x}], None, "<aihwkit protocol>")
    res, _ = evaluate(graph, target, data, seeds=seeds, opts=opts, base_seed=base_seed,
                      metric="relerr")
    per = res["per_seed"]
    return float(np.mean(per)), float(np.std(per, ddof=1))


def main() -> int:
    rows = []
    for t, (ref, sd) in AIHWKIT.items():
        dev = relative_error(t, converters=False)
        dev_torch = relative_error(t, converters=False, realization="torch")
        io = relative_error(t, converters=True)
        io_dev = relative_error(t, converters=True, overrides=["adc.out_bound_unit=device"])
        rows.append(f"| {LABELS[t]} | {ref:.4f} ± {sd:.4f} | {dev[0]:.4f} ± {dev[1]:.4f} "
                    f"({dev[0] / ref:.3f}×) | {dev_torch[0]:.4f} ({dev_torch[0] / ref:.3f}×) | "
                    f"{io[0]:.4f} ± {io[1]:.4f} | {io_dev[0]:.4f} ± {io_dev[1]:.4f} |")
    print("| t_inference (aihwkit) | aihwkit, device noise only | aihwkit-pcm, converters off "
          "| same, aihwkit's torch tensors | aihwkit-pcm, default I/O (predicted) "
          "| default I/O, `adc.out_bound_unit=device` |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
