"""``If`` whose condition folds to a constant is replaced by its taken branch (issue 15); one
that depends on input values stays refused, naming the node."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_builders as ob  # noqa: E402

from imccompile.emit import emit  # noqa: E402
from imccompile.errors import ModelImportError  # noqa: E402
from imccompile.frontend import import_model  # noqa: E402

RNG = np.random.default_rng(0)
W_THEN = RNG.standard_normal((16, 4)).astype(np.float32)
W_ELSE = RNG.standard_normal((16, 6)).astype(np.float32)


def _sample_rate_model() -> "ob.onnx.ModelProto":
    """y = x @ W_then if x.shape[1] == 16 else x @ W_else[:, :4] (as a VAD model branches on
    its sample rate); the then branch has its own initializer, both read the outer x."""
    then_g = helper.make_graph([helper.make_node("MatMul", ["x", "Wt"], ["t"], name="mm_then")],
                               "then", [], [ob.vi("t", None)], [ob.init("Wt", W_THEN)])
    else_g = helper.make_graph([
        helper.make_node("Slice", ["We", "st", "en", "axs"], ["we4"]),
        helper.make_node("MatMul", ["x", "we4"], ["e"], name="mm_else")], "else", [],
        [ob.vi("e", None)])
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "one"], ["width"], axis=0),
        helper.make_node("Equal", ["width", "sixteen"], ["cond"]),
        helper.make_node("If", ["cond"], ["h"], name="by_rate", then_branch=then_g,
                         else_branch=else_g),
        helper.make_node("Relu", ["h"], ["y"], name="relu"),
    ]
    inits = [ob.init("one", np.array(1, np.int64)), ob.init("sixteen", np.array(16, np.int64)),
             ob.init("We", W_ELSE), ob.init("st", np.array([0], np.int64)),
             ob.init("en", np.array([4], np.int64)), ob.init("axs", np.array([1], np.int64))]
    return ob.model(nodes, [ob.vi("x", ("N", 16))], [ob.vi("y", None)], inits, check=False)


def test_if_on_a_shape_condition_is_inlined() -> None:
    m = _sample_rate_model()
    g = import_model(m, {"x": (3, 16)})
    assert [o.name for o in g.matrix_ops] == ["by_rate/mm_then"]
    op = g.matrix_ops[0]
    assert (op.rows, op.cols, op.vectors) == (16, 4, 3)  # hand count: W_then on 3 rows
    np.testing.assert_array_equal(op.weight, W_THEN)
    x = RNG.standard_normal((3, 16)).astype(np.float32)
    (ref,) = ob.run(m, {"x": x})
    (ours,) = ob.run(emit(g)[0], {"x": x})
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_if_on_a_constant_takes_the_else_branch() -> None:
    then_g = helper.make_graph([helper.make_node("Neg", ["x"], ["t"])], "then", [],
                               [ob.vi("t", None)])
    else_g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["e"], name="mm")],
                               "else", [], [ob.vi("e", None)])
    nodes = [helper.make_node("Constant", [], ["c"],
                              value=helper.make_tensor("v", TensorProto.BOOL, [], [False])),
             helper.make_node("If", ["c"], ["y"], name="pick", then_branch=then_g,
                              else_branch=else_g)]
    m = ob.model(nodes, [ob.vi("x", (2, 16))], [ob.vi("y", None)], [ob.init("W", W_THEN)],
                 check=False)
    g = import_model(m)
    assert [(o.name, o.rows, o.cols, o.vectors) for o in g.matrix_ops] == [("pick/mm", 16, 4, 2)]
    x = RNG.standard_normal((2, 16)).astype(np.float32)
    (ref,) = ob.run(m, {"x": x})
    (ours,) = ob.run(emit(g)[0], {"x": x})
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_if_on_input_values_is_refused_by_name() -> None:
    with pytest.raises(ModelImportError, match=r"node 'branch' is If: control flow.*condition "
                                               r"'cond' is computed from the inputs"):
        import_model(ob.if_model())


def test_inlined_if_costs_and_simulates_ideally(tmp_path: Path) -> None:
    """The inlined model costs on the target and --ideal reproduces onnxruntime's outputs of
    the original If model (agreement 1.0 on the 4-value scores)."""
    import imccompile
    from imccompile.simulate import SimOptions

    m = _sample_rate_model()
    res = imccompile.compile(m, "pcm", input_shapes={"x": (3, 16)})
    # hand count: one 16 x 4 layer on one 256 x 256 pcm array, 3 input vectors
    assert res.mapping.arrays == 1 and res.graph.total_macs == 3 * 16 * 4
    assert res.cost.energy_j > 0
    x = RNG.standard_normal((5, 3, 16)).astype(np.float32)
    data = tmp_path / "x.npz"
    np.savez(data, x=x)
    ideal = SimOptions(noise=False, adc=False, dac=False, weights=False)
    res = imccompile.compile(m, "pcm", input_shapes={"x": (3, 16)}, data=data, sim_options=ideal)
    assert res.accuracy is not None and res.accuracy["mean"] == pytest.approx(1.0, abs=1e-9)
    assert res.accuracy["relative_error"] < 1e-6
