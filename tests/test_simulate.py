"""Hardware simulation model (imccompile.emit / imccompile.simulate) checked against the original
ONNX models in onnxruntime and against independent numpy references.

1. ideal settings reproduce the source model (examples and torch-exported test models); ADC at
   16 bits with the row-tile split active stays within a tight tolerance of it;
2. quantization-only emission equals the source model with its weight initializers quantized
   per output channel in numpy here;
4. ADC bit sweep: 16 bits ~ ideal, 3 bits clearly worse, more bits never worse;
5. column / block / row pruning lowers the mapped array count, element pruning does not;
6. digits CNN on pcm, 8-bit weights and activations, spec ADC, no noise: top-1 within one point
   of float; plus a printed measurement under the spec's PCM noise at 1 hour and 1 year;
7. the same compile with the same seeds is bit-for-bit reproducible (also across processes).
(3, the device noise statistics, is in test_noise.py.)
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import imccompile
from imccompile.ir import MatrixOp
from imccompile.emit import emit
from imccompile.simulate import SimOptions, simulation_model_of

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXAMPLE_NAMES = ["digits_cnn", "digits_transformer", "karate_gcn"]
ADC_LIST = "search.adc_bits=[3,4,5,6,7,8,9,10,12,16]"
IDEAL = SimOptions(noise=False, adc=False, dac=False, weights=False)
YEAR = 3.15e7


# -- helpers -------------------------------------------------------------------------------------
def _session(model) -> ort.InferenceSession:
    data = model if isinstance(model, (bytes, str)) else model.SerializeToString()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def feeds_from(model, arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Per-sample feed dicts for `model`'s inputs from stacked arrays (as the data files hold)."""
    sess = _session(model)
    per: dict[str, list[np.ndarray]] = {}
    for inp in sess.get_inputs():
        a = np.asarray(arrays[inp.name], np.float32)
        want = list(inp.shape)
        if list(a.shape) == want:
            per[inp.name] = [a]
        else:
            assert want[0] == 1 and list(a.shape[1:]) == want[1:], (a.shape, want)
            per[inp.name] = [x[None] for x in a]
    n = len(next(iter(per.values())))
    return [{k: v[i] for k, v in per.items()} for i in range(n)]


def run(model, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    """First output of `model` (path, bytes or ModelProto) per feed, stacked, in float64."""
    sess = _session(model)
    out = sess.get_outputs()[0].name
    return np.stack([sess.run([out], f)[0] for f in feeds]).astype(np.float64)


def rel_err(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


def assert_close(y: np.ndarray, ref: np.ndarray, rtol: float) -> None:
    """Element-wise |y - ref| <= rtol * (|ref| + max |ref|): relative to the output's scale."""
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=rtol, atol=rtol * float(np.abs(ref).max()))


def example(name: str) -> tuple[Path, Path, dict[str, np.ndarray]]:
    npz = EXAMPLES / f"{name}.npz"
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files if k != "labels"}
    return EXAMPLES / f"{name}.onnx", npz, arrays


@pytest.fixture(scope="module")
def torch_onnx(tmp_path_factory) -> dict[str, tuple[Path, dict[str, np.ndarray]]]:
    """ResNet-style, depthwise-separable and transformer test models exported with torch, each
    with a small random data set (8 samples) for its input."""
    pytest.importorskip("torch", reason="torch not installed: pip install torch")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch_models as tm

    d = tmp_path_factory.mktemp("sim_models")
    out = {}
    for i, name in enumerate(["resnet_style", "depthwise_separable", "transformer_encoder"]):
        model, inputs = getattr(tm, name)()
        path = tm.export(model, inputs, d / f"{name}.onnx", dynamo=False)
        shape = tuple(inputs[0].shape)
        x = np.random.default_rng(100 + i).normal(size=(8,) + shape[1:]).astype(np.float32)
        out[name] = (path, {"input": x})
    return out


def compiled(path, data, *, target="pcm", overrides=(), passes=None, opts=IDEAL, seeds=1,
             samples=None):
    return imccompile.compile(str(path), target, overrides=list(overrides), passes=passes,
                              data=data, seeds=seeds, sim_options=opts, samples=samples)


# -- 1. ideal settings reproduce the original model --------------------------------------------------
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_ideal_simulation_matches_original_examples(name):
    path, npz, arrays = example(name)
    res = compiled(path, npz, overrides=["noise.model=none"])
    feeds = feeds_from(str(path), arrays)
    ref = run(str(path), feeds)
    sim = run(simulation_model_of(res, 0), feeds)
    assert_close(sim, ref, 1e-4)
    assert res.accuracy["relative_error"] < 1e-4


@pytest.mark.parametrize("name", ["resnet_style", "depthwise_separable", "transformer_encoder"])
def test_ideal_simulation_matches_original_torch_models(torch_onnx, name):
    path, data = torch_onnx[name]
    res = compiled(path, data, overrides=["noise.model=none"])
    feeds = feeds_from(str(path), data)
    ref = run(str(path), feeds)
    assert_close(run(simulation_model_of(res, 0), feeds), ref, 1e-4)
    assert_close(run(emit(res.graph)[0], feeds), ref, 1e-4)


def _tile_outputs(model: onnx.ModelProto) -> int:
    return sum(1 for n in model.graph.node for o in n.output if "_tile" in o)


@pytest.mark.parametrize("name,rows", [("digits_cnn", 64), ("resnet_style", 64),
                                       ("digits_transformer", 16)])
def test_adc16_with_row_tiles_matches_original(request, name, rows):
    """ADC on at 16 bits, small arrays so that layers are split into row tiles, each tile's
    partial sum converted separately: within 2e-4 (relative norm) of the original model."""
    if name in EXAMPLE_NAMES:
        path, data, arrays = example(name)
    else:  # a torch test model (skipped without torch)
        path, data = request.getfixturevalue("torch_onnx")[name]
        arrays = data
    ov = [ADC_LIST, "adc.bits=16", "search.rows=[16,64,128,256,512]", f"array.rows={rows}",
          "noise.model=none"]
    opts = SimOptions(noise=False, adc=True, dac=False, weights=False)
    res = compiled(path, data, overrides=ov, opts=opts, samples=100)
    feeds = feeds_from(str(path), arrays)[:100]
    sim_model = simulation_model_of(res, 0)
    # the split is really there: layers taller than an array have one ADC step per row tile
    # and column (tiles computed side by side in one product), or one product per tile
    mats = res.graph.matrix_ops
    assert max(op.rows for op in mats) > rows
    steps = {i.name: int(np.prod(i.dims)) for i in sim_model.graph.initializer}
    for op in mats:
        tiles = -(-op.rows // rows)
        stacked = [n for n in steps if n.startswith(op.name + "_adcstep")]
        if stacked:
            assert sum(steps[n] for n in stacked) == tiles * op.cols, op.name
        else:
            assert sum(1 for n in steps if n.startswith(op.name + "_adc")) >= tiles, op.name
    # a rounding per ADC (ONNX Round, or the 1.5 * 2^23 add of `_Builder.rint_clip`)
    roundings = sum(n.op_type == "Round" or (n.op_type == "Add" and "rint_m" in n.input[1])
                    for n in sim_model.graph.node)
    assert roundings >= len(mats)
    ref = run(str(path), feeds)
    y = run(sim_model, feeds)
    print(f"\n{name}: ADC 16 bits, {rows}-row tiles: relative error {rel_err(y, ref):.2e}")
    assert rel_err(y, ref) < 2e-4
    assert_close(y, ref, 5e-4)
    assert not np.array_equal(y, ref)  # the ADC does quantize


# -- 2. quantization-only emission vs an independent numpy quantization ------------------------------
def _quantize_per_channel(w: np.ndarray, axis: int, bits: int) -> np.ndarray:
    """Symmetric per-channel quantization, one step per index along `axis` (output channel)."""
    Q = 2 ** (bits - 1) - 1
    w64 = w.astype(np.float64)
    other = tuple(a for a in range(w.ndim) if a != axis)
    m = np.abs(w64).max(axis=other, keepdims=True)
    s = np.where(m > 0, m / Q, 1.0)
    return (np.clip(np.round(w64 / s), -Q, Q) * s).astype(np.float32)


def quantized_reference(model: onnx.ModelProto, bits: int) -> tuple[onnx.ModelProto, int]:
    """The model with every crossbar weight initializer quantized per output channel:
    Conv W (Cout, Cin/g, k...) per axis 0; Gemm B per output feature (axis 0 if transB else 1);
    MatMul with a constant right operand (K, N) per column; constant left operand A (M, K) of
    A @ X per row (each row of A produces one output row)."""
    m = copy.deepcopy(model)
    inits = {t.name: t for t in m.graph.initializer}
    axes: dict[str, int] = {}
    for node in m.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv" and node.input[1] in inits:
            axes[node.input[1]] = 0
        elif node.op_type == "Gemm" and node.input[1] in inits:
            axes[node.input[1]] = 0 if attrs.get("transB", 0) else 1
        elif node.op_type == "MatMul":
            a, b = node.input
            if b in inits and a not in inits:
                assert len(inits[b].dims) == 2
                axes[b] = 1
            elif a in inits and b not in inits:
                assert len(inits[a].dims) == 2
                axes[a] = 0
    for name, axis in axes.items():
        w = numpy_helper.to_array(inits[name])
        inits[name].CopyFrom(numpy_helper.from_array(_quantize_per_channel(w, axis, bits), name))
    return m, len(axes)


@pytest.mark.parametrize("name,bits", [("digits_cnn", 4), ("digits_cnn", 3),
                                       ("digits_transformer", 4), ("karate_gcn", 4)])
def test_weight_quantization_matches_numpy(name, bits):
    path, npz, arrays = example(name)
    res = compiled(path, npz, overrides=["noise.model=none"], passes=f"quantize{{weight_bits={bits}}}",
                   opts=SimOptions(noise=False, adc=False, dac=False, weights=True))
    expected, n_weights = quantized_reference(onnx.load(path), bits)
    assert n_weights == len(res.graph.matrix_ops) or name == "karate_gcn"  # a_hat used twice
    feeds = feeds_from(str(path), arrays)
    want = run(expected, feeds)
    got = run(simulation_model_of(res, 0), feeds)
    assert_close(got, want, 1e-5)
    # and the quantization is visible (so the comparison means something)
    assert rel_err(want, run(str(path), feeds)) > 1e-3


# -- 4. ADC resolution ---------------------------------------------------------------------------
SWEEP = [3, 4, 5, 6, 7, 8, 9, 10]


@pytest.mark.parametrize("name", ["digits_cnn", "digits_transformer"])
def test_adc_bits_sweep_vs_float(name):
    """Only the ADC: relative_error (vs the float reference) falls with every added bit; 16
    bits is ~ideal, 3 bits is more than 10x worse than 8 bits."""
    path, npz, _ = example(name)
    opts = SimOptions(noise=False, adc=True, dac=False, weights=False)
    err = {}
    for b in SWEEP + [16]:
        res = compiled(path, npz, overrides=[ADC_LIST, f"adc.bits={b}", "noise.model=none"],
                       opts=opts, samples=120)
        err[b] = res.accuracy["relative_error"]
    print(f"\n{name} ADC-only relative error by bits:",
          {b: f"{e:.2e}" for b, e in err.items()})
    assert err[16] < 1e-3
    assert err[3] > 10 * err[8]
    assert err[3] > 0.05
    for lo, hi in zip(SWEEP, SWEEP[1:] + [16]):
        assert err[hi] <= err[lo], (lo, hi, err)


@pytest.mark.parametrize("dac", [False, True])
def test_adc_bits_sweep_vs_no_adc_simulation(dac):
    """Quantized weights (spec's 4 bits), noise off: the error the ADC adds, measured here
    against the same simulation without ADC, falls with every added bit and 3 bits is > 10x
    worse than 8 bits. Without DAC, 16 bits adds < 1e-3. With the DAC on, a tiny ADC error
    occasionally moves a downstream activation across a DAC rounding boundary (one whole DAC
    step), which cascades through the layers, so 16 bits is only bounded loosely."""
    path, npz, arrays = example("digits_cnn")
    feeds = feeds_from(str(path), arrays)
    base = SimOptions(noise=False, adc=False, dac=dac, weights=True)
    no_adc = run(simulation_model_of(compiled(path, npz, overrides=["noise.model=none"],
                                               opts=base), 0), feeds)
    opts = SimOptions(noise=False, adc=True, dac=dac, weights=True)
    err = {}
    for b in SWEEP + [12, 16]:
        res = compiled(path, npz, overrides=[ADC_LIST, f"adc.bits={b}", "noise.model=none"],
                       opts=opts)
        err[b] = rel_err(run(simulation_model_of(res, 0), feeds), no_adc)
    print(f"\ndigits_cnn ADC error vs no-ADC (dac={dac}):", {b: f"{e:.2e}" for b, e in err.items()})
    assert err[16] < (5e-3 if dac else 1e-3)
    assert err[16] < err[8] / 4
    assert err[3] > 10 * err[8]
    bits = sorted(err)
    for lo, hi in itertools.pairwise(bits):
        assert err[hi] <= err[lo], (lo, hi, err)


# -- 5. pruning and the array count --------------------------------------------------------------
def gemm_model(k: int, n: int, seed: int = 0) -> onnx.ModelProto:
    """y = x @ W + b with W (K, N) of magnitudes in [1, 2] (no weight near zero)."""
    rng = np.random.default_rng(seed)
    w = (rng.choice([-1.0, 1.0], size=(k, n)) * rng.uniform(1.0, 2.0, size=(k, n))).astype(np.float32)
    b = rng.normal(size=n).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["y"])], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_pruning_array_counts():
    model = gemm_model(512, 512)
    # pcm: 256 x 256 arrays, differential_cell, 4 bits/cell, 4-bit weights: one cell per weight,
    # so the 512 x 512 layer takes 2 x 2 arrays.
    base = imccompile.compile(model, "pcm")
    assert base.mapping.arrays == 4
    counts = {}
    for gran in ["element", "row", "column", "block"]:
        res = imccompile.compile(model, "pcm", passes=f"prune{{ratio=0.5,granularity={gran}}}")
        counts[gran] = res.mapping.arrays
    assert counts["column"] < base.mapping.arrays
    assert counts["row"] < base.mapping.arrays
    assert counts["block"] < base.mapping.arrays
    assert counts["column"] == counts["row"] == counts["block"] == 2
    # element pruning at 0.3 leaves every row and column with kept weights: same arrays
    res = imccompile.compile(model, "pcm", passes="prune{ratio=0.3,granularity=element}")
    op = res.graph.matrix_ops[0]
    assert op.compression.mask is not None
    assert op.compression.mask.mean() == pytest.approx(0.7, abs=0.01)
    assert res.mapping.arrays == base.mapping.arrays
    assert counts["element"] == base.mapping.arrays


def test_pruned_simulation_uses_the_mask():
    """The pruned weights are zero in the simulation model (ideal settings, weights on)."""
    model = gemm_model(64, 32, seed=3)
    x = np.random.default_rng(0).normal(size=(10, 64)).astype(np.float32)
    res = imccompile.compile(model, "pcm", overrides=["noise.model=none"],
                             passes="prune{ratio=0.5,granularity=column}",
                             data={"x": x}, sim_options=IDEAL)
    op = res.graph.matrix_ops[0]
    keep = op.compression.mask
    w = numpy_helper.to_array(model.graph.initializer[0]) * keep
    b = numpy_helper.to_array(model.graph.initializer[1])
    want = x.astype(np.float64) @ w + b
    got = run(simulation_model_of(res, 0), [{"x": xi[None]} for xi in x])[:, 0]
    assert_close(got, want, 1e-5)
    assert keep.all(axis=0).sum() == 16 and (~keep).all(axis=0).sum() == 16


# -- 6. digits CNN accuracy on pcm ---------------------------------------------------------------
CNN, CNN_DATA = EXAMPLES / "digits_cnn.onnx", EXAMPLES / "digits_cnn.npz"


def test_digits_cnn_8bit_no_noise_within_one_point():
    res = compiled(CNN, CNN_DATA, overrides=["noise.model=none", "precision.weight_bits=8"],
                   passes="quantize{weight_bits=8,act_bits=8}", opts=SimOptions())
    acc = res.accuracy
    assert acc["metric"] == "top1" and acc["samples"] == 360
    assert res.target.adc.bits == 8  # the spec's ADC
    assert {lm.slices for lm in res.mapping.layers} == {2}  # 8-bit weights on 4-bit cells
    assert abs(acc["mean"] - acc["float"]) <= 0.01
    assert 0 < acc["relative_error"] < 0.1  # ADC / DAC / weights did act


def test_digits_cnn_pcm_noise_measurement():
    """Measurement, printed (run with -s): top-1 mean ± std over 5 seeds under the spec's PCM
    noise at 1 hour and 1 year, 4-bit (spec default) and 8-bit weights."""
    lines = []
    for wb in (4, 8):
        for t, label in ((3600.0, "1 hour"), (YEAR, "1 year")):
            ov = [f"noise.t_inference_s={t}"] + ([f"precision.weight_bits={wb}"] if wb != 4 else [])
            res = compiled(CNN, CNN_DATA, overrides=ov, opts=SimOptions(), seeds=5,
                           passes=f"quantize{{weight_bits={wb},act_bits=8}}")
            a = res.accuracy
            assert res.target.noise.model == "pcm" and len(a["per_seed"]) == 5
            assert a["relative_error"] > 0
            lines.append(f"  {wb}-bit weights, t = {label:6s}: top-1 {100 * a['mean']:.2f} "
                         f"± {100 * a['std']:.2f} %  (float {100 * a['float']:.2f} %, "
                         f"per seed {[round(100 * v, 2) for v in a['per_seed']]})")
    print("\ndigits_cnn on pcm, spec noise, 5 seeds:\n" + "\n".join(lines))


# -- 7. determinism ------------------------------------------------------------------------------
DET_OVERRIDES = ["noise.t_inference_s=86400"]
DET_PASSES = "quantize{weight_bits=4,act_bits=8}"

_CHILD = """
import hashlib, json, sys
import imccompile
from imccompile.simulate import SimOptions, simulation_model_of
res = imccompile.compile(sys.argv[1], "pcm", overrides=json.loads(sys.argv[3]), passes=sys.argv[4],
                         data=sys.argv[2], seeds=3, sim_options=SimOptions(), samples=100)
print(json.dumps({"per_seed": res.accuracy["per_seed"],
                  "sha": [hashlib.sha256(simulation_model_of(res, s).SerializeToString()).hexdigest()
                          for s in range(3)]}))
"""


def test_determinism_same_seeds_same_results():
    def once():
        return compiled(CNN, CNN_DATA, overrides=DET_OVERRIDES, passes=DET_PASSES,
                        opts=SimOptions(), seeds=3, samples=100)

    a, b = once(), once()
    assert a.accuracy["per_seed"] == b.accuracy["per_seed"]
    assert a.accuracy == b.accuracy
    bytes_a = [simulation_model_of(a, s).SerializeToString() for s in range(3)]
    bytes_b = [simulation_model_of(b, s).SerializeToString() for s in range(3)]
    assert bytes_a == bytes_b
    assert simulation_model_of(a, 1).SerializeToString() == bytes_a[1]  # repeatable on one result
    assert len(set(bytes_a)) == 3  # the noise does depend on the seed
    # simulation_model_of(result, s) is the model that was scored for seed s
    with np.load(CNN_DATA) as z:
        x, labels = z["input"][:100], z["labels"][:100]
    for s in range(3):
        out = run(bytes_a[s], [{"input": xi[None]} for xi in x])
        top1 = float((out.reshape(len(x), -1).argmax(axis=1) == labels).mean())
        assert top1 == a.accuracy["per_seed"][s]
    # another process (other hash seed) gives the same too
    shas = [hashlib.sha256(x).hexdigest() for x in bytes_a]
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", _CHILD, str(CNN), str(CNN_DATA),
                          json.dumps(DET_OVERRIDES), DET_PASSES], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    child = json.loads(out.stdout.strip().splitlines()[-1])
    assert child["per_seed"] == a.accuracy["per_seed"]
    assert child["sha"] == shas


def test_matrix_ops_all_simulated():
    """Every crossbar layer of the simulation model carries the hardware effects: with DAC and
    weight quantization on, no float weight of the source survives in the emitted model."""
    res = compiled(CNN, CNN_DATA, overrides=["noise.model=none"], samples=20,
                   opts=SimOptions(noise=False, adc=False, dac=True, weights=True))
    sim = simulation_model_of(res, 0)
    n_dac = sum(1 for n in sim.graph.node if n.op_type == "Round"  # or `rint_clip`'s add
                or (n.op_type == "Add" and "rint_m" in n.input[1]))
    assert n_dac == len(res.graph.matrix_ops)
    src = {t.name: numpy_helper.to_array(t) for t in onnx.load(CNN).graph.initializer}
    emitted = [numpy_helper.to_array(t) for t in sim.graph.initializer]
    for op in res.graph.matrix_ops:
        assert isinstance(op, MatrixOp)
    for name, w in src.items():
        if w.ndim >= 2:
            assert not any(e.shape == w.shape and np.array_equal(e, w) for e in emitted), name
