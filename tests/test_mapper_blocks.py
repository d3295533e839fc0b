"""Block pruning empties whole crossbar tiles, which the mapper then does not place."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from imccompile.compiler import compile_graph
from imccompile.frontend import import_model
from imccompile.passes import run_pipeline
from imccompile.spec import load_target


def _gemm(k: int, n: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((n, k)) + 3.0).astype(np.float32)  # no zero weights
    w[:n // 2, :k // 2] *= 0.01  # the two diagonal 256x256 blocks are the smallest: block
    w[n // 2:, k // 2:] *= 0.01  # pruning removes them without emptying any row or column
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
                          [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_block_pruning_frees_arrays_on_pcm():
    # pcm: 256x256 arrays, 4-bit weights on 4-bit cells, differential in the cell -> one array
    # holds a 256x256 logical block; a 512x512 Gemm takes 2 x 2 = 4 arrays.
    t = load_target("pcm")
    g = import_model(_gemm(512, 512))
    assert compile_graph(g, t).mapping.arrays == 4
    pruned, _ = run_pipeline(g, "prune{ratio=0.5,granularity=block}", target=t)
    mask = pruned.matrix_ops[0].compression.mask
    # two of the four 256x256 blocks are gone entirely, no whole row or column is
    assert mask.any(axis=0).all() and mask.any(axis=1).all()
    assert sum(not mask[r:r + 256, c:c + 256].any() for r in (0, 256) for c in (0, 256)) == 2
    res = compile_graph(pruned, t)
    assert res.mapping.arrays == 2
    assert res.cost.energy_j < compile_graph(g, t).cost.energy_j


def test_element_pruning_keeps_tiles():
    t = load_target("pcm")
    g = import_model(_gemm(512, 512))
    pruned, _ = run_pipeline(g, "prune{ratio=0.5,granularity=element}", target=t)
    assert compile_graph(pruned, t).mapping.arrays == 4
