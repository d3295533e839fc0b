"""The simulation's DAC/ADC rounding (`_Builder.rint_clip`: Clip, then two Adds of 1.5 * 2^23)
is numpy's round-half-to-even, clipped, on ties, near the bounds and beyond them, as run by
onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from imccompile.emit import _Builder


def _run(b: _Builder, out: str, x: np.ndarray) -> np.ndarray:
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in b.arrays.items()]
    g = helper.make_graph(b.nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def test_codes_round_half_to_even_and_clip_like_numpy():
    rng = np.random.default_rng(0)
    ties = np.arange(-300, 300, dtype=np.float32) + np.float32(0.5)
    x = np.concatenate([ties, rng.normal(0, 200, 5000).astype(np.float32),
                        np.float32([0.0, -0.0, 127.49999, 127.5, -128.5, 1e30, -1e30, np.inf,
                                    -np.inf])])
    for step, lo, hi in ((1.0, -127, 127), (0.5, 0, 255), (3.0, -8, 7)):
        b = _Builder()
        out = b.codes("x", step, lo, hi, "dac")
        got = _run(b, out, x)
        want = np.clip(np.rint(x / np.float32(step)), lo, hi)
        np.testing.assert_array_equal(got, want)
    assert not any(n.op_type == "Round" for n in b.nodes)  # the fast form was emitted


def test_wide_bounds_keep_onnx_round():
    b = _Builder()
    out = b.codes("x", 1.0, -(2 ** 23), 2 ** 23, "wide")
    x = np.float32([4194304.5, -4194305.5, 8388607.0, 0.5, 1.5])
    np.testing.assert_array_equal(_run(b, out, x), np.rint(x))
    assert any(n.op_type == "Round" for n in b.nodes)
