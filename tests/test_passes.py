"""Passes: pipeline text round trip and errors, the pass manager, prune, quantize, fold-bn, the
registry (built-in and third-party), checked against independent numpy / onnxruntime references."""

from __future__ import annotations

import dataclasses
import sys
import types
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from imccompile.compiler import activation_stats_for
from imccompile.emit import emit
from imccompile.errors import PassError
from imccompile.frontend import import_model
from imccompile.ir import DigitalOp, Graph, MatrixOp, TensorInfo
from imccompile.mapper import map_graph
from imccompile.passes import (
    FoldBatchNorm,
    Pass,
    PassContext,
    PassManager,
    Prune,
    Quantize,
    base,
    get_pass,
    graph_problems,
    parse_pipeline,
    pipeline_text,
    register_pass,
    registered_passes,
    run_pipeline,
    unregister_pass,
)
from imccompile.simulate import load_data
from imccompile.spec import load_target

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CNN = EXAMPLES / "digits_cnn.onnx"


# -- helpers ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rram():
    return load_target("rram")


@pytest.fixture(scope="module")
def cnn_proto() -> onnx.ModelProto:
    return onnx.load(CNN)


@pytest.fixture(scope="module")
def cnn(cnn_proto) -> Graph:
    return import_model(cnn_proto)


@pytest.fixture(scope="module")
def cnn_data() -> dict[str, np.ndarray]:
    with np.load(EXAMPLES / "digits_cnn.npz") as z:
        return {"input": z["input"][:24]}


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "t", inputs, outputs,
                          [numpy_helper.from_array(np.asarray(v, np.float32), k)
                           for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def mlp(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, trans_b: bool = False) -> onnx.ModelProto:
    """x (2, K) -> Gemm(W1 [K,H] or [H,K] with transB) + b1 -> Relu -> MatMul(W2 [H, N])."""
    k = w1.shape[1] if trans_b else w1.shape[0]
    n = w2.shape[1]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=int(trans_b)),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, k])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, n])],
                  {"w1": w1, "b1": b1, "w2": w2})


def gemm(w: np.ndarray) -> onnx.ModelProto:
    """x (1, K) -> Gemm(W [K, N]) named fc."""
    k, n = w.shape
    return _model([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], {"w": w})


def depthwise(channels: int, seed: int = 0) -> onnx.ModelProto:
    """A grouped (depthwise, 2 output channels per group) 3x3 conv."""
    w = np.random.default_rng(seed).normal(size=(2 * channels, 1, 3, 3))
    return _model([helper.make_node("Conv", ["x", "w"], ["y"], name="dw", group=channels,
                                    pads=[1, 1, 1, 1])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 5, 5])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2 * channels, 5, 5])],
                  {"w": w})


def run_onnx(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def ref_quantize(w: np.ndarray, bits: int, axis: int) -> np.ndarray:
    """Independent reference: symmetric per-output-channel quantization along ``axis``."""
    w = np.asarray(w, np.float64)
    out = np.empty_like(w)
    for c in range(w.shape[axis]):
        ch = np.take(w, c, axis=axis)
        if bits == 1:
            v = np.sign(ch) * np.mean(np.abs(ch))
        else:
            top = 2 ** (bits - 1) - 1
            scale = np.max(np.abs(ch)) / top
            v = np.clip(np.round(ch / scale), -top, top) * scale if scale > 0 else ch * 0
        idx = [slice(None)] * w.ndim
        idx[axis] = c
        out[tuple(idx)] = v
    return out


def mat(graph: Graph, name: str) -> MatrixOp:
    op = graph.op(name)
    assert isinstance(op, MatrixOp)
    return op


# -- pipeline text ------------------------------------------------------------------------------
names = st.text(min_size=1, max_size=12)
bits = st.integers(1, 8)


@st.composite
def prunes(draw) -> Prune:
    gran = draw(st.sampled_from(["element", "row", "column", "block"]))
    blk = st.none() | st.integers(1, 4096) if gran == "block" else st.none()
    return Prune(match=draw(st.none() | names), exclude=draw(st.none() | names),
                 ratio=draw(st.floats(0.0, 1.0)), granularity=gran,
                 block_rows=draw(blk), block_cols=draw(blk))


@st.composite
def quantizes(draw) -> Quantize:
    cal = draw(st.sampled_from(["max", "percentile"]))
    pct = draw(st.floats(0.0, 100.0, exclude_min=True)) if cal == "percentile" else 99.99
    return Quantize(match=draw(st.none() | names), exclude=draw(st.none() | names),
                    weight_bits=draw(bits), act_bits=draw(st.integers(1, 16)),
                    calibration=cal, percentile=pct)


pipelines = st.lists(st.just(FoldBatchNorm()) | prunes() | quantizes(), max_size=4)


@settings(max_examples=150, deadline=None)
@given(pipelines)
def test_pipeline_text_round_trips(passes):
    text = pipeline_text(passes)
    assert parse_pipeline(text) == tuple(passes)
    assert pipeline_text(parse_pipeline(text)) == text


def test_canonical_text_orders_options_and_drops_defaults():
    p = parse_pipeline(' quantize { act_bits = 8 , weight_bits=4 } ,fold-bn,'
                       'prune{granularity=column,ratio=0.5}, prune{match="/a b,{c}=\\"q\\"\\\\"}')
    assert pipeline_text(p) == ('quantize{weight_bits=4},fold-bn,prune{granularity=column},'
                                'prune{match="/a b,{c}=\\"q\\"\\\\"}')
    assert p[3].match == '/a b,{c}="q"\\'
    assert parse_pipeline("prune{match=/features/features.0/Conv}")[0].match == \
        "/features/features.0/Conv"
    assert parse_pipeline("") == () and parse_pipeline("  ") == ()
    assert parse_pipeline("fold-bn{}") == (FoldBatchNorm(),)
    # values are read by the option's type: a str option keeps "1.5", a float takes an int
    assert parse_pipeline("prune{match=1.5,ratio=1}")[0] == Prune(match="1.5", ratio=1.0)
    assert str(Prune(ratio=0.25, granularity="row")) == "prune{ratio=0.25,granularity=row}"


@pytest.mark.parametrize("text, match", [
    ("prnue", r"unknown pass `prnue`; known passes: fold-bn, prune, quantize"),
    ("prune{rate=0.5}", (r"pass `prune` has no option 'rate'; its options: match, exclude, "
                         r"ratio, granularity, block_rows, block_cols")),
    ("prune{ratio=half}", r"option ratio='half' is not accepted; expected a float"),
    ("prune{ratio=1.5}", r"`prune`: option ratio=1.5 is not accepted; expected a float in 0..1"),
    ("prune{granularity=channel}", r"expected one of element\|row\|column\|block"),
    ("prune{block_rows=4}", r"no block_rows unless granularity=block"),
    ("prune{granularity=block,block_cols=0}", r"block_cols=0 .*expected an int >= 1"),
    ("quantize{weight_bits=9}", r"weight_bits=9 is not accepted; expected an int in 1\.\.8"),
    ("quantize{weight_bits=4.0}", r"weight_bits='4.0' is not accepted; expected an int"),
    ("quantize{weight_bits=true}", r"expected an int"),
    ("quantize{act_bits=0}", r"act_bits=0 .*an int in 1\.\.16"),
    ("quantize{percentile=99}", r"no percentile unless calibration=percentile"),
    ("quantize{calibration=percentile,percentile=0}", r"a float in \(0, 100\]"),
    ("quantize{match=}", r"column 16: expected a value"),
    ('quantize{match="abc}', r"unterminated quoted value"),
    ("quantize{weight_bits=4", r"expected ',' or '}', got the end"),
    ("quantize{weight_bits=4,weight_bits=5}", r"option weight_bits is given twice"),
    ("fold-bn prune", r"column 9: expected ',' between passes"),
    ("fold-bn,,prune", r"column 9: expected a pass name"),
])
def test_pipeline_errors(text, match):
    with pytest.raises(PassError, match=match):
        parse_pipeline(text)


def test_options_are_checked_when_constructed_in_python():
    with pytest.raises(PassError, match=r"pass `prune`: option ratio=nan is not accepted"):
        Prune(ratio=float("nan"))
    with pytest.raises(PassError, match=r"option weight_bits=True .*expected an int"):
        Quantize(weight_bits=True)
    with pytest.raises(PassError, match=r"option match='' .*a non-empty layer name or glob"):
        Quantize(match="")
    assert Prune(ratio=1).ratio == 1.0 and isinstance(Prune(ratio=1).ratio, float)
    assert Quantize(weight_bits=np.int64(4)).text() == "quantize{weight_bits=4}"


# -- pass manager -------------------------------------------------------------------------------
def test_pass_manager_wraps_failures_with_the_passes_before(cnn):
    with pytest.raises(PassError, match=r"^pass `quantize` failed after \[fold-bn, prune\]: pass "
                                        r"`quantize`: calibration=percentile needs calibration "
                                        r"data"):
        run_pipeline(cnn, "fold-bn,prune,quantize{calibration=percentile}")
    with pytest.raises(PassError, match=r"pass `prune` failed after \[\]: .*granularity=block "
                                        r"needs the target's array size"):
        run_pipeline(cnn, "prune{granularity=block}")


def test_pass_manager_checks_declared_order(cnn):
    with pytest.raises(PassError, match=r"pass `fold-bn` must run before `quantize`"):
        run_pipeline(cnn, "quantize,fold-bn")


@dataclass(frozen=True)
class _Break(Pass):
    """Test pass that breaks the graph (weight shape, unzeroed mask) or has a bug."""

    name: ClassVar[str] = "test-break"
    what: Literal["shape", "mask", "bug"] = "shape"

    def apply(self, graph: Graph, ctx: PassContext) -> Graph:
        if self.what == "bug":
            raise ZeroDivisionError("oops")
        op = graph.matrix_ops[-1]
        if self.what == "shape":
            new = op.replace(weight=op.weight[:-1])
        else:
            mask = np.zeros(op.weight.shape, bool)
            new = op.replace(compression=op.compression.replace(mask=mask))
        return graph.with_ops(new if o is op else o for o in graph.ops)


@pytest.fixture
def breaker():
    register_pass(_Break)
    yield _Break
    unregister_pass(_Break.name)


def test_pass_manager_verifies_the_graph_after_each_pass(cnn, breaker):
    with pytest.raises(PassError, match=r"pass `test-break` failed after \[prune\]: it left an "
                                        r"invalid graph: /classifier/classifier.3/Gemm: weight "
                                        r"shape changed from \(64, 10\) to \(63, 10\)"):
        run_pipeline(cnn, "prune,test-break")
    with pytest.raises(PassError, match=r"pruned weights are not zero"):
        run_pipeline(cnn, "test-break{what=mask}")
    # verify=False lets it through
    g, _ = run_pipeline(cnn, "test-break{what=mask}", verify=False)
    assert graph_problems(g, cnn)
    # a bug in a pass (not a user error) keeps its type, with the context as a note
    with pytest.raises(ZeroDivisionError) as info:
        PassManager(parse_pipeline("fold-bn,test-break{what=bug}")).run(cnn)
    assert "pass `test-break` failed after [fold-bn]" in "".join(info.value.__notes__)


def test_run_pipeline_returns_canonical_text_and_leaves_the_input_alone(cnn, rram):
    before = [op.weight.copy() for op in cnn.matrix_ops]
    _, text = run_pipeline(cnn, "prune{granularity=column,ratio=0.5},quantize{act_bits=8,"
                                "weight_bits=4}", target=rram)
    assert text == "prune{granularity=column},quantize{weight_bits=4}"
    assert all(np.array_equal(a, op.weight) and op.compression.mask is None
               for a, op in zip(before, cnn.matrix_ops, strict=True))
    assert run_pipeline(cnn, "") == (cnn, "")
    assert run_pipeline(cnn, [Prune(ratio=0.1)])[1] == "prune{ratio=0.1}"
    assert run_pipeline(cnn, Quantize())[1] == "quantize"


def test_compile_stores_the_canonical_pipeline():
    import imccompile

    res = imccompile.compile(str(CNN), "rram", passes="prune{ratio=0.5, granularity=column}")
    assert res.pipeline == "prune{granularity=column}"
    base_arrays = imccompile.compile(str(CNN), "rram").mapping.arrays
    assert res.mapping.arrays < base_arrays


# -- quantize -----------------------------------------------------------------------------------
@pytest.mark.parametrize("b", [1, 2, 4, 8])
def test_quantize_cnn_equals_independent_per_channel_quantization(cnn_proto, cnn, cnn_data, b):
    """Quantize the ONNX initializers per output channel in numpy, run that model in onnxruntime;
    it must equal the emitted model of the quantized IR."""
    ref = onnx.ModelProto()
    ref.CopyFrom(cnn_proto)
    inits = {t.name: t for t in ref.graph.initializer}
    for node in ref.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            t = inits[node.input[1]]
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            axis = 0 if node.op_type == "Conv" or attrs.get("transB", 0) else 1
            q = ref_quantize(numpy_helper.to_array(t), b, axis).astype(np.float32)
            t.CopyFrom(numpy_helper.from_array(q, t.name))
    g, text = run_pipeline(cnn, f"quantize{{weight_bits={b},act_bits=6}}")
    assert text == (f"quantize{{weight_bits={b},act_bits=6}}" if b != 8 else "quantize{act_bits=6}")
    for op in g.matrix_ops:
        assert op.compression.weight_bits == b and op.compression.act_bits == 6
        assert op.weight.dtype == np.float32 and op.weight.shape == mat(cnn, op.name).weight.shape
        assert op.compression.act_range is None  # no data given
        levels = max(len(np.unique(op.weight[:, j])) for j in range(op.cols))
        assert levels <= (2 if b == 1 else 2 ** b - 1)
    model, _ = emit(g)
    for x in cnn_data["input"][:8]:
        got = run_onnx(model, {"input": x[None]})
        want = run_onnx(ref, {"input": x[None]})
        assert got.shape == want.shape == (1, 10)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("trans_b", [False, True])
def test_quantize_mlp_onnxruntime_equals_numpy_reference(trans_b):
    rng = np.random.default_rng(1)
    w1 = rng.normal(size=(6, 5)).astype(np.float32)  # [K=6, H=5]
    b1 = rng.normal(size=5).astype(np.float32)
    w2 = rng.normal(size=(5, 3)).astype(np.float32)
    g = import_model(mlp(w1.T.copy() if trans_b else w1, b1, w2, trans_b))
    q, _ = run_pipeline(g, "quantize{weight_bits=3}")
    x = rng.normal(size=(2, 6)).astype(np.float32)
    got = run_onnx(emit(q)[0], {"x": x})
    w1q, w2q = ref_quantize(w1, 3, axis=1), ref_quantize(w2, 3, axis=1)
    want = np.maximum(x.astype(np.float64) @ w1q + b1, 0) @ w2q
    assert got.shape == want.shape == (2, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # and the quantized model really differs from the float one
    assert not np.allclose(got, run_onnx(emit(g)[0], {"x": x}), rtol=1e-3)


def test_quantize_calibrates_activation_ranges_on_data():
    rng = np.random.default_rng(2)
    w1, b1, w2 = rng.normal(size=(4, 8)), rng.normal(size=8), rng.normal(size=(8, 2))
    g = import_model(mlp(w1, b1, w2))
    xs = rng.normal(size=(50, 2, 4)).astype(np.float32)
    hidden = np.maximum(xs.astype(np.float64) @ w1.astype(np.float32) + b1.astype(np.float32), 0)
    stats = activation_stats_for(load_data({"x": xs}, g))
    q, _ = run_pipeline(g, "quantize{weight_bits=4}", activation_stats=stats)
    fc1, fc2 = q.matrix_ops
    assert fc1.compression.act_range == pytest.approx(np.abs(xs).max(), rel=1e-6)
    assert fc1.compression.act_signed is True
    assert fc2.compression.act_range == pytest.approx(hidden.max(), rel=1e-5)
    assert fc2.compression.act_signed is False  # after Relu
    p, text = run_pipeline(g, "quantize{calibration=percentile,percentile=90}",
                           activation_stats=stats)
    assert text == "quantize{calibration=percentile,percentile=90.0}"
    assert p.matrix_ops[0].compression.act_range == pytest.approx(
        np.percentile(np.abs(xs), 90), rel=1e-5)


def test_quantize_per_layer_with_match_and_exclude(cnn):
    g, text = run_pipeline(cnn, "quantize{exclude=/classifier*,weight_bits=4},"
                                "quantize{match=/classifier*,weight_bits=8,act_bits=4}")
    assert text == ("quantize{exclude=/classifier*,weight_bits=4},"
                    "quantize{match=/classifier*,act_bits=4}")
    got = {op.name: (op.compression.weight_bits, op.compression.act_bits) for op in g.matrix_ops}
    assert got == {"/features/features.0/Conv": (4, 8), "/features/features.3/Conv": (4, 8),
                   "/features/features.7/Conv": (4, 8), "/classifier/classifier.1/Gemm": (8, 4),
                   "/classifier/classifier.3/Gemm": (8, 4)}
    np.testing.assert_array_equal(mat(g, "/classifier/classifier.1/Gemm").weight,
                                  ref_quantize(mat(cnn, "/classifier/classifier.1/Gemm").weight,
                                               8, axis=1).astype(np.float32))
    # exact layer names work as match values too
    one, _ = run_pipeline(cnn, "quantize{match=/features/features.3/Conv,weight_bits=2}")
    assert [op.compression.weight_bits for op in one.matrix_ops] == [None, 2, None, None, None]
    with pytest.raises(PassError, match=r"layer /classifier/classifier.1/Gemm already has 4-bit "
                                        r"weights; quantizing it to 8 bits cannot restore"):
        run_pipeline(cnn, "quantize{weight_bits=4},quantize{match=/classifier*,weight_bits=8}")
    with pytest.raises(PassError, match=r"match='/clasifier\*' selects no matrix op; the layers "
                                        r"are: /features/features.0/Conv, "):
        run_pipeline(cnn, "quantize{match=/clasifier*}")


def test_quantize_one_bit_is_sign_times_mean_of_kept_weights():
    w = np.array([[1.0, -2.0], [-3.0, 0.5], [0.0, 4.0]], np.float32)
    g = import_model(gemm(w))
    q, _ = run_pipeline(g, "quantize{weight_bits=1}")
    np.testing.assert_allclose(q.matrix_ops[0].weight, [[4 / 3, -6.5 / 3], [-4 / 3, 6.5 / 3],
                                                        [0.0, 6.5 / 3]], rtol=1e-6)
    # after pruning, the mean is over the kept weights
    p, _ = run_pipeline(g, "prune{ratio=0.5,granularity=element},quantize{weight_bits=1}")
    np.testing.assert_allclose(p.matrix_ops[0].weight, [[0, -3], [-3, 0], [0, 3]], rtol=1e-6)


# -- prune --------------------------------------------------------------------------------------
def test_prune_element_exact_counts_and_smallest_magnitudes():
    w = np.random.default_rng(3).normal(size=(20, 7)).astype(np.float32)
    g = import_model(gemm(w))
    p, _ = run_pipeline(g, "prune{ratio=0.3}")
    op = p.matrix_ops[0]
    n_pruned = int(np.floor(0.3 * 140))
    assert op.compression.mask.dtype == np.bool_ and op.compression.mask.shape == (20, 7)
    assert int((~op.compression.mask).sum()) == n_pruned
    smallest = np.argsort(np.abs(w).ravel())[:n_pruned]
    assert set(np.flatnonzero(~op.compression.mask)) == set(smallest)
    np.testing.assert_array_equal(op.weight, np.where(op.compression.mask, w, 0))


@pytest.mark.parametrize("gran, axis", [("row", 1), ("column", 0)])
def test_prune_rows_and_columns_by_l2_norm(gran, axis):
    w = np.random.default_rng(4).normal(size=(12, 9)).astype(np.float32)
    g = import_model(gemm(w))
    p, _ = run_pipeline(g, f"prune{{ratio=0.5,granularity={gran}}}")
    mask = p.matrix_ops[0].compression.mask
    units = w.shape[1 - axis]
    norms = np.linalg.norm(w.astype(np.float64), axis=axis)
    pruned = set(np.argsort(norms)[:units // 2])
    kept_units = mask.any(axis=axis)
    assert int(kept_units.sum()) == units - units // 2
    assert set(np.flatnonzero(~kept_units)) == pruned
    assert mask.all(axis=axis).sum() == kept_units.sum()  # kept units are kept whole


def test_prune_ratio_edges():
    w = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float32)
    g = import_model(gemm(w))
    assert run_pipeline(g, "prune{ratio=0}")[0].matrix_ops[0].compression.mask is None
    almost = run_pipeline(g, "prune{ratio=0.99,granularity=row}")[0].matrix_ops[0]
    assert int(almost.compression.mask.any(axis=1).sum()) == 1  # never all by accident
    assert int(almost.compression.mask.sum()) == 4
    everything = run_pipeline(g, "prune{ratio=1.0,granularity=column}")[0].matrix_ops[0]
    assert not everything.compression.mask.any() and not everything.weight.any()


def test_prune_composes_with_earlier_pruning():
    w = np.random.default_rng(6).normal(size=(10, 10)).astype(np.float32)
    g = import_model(gemm(w))
    p, _ = run_pipeline(g, "prune{ratio=0.2,granularity=row},prune{ratio=0.5,granularity=row}")
    assert int(p.matrix_ops[0].compression.mask.any(axis=1).sum()) == 5
    p2, _ = run_pipeline(g, "prune{ratio=0.5,granularity=row},prune{ratio=0.2,granularity=column}")
    m = p2.matrix_ops[0].compression.mask
    assert int(m.any(axis=1).sum()) == 5 and int(m.any(axis=0).sum()) == 8


def test_prune_grouped_rows_per_group():
    g = import_model(depthwise(4))
    op = g.matrix_ops[0]
    assert (op.groups, op.rows, op.cols) == (4, 9, 8)
    p, _ = run_pipeline(g, "prune{ratio=0.4,granularity=row}")
    mask = p.matrix_ops[0].compression.mask
    for grp in range(4):
        block = mask[:, 2 * grp:2 * grp + 2]
        w = op.weight[:, 2 * grp:2 * grp + 2].astype(np.float64)
        kept = block.any(axis=1)
        assert int(kept.sum()) == 9 - 3  # floor(0.4 * 9) = 3 rows per group
        assert set(np.flatnonzero(~kept)) == set(np.argsort(np.linalg.norm(w, axis=1))[:3])
    c, _ = run_pipeline(g, "prune{ratio=0.5,granularity=column}")
    kept_cols = c.matrix_ops[0].compression.mask.any(axis=0).reshape(4, 2)
    assert (kept_cols.sum(axis=1) == 1).all()  # one column per group


def test_prune_block_explicit_and_from_target(rram):
    w = np.random.default_rng(7).normal(size=(10, 9)).astype(np.float32)
    g = import_model(gemm(w))
    p, _ = run_pipeline(g, "prune{ratio=0.5,granularity=block,block_rows=4,block_cols=3}")
    mask = p.matrix_ops[0].compression.mask
    # 3 x 3 blocks (edge blocks partial): 4 pruned, each all-False, the 4 smallest L2 norms
    norms = {(i, j): np.linalg.norm(w[4 * i:4 * i + 4, 3 * j:3 * j + 3].astype(np.float64))
             for i in range(3) for j in range(3)}
    gone = {(i, j) for (i, j) in norms if not mask[4 * i:4 * i + 4, 3 * j:3 * j + 3].any()}
    assert gone == set(sorted(norms, key=norms.get)[:4])
    assert int(mask.sum()) == 90 - sum(mask[4 * i:4 * i + 4, 3 * j:3 * j + 3].size
                                       for i, j in gone)
    # from the target: rram has 128 x 128 arrays, 2 bits per cell, offset scheme (127 usable
    # columns): 16-bit weights take 8 slices -> 15 logical columns; 4-bit -> 2 slices -> 63
    assert (rram.array.rows, rram.array.cols, rram.array.bits_per_cell,
            rram.array.signed_scheme, rram.precision.weight_bits) == (128, 128, 2, "offset", 16)
    op = g.matrix_ops[0]
    assert Prune(granularity="block").block_shape(op, rram) == (128, 15)
    q = op.replace(compression=op.compression.replace(weight_bits=4))
    assert Prune(granularity="block").block_shape(q, rram) == (128, 63)
    assert Prune(granularity="block", block_rows=64).block_shape(q, rram) == (64, 63)
    assert Prune(granularity="block", block_rows=8, block_cols=2).block_shape(q, None) == (8, 2)


def test_structured_pruning_lowers_arrays_element_does_not(rram, cnn):
    # element: each row and column keeps a dominant weight, so no row/column empties
    rng = np.random.default_rng(8)
    w = rng.normal(size=(300, 40)).astype(np.float32) * 0.1
    w[np.arange(300), np.arange(300) % 40] = 10.0
    g = import_model(gemm(w))
    base_arrays = map_graph(g, rram).arrays
    assert base_arrays == 3 * 3  # 300 rows -> 3 row tiles; 40 x 8 slices = 320 cols -> 3 tiles
    el, _ = run_pipeline(g, "prune{ratio=0.5}", target=rram)
    assert int(el.matrix_ops[0].compression.mask.sum()) == 6000
    assert map_graph(el, rram).arrays == base_arrays
    col, _ = run_pipeline(g, "prune{ratio=0.5,granularity=column}", target=rram)
    assert map_graph(col, rram).arrays == 3 * 2  # 20 cols x 8 = 160 -> 2 tiles
    row, _ = run_pipeline(g, "prune{ratio=0.6,granularity=row}", target=rram)
    assert map_graph(row, rram).arrays == 1 * 3  # 120 rows -> 1 tile
    # block: 128 x 15 blocks; 2 row stripes x 3 column stripes, ratio 1/2 of 9 blocks -> 4
    # pruned; weights built so the 4 smallest are the whole first column stripe and one more
    wb = np.ones((256, 45), np.float32)
    wb[:, :15] = 0.01
    wb[:128, 15:30] = 0.1
    gb = import_model(gemm(wb))
    assert map_graph(gb, rram).arrays == 2 * 3
    blk, _ = run_pipeline(gb, "prune{ratio=0.5,granularity=block}", target=rram)
    assert int((~blk.matrix_ops[0].compression.mask).sum()) == 128 * 15 * 3
    assert map_graph(blk, rram).arrays == 2 * 2  # 30 columns x 8 slices = 240 -> 2 tiles
    # on the example CNN: column and block pruning map onto fewer arrays
    cnn_arrays = map_graph(cnn, rram).arrays
    for text in ("prune{granularity=column}", "prune{granularity=block}"):
        assert map_graph(run_pipeline(cnn, text, target=rram)[0], rram).arrays < cnn_arrays


def test_prune_match_touches_only_matching_layers(cnn, rram):
    g, _ = run_pipeline(cnn, "prune{match=/classifier*,ratio=0.5,granularity=column}",
                        target=rram)
    masked = {op.name: op.compression.mask is not None for op in g.matrix_ops}
    assert masked == {"/features/features.0/Conv": False, "/features/features.3/Conv": False,
                      "/features/features.7/Conv": False, "/classifier/classifier.1/Gemm": True,
                      "/classifier/classifier.3/Gemm": True}
    for op in g.matrix_ops[3:]:
        assert int(op.compression.mask.any(axis=0).sum()) == op.cols - op.cols // 2


# -- fold-bn ------------------------------------------------------------------------------------
def test_fold_bn_folds_a_batchnorm_op_and_is_a_noop_on_imported_graphs(cnn):
    assert FoldBatchNorm()(cnn).ops == cnn.ops
    rng = np.random.default_rng(9)
    g = import_model(gemm(rng.normal(size=(5, 4)).astype(np.float32)))
    consts = {"s": rng.uniform(0.5, 2, 4), "b": rng.normal(size=4), "m": rng.normal(size=4),
              "v": rng.uniform(0.5, 2, 4)}
    consts = {k: v.astype(np.float32) for k, v in consts.items()}
    bn = DigitalOp("bn", "BatchNormalization", ("y", "s", "b", "m", "v"), ("z",),
                   attrs={"epsilon": 1e-5}, constants=consts)
    tensors = dict(g.tensors, z=TensorInfo("z", (1, 4)))
    with_bn = g.replace(ops=g.ops + (bn,), tensors=tensors, outputs=("z",))
    folded, _ = run_pipeline(with_bn, "fold-bn")
    assert [type(o).__name__ for o in folded.ops] == ["MatrixOp"]
    x = rng.normal(size=(1, 5)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(emit(folded)[0], {"x": x}),
                               run_onnx(emit(with_bn)[0], {"x": x}), rtol=1e-5, atol=1e-6)


# -- registry and contract ----------------------------------------------------------------------
def test_third_party_pass_registered_in_python(cnn):
    @register_pass
    @dataclass(frozen=True)
    class Scale(Pass):
        """Multiply every weight by a factor (a third party's pass)."""

        name: ClassVar[str] = "acme.scale"
        factor: float = 2.0
        note: str = "x"

        def apply(self, graph: Graph, ctx: PassContext) -> Graph:
            return graph.with_ops(o.replace(weight=(o.weight * self.factor).astype(np.float32))
                                  if isinstance(o, MatrixOp) else o for o in graph.ops)

    try:
        assert get_pass("acme.scale") is Scale
        g, text = run_pipeline(cnn, 'prune{ratio=0.1},acme.scale{factor=3,note="a b"}')
        assert text == 'prune{ratio=0.1},acme.scale{factor=3.0,note="a b"}'
        assert parse_pipeline(text)[1] == Scale(factor=3.0, note="a b")
        pruned = run_pipeline(cnn, "prune{ratio=0.1}")[0]
        np.testing.assert_allclose(g.matrix_ops[0].weight, pruned.matrix_ops[0].weight * 3)
        with pytest.raises(PassError, match=r"known passes: acme.scale, fold-bn, prune"):
            parse_pipeline("nope")
    finally:
        unregister_pass("acme.scale")
    assert "acme.scale" not in registered_passes()


def test_third_party_pass_from_an_entry_point(monkeypatch, cnn):
    mod = types.ModuleType("acme_passes")

    @dataclass(frozen=True)
    class Identity(Pass):
        """Change nothing (a plugin)."""

        name: ClassVar[str] = "acme-identity"

        def apply(self, graph: Graph, ctx: PassContext) -> Graph:
            return graph

    mod.Identity = Identity
    monkeypatch.setitem(sys.modules, "acme_passes", mod)
    eps = [metadata.EntryPoint("acme-identity", "acme_passes:Identity", "imccompile.passes"),
           metadata.EntryPoint("acme-broken", "acme_passes:Missing", "imccompile.passes")]
    monkeypatch.setattr(base.metadata, "entry_points",
                        lambda group: eps if group == "imccompile.passes" else [])
    monkeypatch.setattr(base, "_entry_points_loaded", False)
    try:
        assert run_pipeline(cnn, "acme-identity,fold-bn")[1] == "acme-identity,fold-bn"
        with pytest.raises(PassError, match=r"unknown pass `acme-broken`; known passes: "
                                            r"acme-identity, .* \(entry point acme-broken = "
                                            r"'acme_passes:Missing' \(imccompile.passes\) failed "
                                            r"to load: AttributeError"):
            parse_pipeline("acme-broken")
    finally:
        unregister_pass("acme-identity")
        base._ENTRY_POINT_ERRORS.clear()


def test_registration_checks_the_pass_contract():
    class NotADataclass(Pass):  # (a non-frozen dataclass cannot derive from Pass at all)
        """Doc."""

        name: ClassVar[str] = "x1"

        def apply(self, graph, ctx):
            return graph

    with pytest.raises(PassError, match=r"must be decorated with @dataclass\(frozen=True\)"):
        register_pass(NotADataclass)
    with pytest.raises(PassError, match=r"is not a subclass of imccompile.passes.Pass"):
        register_pass(int)

    @dataclass(frozen=True)
    class NoDoc(Pass):
        name: ClassVar[str] = "x2"

        def apply(self, graph, ctx):
            return graph

    with pytest.raises(PassError, match=r"needs a docstring"):
        register_pass(NoDoc)

    @dataclass(frozen=True)
    class BadName(Pass):
        """Doc."""

        name: ClassVar[str] = "has space"

        def apply(self, graph, ctx):
            return graph

    with pytest.raises(PassError, match=r"needs a class attribute `name`"):
        register_pass(BadName)

    @dataclass(frozen=True)
    class BadOption(Pass):
        """Doc."""

        name: ClassVar[str] = "x3"
        sizes: list = dataclasses.field(default_factory=list)

        def apply(self, graph, ctx):
            return graph

    with pytest.raises(PassError, match=r"option 'sizes' has type .*one type of int, float"):
        register_pass(BadOption)

    Local = int  # a type the module's globals do not have

    @dataclass(frozen=True)
    class LocalType(Pass):
        """Doc."""

        name: ClassVar[str] = "x4"
        size: Local = 1

        def apply(self, graph, ctx):
            return graph

    with pytest.raises(PassError, match=r"LocalType: cannot resolve its option annotations "
                                        r"\(NameError"):
        register_pass(LocalType)

    @dataclass(frozen=True)
    class Clash(Pass):
        """Doc."""

        name: ClassVar[str] = "prune"

        def apply(self, graph, ctx):
            return graph

    with pytest.raises(PassError, match=r"pass name `prune` is taken by imccompile.passes.prune"):
        register_pass(Clash)
    assert get_pass("prune") is Prune


def test_search_spaces(rram):
    assert Quantize.search_space(rram) == {"weight_bits": [4, 6, 8],
                                           "act_bits": [4, 6, 8, 12, 16]}
    assert Quantize.search_space(None) == {"weight_bits": (1, 8), "act_bits": (1, 16)}
    assert Prune.search_space(rram) == {"ratio": (0.0, 0.9),
                                        "granularity": ["element", "row", "column", "block"]}
    assert FoldBatchNorm.search_space(rram) == {}


BUILTIN = ["fold-bn", "prune", "quantize"]


@pytest.mark.parametrize("name", BUILTIN)
def test_every_pass_keeps_the_contract(name, cnn, rram, cnn_data):
    """Every built-in pass: documented, default-constructible, round-trips, applies to the
    example CNN without touching its input, leaves a valid graph, and every value of its
    search space is a valid option."""
    cls = get_pass(name)
    assert cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "(")
    p = cls()
    assert parse_pipeline(p.text()) == (p,)
    snapshot = [(op.weight.copy(), op.compression) for op in cnn.matrix_ops]
    out = p(cnn, PassContext(target=rram, activation_stats=None))
    assert graph_problems(out, cnn) == []
    assert all(np.array_equal(w, op.weight) and c is op.compression
               for (w, c), op in zip(snapshot, cnn.matrix_ops, strict=True))
    space = cls.search_space(rram)
    for opt, choices in space.items():
        assert opt in cls.option_types()
        values = choices if isinstance(choices, list) else list(choices)
        for v in values:
            assert getattr(cls(**{opt: v}), opt) == v
