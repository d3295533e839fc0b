"""Recurrent layers (ONNX LSTM, GRU, RNN) on crossbars (issue 15, item 4).

The frontend unrolls each recurrent node (imccompile/frontend/recurrent.py). The references here
are independent of it: onnxruntime running the ORIGINAL model with the LSTM/GRU/RNN node
(onnxruntime has no layout=1 kernel, so a layout-1 node is checked against Transpose -> the same
node with layout 0 -> Transpose, still onnxruntime's kernel), hand counts of matrix ops, MACs and
weights from the spec's shapes, and the arrays the mapper places for a hand-built model that
reads each W and R tensor once.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_builders as ob  # noqa: E402

import imccompile  # noqa: E402
from imccompile.cli import main as cli_main  # noqa: E402
from imccompile.emit import emit  # noqa: E402
from imccompile.errors import ModelImportError, UnsupportedOpError  # noqa: E402
from imccompile.frontend import import_model  # noqa: E402
from imccompile.simulate import SimOptions  # noqa: E402

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
IDEAL = SimOptions(noise=False, adc=False, dac=False, weights=False)
TOL = 1e-4


def recurrent_model(op: str, T: int = 5, B: int = 2, I: int = 3, H: int = 4,
                    direction: str = "forward", layout: int = 0, init_h: str = "none",
                    init_c: bool = False, seq_lens: list[int] | None = None,
                    seq_input: bool = False, peep: bool = False, bias: bool = True,
                    seed: int = 1, **attrs) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """One LSTM/GRU/RNN node with random weights, and random feeds for its inputs.

    init_h: "none", "const" (an initializer) or "input" (a graph input); init_c: LSTM's initial
    cell state as an initializer; seq_lens: sequence_lens as an initializer, or a graph input
    with seq_input.
    """
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    inits = [ob.init("W", 0.5 * ob.rand(rng, D, G * H, I)),
             ob.init("R", 0.5 * ob.rand(rng, D, G * H, H))]
    ins = ["X", "W", "R", "", "", "", ""]
    if bias:
        ins[3] = "B"
        inits.append(ob.init("B", 0.5 * ob.rand(rng, D, 2 * G * H)))
    xs = [T, B, I] if layout == 0 else [B, T, I]
    inputs = [ob.vi("X", xs)]
    feeds = {"X": ob.rand(rng, *xs)}
    hs = [D, B, H] if layout == 0 else [B, D, H]
    if seq_lens is not None:
        ins[4] = "L"
        lens = np.array(seq_lens, np.int32)
        if seq_input:
            inputs.append(ob.vi("L", [B], TensorProto.INT32))
            feeds["L"] = lens
        else:
            inits.append(ob.init("L", lens))
    if init_h != "none":
        ins[5] = "h0"
        h0 = ob.rand(rng, *hs)
        if init_h == "input":
            inputs.append(ob.vi("h0", hs))
            feeds["h0"] = h0
        else:
            inits.append(ob.init("h0", h0))
    if op == "LSTM":
        if init_c:
            ins[6] = "c0"
            inits.append(ob.init("c0", ob.rand(rng, *hs)))
        if peep:
            ins.append("P")
            inits.append(ob.init("P", ob.rand(rng, D, 3 * H)))
    else:
        ins = ins[:6]
    while ins[-1] == "":
        ins.pop()
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    kw = dict(hidden_size=H, direction=direction, **attrs)
    if layout:
        kw["layout"] = layout
    node = helper.make_node(op, ins, outs, name="rnn", **kw)
    return ob.model([node], inputs, [ob.vi(o, None) for o in outs], inits), feeds


def layout0_reference(m: onnx.ModelProto) -> onnx.ModelProto:
    """A layout-1 model as Transpose -> the node with layout 0 -> Transpose (onnxruntime's CPU
    kernels refuse layout 1)."""
    node = m.graph.node[0]
    ins = list(node.input)
    nodes = [helper.make_node("Transpose", [ins[0]], ["X_t"], perm=[1, 0, 2])]
    ins[0] = "X_t"
    for k in (5, 6):
        if len(ins) > k and ins[k]:
            nodes.append(helper.make_node("Transpose", [ins[k]], [ins[k] + "_t"], perm=[1, 0, 2]))
            ins[k] += "_t"
    outs = [o + "_t" for o in node.output]
    inner = helper.make_node(node.op_type, ins, outs, name="rnn")
    inner.attribute.extend(a for a in node.attribute if a.name != "layout")
    nodes.append(inner)
    nodes.append(helper.make_node("Transpose", [outs[0]], [node.output[0]], perm=[2, 0, 1, 3]))
    for o, t in zip(node.output[1:], outs[1:]):
        nodes.append(helper.make_node("Transpose", [t], [o], perm=[1, 0, 2]))
    return ob.model(nodes, list(m.graph.input), [ob.vi(o.name, None) for o in m.graph.output],
                    list(m.graph.initializer))


def reference(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    layout = next((a.i for a in m.graph.node[0].attribute if a.name == "layout"), 0)
    return ob.run(layout0_reference(m) if layout else m, feeds)


def assert_matches(m: onnx.ModelProto, feeds: dict[str, np.ndarray]):
    """The imported IR, emitted as float ONNX, equals onnxruntime on the original (every output)."""
    ref = reference(m, feeds)
    g = import_model(m)
    ours = ob.run(emit(g)[0], feeds)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)
    return g


VARIANTS = {
    "plain": {},
    "initial_states_layout1": dict(init_h="const", init_c=True, layout=1),
    "seq_lens_const": dict(seq_lens=[5, 3]),
    "seq_lens_and_h0_inputs": dict(seq_lens=[2, 5], seq_input=True, init_h="input"),
    "seq_lens_layout1": dict(seq_lens=[4, 1], seq_input=True, init_h="input", layout=1),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_unrolled_matches_onnxruntime(op: str, direction: str, variant: str) -> None:
    m, feeds = recurrent_model(op, direction=direction, **VARIANTS[variant])
    assert_matches(m, feeds)


@pytest.mark.parametrize("kw", [
    dict(op="LSTM", peep=True, init_c=True, clip=0.7),
    dict(op="LSTM", peep=True, input_forget=1, direction="bidirectional"),
    dict(op="LSTM", peep=True, init_h="input", seq_lens=[3, 5], seq_input=True),
    dict(op="LSTM", bias=False),
    dict(op="GRU", linear_before_reset=0, clip=0.5, init_h="const"),
    dict(op="GRU", linear_before_reset=1, direction="bidirectional", init_h="const"),
    dict(op="GRU", linear_before_reset=1, clip=0.5, seq_lens=[5, 2]),
    dict(op="GRU", linear_before_reset=1, bias=False),
    dict(op="RNN", clip=0.3, direction="reverse"),
    dict(op="LSTM", activations=["HardSigmoid", "LeakyRelu", "Elu"],
         activation_alpha=[0.3, 0.2, 0.7], activation_beta=[0.4]),
    dict(op="GRU", activations=["hardsigmoid", "softsign", "relu", "tanh"],
         direction="bidirectional", activation_alpha=[0.3], activation_beta=[0.4]),
], ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_attributes_match_onnxruntime(kw: dict) -> None:
    kw = dict(kw)
    m, feeds = recurrent_model(kw.pop("op"), **kw)
    assert_matches(m, feeds)


@pytest.mark.parametrize("act,alpha,beta", [
    ("Tanh", None, None), ("Sigmoid", None, None), ("Relu", None, None),
    ("Affine", 0.5, 0.1), ("Affine", None, None), ("LeakyRelu", 0.2, None),
    ("LeakyRelu", None, None), ("ThresholdedRelu", 0.1, None), ("ScaledTanh", 0.5, 1.5),
    ("HardSigmoid", 0.3, 0.6), ("HardSigmoid", None, None), ("Elu", 0.5, None),
    ("Softsign", None, None), ("Softplus", None, None)])
def test_every_activation_matches_onnxruntime(act: str, alpha, beta) -> None:
    kw: dict = dict(activations=[act])
    if alpha is not None:
        kw["activation_alpha"] = [alpha]
    if beta is not None:
        kw["activation_beta"] = [beta]
    m, feeds = recurrent_model("RNN", **kw)
    assert_matches(m, feeds)


# -- counts by hand ------------------------------------------------------------------------------
def single_use_arrays(mats: list[np.ndarray]) -> int:
    """Arrays pcm places for a hand-built model reading each (K, N) matrix once."""
    nodes, inputs, outputs, inits = [], [], [], []
    for k, w in enumerate(mats):
        nodes.append(helper.make_node("MatMul", [f"x{k}", f"w{k}"], [f"y{k}"], name=f"mm{k}"))
        inputs.append(ob.vi(f"x{k}", [1, w.shape[0]]))
        outputs.append(ob.vi(f"y{k}", [1, w.shape[1]]))
        inits.append(ob.init(f"w{k}", w))
    return imccompile.compile(ob.model(nodes, inputs, outputs, inits), "pcm").mapping.arrays


def recurrent_matrices(op: str, m: onnx.ModelProto, lbr: int = 0) -> list[np.ndarray]:
    """W^T and R^T per direction, straight from the initializers (GRU with
    linear_before_reset=0: R's update/reset rows and its hidden rows are two products)."""
    arrs = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    out = []
    for d in range(arrs["W"].shape[0]):
        out.append(arrs["W"][d].T)
        r = arrs["R"][d]
        h = r.shape[1]
        out += [r[:2 * h].T, r[2 * h:].T] if op == "GRU" and not lbr else [r.T]
    return out


@pytest.mark.parametrize("op,direction,init_h", [
    ("LSTM", "bidirectional", "input"), ("LSTM", "forward", "none"),
    ("GRU", "reverse", "input"), ("GRU", "bidirectional", "none"),
    ("RNN", "bidirectional", "const")])
def test_counts_by_hand(op: str, direction: str, init_h: str) -> None:
    T, B, I, H = 4, 2, 20, 70  # 4H = 280 columns: LSTM's W^T and R^T take 2 pcm arrays each
    m, feeds = recurrent_model(op, T=T, B=B, I=I, H=H, direction=direction, init_h=init_h,
                               init_c=op == "LSTM" and init_h != "none")
    g = assert_matches(m, feeds)
    D, G = (2 if direction == "bidirectional" else 1), GATES[op]
    # step 0 reads R only when the initial state is an input (a zero or constant state needs
    # no crossbar read: its product is zero or a constant computed at import)
    r_steps = T if init_h == "input" else T - 1
    r_ops = 2 if op == "GRU" else 1  # GRU (lbr=0): R_zr on H, R_h on r (.) H
    assert len(g.matrix_ops) == D * (1 + r_ops * r_steps)
    assert g.total_macs == D * (T * B * G * H * I + r_steps * B * G * H * H)
    assert len({o.weight_id for o in g.matrix_ops}) == D * (1 + r_ops)
    # every step's product reads the one R^T (and W^T) per direction: placed once
    mats = recurrent_matrices(op, m)
    res = imccompile.compile(m, "pcm")
    assert res.mapping.arrays == single_use_arrays(mats)
    # ... and emitted once in the simulation model, not once per step
    shapes = {w.shape for w in mats}
    emitted = [tuple(i.dims) for i in emit(g)[0].graph.initializer if tuple(i.dims) in shapes]
    assert sorted(emitted) == sorted(w.shape for w in mats)
    owners = [lm for lm in res.mapping.layers if lm.shares is None]
    assert len(owners) == D * (1 + r_ops)
    assert sum(lm.weights for lm in owners) == D * (G * H * I + G * H * H)
    assert sum(lm.macs for lm in res.mapping.layers) == g.total_macs


# -- accuracy under ideal hardware ---------------------------------------------------------------
def _stack(feeds: dict[str, np.ndarray], n: int, seed: int = 5) -> dict[str, np.ndarray]:
    """n random samples per input (sequence lengths drawn in 1..T)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in feeds.items():
        if v.dtype.kind == "i":
            out[k] = rng.integers(1, 6, size=(n, *v.shape)).astype(v.dtype)
        else:
            out[k] = rng.standard_normal((n, *v.shape)).astype(v.dtype)
    return out


@pytest.mark.parametrize("op,kw", [
    ("LSTM", dict(direction="bidirectional", seq_lens=[2, 5], seq_input=True, init_h="input")),
    ("GRU", dict(linear_before_reset=1, layout=1, direction="reverse")),
    ("GRU", dict(direction="bidirectional", seq_lens=[5, 3])),
    ("RNN", dict(direction="bidirectional", init_h="const", layout=1))])
def test_ideal_simulation_scores_perfect(op: str, kw: dict) -> None:
    m, feeds = recurrent_model(op, **kw)
    res = imccompile.compile(m, "pcm", data=_stack(feeds, 4), sim_options=IDEAL)
    assert res.accuracy is not None
    # a sequence output is scored by cosine: 1 up to float rounding
    assert res.accuracy["mean"] == pytest.approx(1.0, abs=1e-9)
    assert res.accuracy["relative_error"] < 1e-5


# -- refusals --------------------------------------------------------------------------------------
def _with_attr(m: onnx.ModelProto, **attrs) -> onnx.ModelProto:
    node = m.graph.node[0]
    for k, v in attrs.items():
        for a in list(node.attribute):
            if a.name == k:
                node.attribute.remove(a)
        node.attribute.append(helper.make_attribute(k, v))
    return m


@pytest.mark.parametrize("op,attrs,match", [
    ("RNN", dict(activations=["Gelu"]), r"'rnn' \(RNN\): attribute 'activations' names 'Gelu'; "
                                        r"supported: Relu, Tanh, Sigmoid, Affine"),
    ("LSTM", dict(activations=["Sigmoid", "Tanh"]),
     r"'rnn' \(LSTM\): attribute 'activations' lists 2 functions .*expected 3"),
    ("LSTM", dict(direction="sideways"), r"'rnn' \(LSTM\): attribute 'direction' is 'sideways'"
                                         r"; supported: forward, reverse, bidirectional"),
    ("GRU", dict(linear_before_reset=2), r"'rnn' \(GRU\): attribute 'linear_before_reset' is 2"
                                         r"; supported: 0 or 1"),
    ("LSTM", dict(input_forget=3), r"attribute 'input_forget' is 3; supported: 0 or 1"),
    ("RNN", dict(layout=2), r"attribute 'layout' is 2; supported: 0 or 1"),
    ("GRU", dict(clip=-1.0), r"attribute 'clip' is -1.0; expected a positive bound"),
])
def test_unsupported_attribute_values_are_refused(op: str, attrs: dict, match: str) -> None:
    m, _ = recurrent_model(op)
    with pytest.raises(UnsupportedOpError, match=match):
        import_model(_with_attr(m, **attrs))


def test_non_constant_weights_are_refused() -> None:
    m, _ = recurrent_model("LSTM")
    w = next(i for i in m.graph.initializer if i.name == "W")
    m.graph.initializer.remove(w)
    m.graph.input.append(ob.vi("W", list(w.dims)))
    with pytest.raises(UnsupportedOpError, match=r"'rnn' \(LSTM\): input W 'W' is not a "
                                                 r"constant; only constant weights"):
        import_model(m)


@pytest.mark.parametrize("lens", [[0, 5], [6, 5]])
def test_constant_sequence_lengths_out_of_range_are_refused(lens: list[int]) -> None:
    m, _ = recurrent_model("GRU", seq_lens=lens)
    with pytest.raises(ModelImportError, match=r"'rnn' \(GRU\): sequence_lens 'L' is "
                                               + re.escape(str(lens)) + r"; expected 2 lengths "
                                               r"in 1\.\.5"):
        import_model(m)


def test_double_precision_is_refused() -> None:
    rng = np.random.default_rng(0)
    node = helper.make_node("RNN", ["X", "W", "R"], ["Y"], name="rnn", hidden_size=2)
    m = ob.model([node], [ob.vi("X", [3, 1, 2], TensorProto.DOUBLE)],
                 [ob.vi("Y", None, TensorProto.DOUBLE)],
                 [ob.init("W", rng.standard_normal((1, 2, 2))),
                  ob.init("R", rng.standard_normal((1, 2, 2)))])
    with pytest.raises(UnsupportedOpError, match=r"'rnn' \(RNN\): X has type float64; only "
                                                 r"float32 recurrent layers are supported"):
        import_model(m)


# -- torch exports ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def torch_exports(tmp_path_factory):
    pytest.importorskip("torch")
    import torch_models as tm
    from torch import nn

    class Lstm2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(6, 8, num_layers=2, bidirectional=True, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0]

    class Gru(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(6, 8)

        def forward(self, x):
            return self.rnn(x)[0]

    class Crnn(nn.Module):
        """A text-recognizer shape: conv features over an 8 x 10 image, one column per step."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d((2, 1)),
                nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d((2, 1)))
            self.rnn = nn.LSTM(32, 12, bidirectional=True, batch_first=True)
            self.fc = nn.Linear(24, 10)

        def forward(self, x):
            f = self.conv(x).flatten(1, 2).permute(0, 2, 1)  # (1, T=10, 32)
            return self.fc(self.rnn(f)[0])

    made = {"lstm2": tm._finish(Lstm2(), (1, 7, 6)), "gru": tm._finish(Gru(), (7, 1, 6)),
            "crnn": tm._finish(Crnn(), (1, 1, 8, 10))}
    d = tmp_path_factory.mktemp("recurrent_exports")
    cache: dict = {}

    def get(name: str, dynamo: bool):
        key = (name, dynamo)
        if key not in cache:
            if dynamo:
                pytest.importorskip("onnxscript")
            mod, inputs = made[name]
            path = tm.export(mod, inputs, d / f"{name}_{'dynamo' if dynamo else 'legacy'}.onnx",
                             dynamo=dynamo)
            cache[key] = (mod, inputs[0].numpy(), path)
        return cache[key]
    return get


def _torch_recurrent(mod) -> list[tuple[str, int, list[np.ndarray]]]:
    """Per torch RNN layer and direction: (kind, steps' input size, [W^T, R^T]) from the
    module's own parameters (weight_ih_l{k}[_reverse], weight_hh_l{k}[_reverse]). torch's GRU
    is ONNX's linear_before_reset=1: R is one product on H."""
    from torch import nn
    out = []
    for m in mod.modules():
        if not isinstance(m, (nn.LSTM, nn.GRU)):
            continue
        kind = "LSTM" if isinstance(m, nn.LSTM) else "GRU"
        for layer in range(m.num_layers):
            for sfx in ([""] + (["_reverse"] if m.bidirectional else [])):
                wih = getattr(m, f"weight_ih_l{layer}{sfx}").detach().numpy()
                whh = getattr(m, f"weight_hh_l{layer}{sfx}").detach().numpy()
                out.append((kind, wih.shape[1], [wih.T, whh.T]))
    return out


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("name,steps", [("lstm2", 7), ("gru", 7), ("crnn", 10)])
def test_torch_export_counts_and_ideal(torch_exports, name: str, steps: int,
                                       dynamo: bool) -> None:
    from torch import nn
    mod, x, path = torch_exports(name, dynamo)
    model = onnx.load(str(path))
    assert any(n.op_type in ("LSTM", "GRU") for n in model.graph.node)  # a real recurrent node
    g = import_model(path)
    (ref,) = ob.run(model, {g.inputs[0]: x})
    (ours,) = ob.run(emit(g)[0], {g.inputs[0]: x})
    np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)
    # hand counts: torch starts from a zero state, so step 0 has no recurrent product
    rec = _torch_recurrent(mod)
    others = [m for m in mod.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    r_products = sum(len(mats) - 1 for _, _, mats in rec)
    assert len(g.matrix_ops) == len(others) + len(rec) + r_products * (steps - 1)
    rec_macs = sum(steps * mats[0].size + (steps - 1) * sum(r.size for r in mats[1:])
                   for _, _, mats in rec)  # batch 1
    plain = {n.name for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")}
    other_ops = [o for o in g.matrix_ops if plain & set(o.source)]  # conv, fc
    assert len(other_ops) == len(others)
    assert g.total_macs - sum(o.macs for o in other_ops) == rec_macs
    # W and R placed once: the recurrent arrays equal those of a model reading each once
    res = imccompile.compile(path, "pcm", data={g.inputs[0]: np.random.default_rng(0)
                                                .standard_normal((3, *x.shape))
                                                .astype(np.float32)}, sim_options=IDEAL)
    other_arrays = sum(res.mapping.layer(o.name).placed_arrays for o in other_ops)
    mats = [w for _, _, ws in rec for w in ws]
    assert res.mapping.arrays - other_arrays == single_use_arrays(mats)
    placed = sum(lm.weights for lm in res.mapping.layers if lm.shares is None)
    assert placed == sum(w.size for w in mats) + sum(m.weight.numel() for m in others)
    assert res.accuracy is not None and res.accuracy["mean"] == pytest.approx(1.0, abs=1e-9)


def test_crnn_ideal_through_the_cli(torch_exports, tmp_path: Path, capsys) -> None:
    _, x, path = torch_exports("crnn", False)
    data = tmp_path / "x.npz"
    np.savez(data, input=np.random.default_rng(1).standard_normal((3, *x.shape))
             .astype(np.float32))
    code = cli_main([str(path), "--target", "pcm", "--data", str(data), "--ideal"])
    out = capsys.readouterr().out
    assert code == 0, out
    found = re.search(r"hardware ([0-9.]+) ±", out)
    assert found and float(found.group(1)) == 1.0, out
