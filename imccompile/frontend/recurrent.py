"""Recurrent layers (ONNX ``LSTM``, ``GRU``, ``RNN``) unrolled into standard ops, so their weight
matrices go on crossbars.

Each node, once its sequence length is static (shape inference, ``--input-shape``) and its weights
are constant, becomes per direction:

* one ``MatMul(X, W_d^T)`` over the whole sequence (the input projection does not depend on the
  recurrence: the crossbar holding W reads ``seq_length x batch`` vectors), with the biases that
  simply add (``Wb + Rb``) fused into it;
* per time step ``MatMul(H_{t-1}, R_d^T)`` on one constant per direction (``R_d^T``, and for a GRU
  with ``linear_before_reset=0`` the update/reset part and the hidden part, as the spec's
  ``(r (.) H) Rh^T`` needs), so every step's matrix op has the same ``weight_id`` and the mapper
  places R once and charges each step its reads;
* the gates, clip, peepholes and state updates as digital ops (Slice, Add, Mul, Sigmoid/Tanh/...,
  Where for ``sequence_lens``), and Reshape/Concat to build Y, Y_h, Y_c in the spec's layout.

The step-0 recurrent product is left out when the initial state is absent or a constant of
zeros (it multiplies a known zero vector); every other step reads R. Semantics follow the ONNX
operator spec and onnxruntime (the runtime the accuracy is measured with) where the spec is
silent: activation names are case-insensitive; an activation that takes alpha/beta and gets none
uses onnxruntime's defaults (LeakyRelu 0.01, HardSigmoid 0.2/0.5, Elu 1.0, others 0); ``clip``
bounds every gate's input (after peepholes); ``input_forget`` couples f = 1 - i. With
``sequence_lens``, steps past a sequence's length output zeros and keep the state (the reverse
direction starts at the sequence's own last step), by masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import onnx
from onnx import helper

from imccompile.errors import ModelImportError, UnsupportedOpError
from imccompile.frontend.load import dims_of

RECURRENT = {"LSTM": 4, "GRU": 3, "RNN": 1}  # gates per op
DEFAULT_ACTIVATIONS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"),
                       "RNN": ("Tanh",)}
# activation (lower case) -> (ONNX name, takes alpha, takes beta, default alpha, default beta);
# defaults are onnxruntime's (rnn_helpers.cc), the ONNX spec gives none.
ACTIVATIONS = {
    "relu": ("Relu", False, False, 0.0, 0.0),
    "tanh": ("Tanh", False, False, 0.0, 0.0),
    "sigmoid": ("Sigmoid", False, False, 0.0, 0.0),
    "affine": ("Affine", True, True, 0.0, 0.0),
    "leakyrelu": ("LeakyRelu", True, False, 0.01, 0.0),
    "thresholdedrelu": ("ThresholdedRelu", True, False, 0.0, 0.0),
    "scaledtanh": ("ScaledTanh", True, True, 0.0, 0.0),
    "hardsigmoid": ("HardSigmoid", True, True, 0.2, 0.5),
    "elu": ("Elu", True, False, 1.0, 0.0),
    "softsign": ("Softsign", False, False, 0.0, 0.0),
    "softplus": ("Softplus", False, False, 0.0, 0.0),
}
KNOWN_ATTRS = {
    "LSTM": {"activation_alpha", "activation_beta", "activations", "clip", "direction",
             "hidden_size", "input_forget", "layout"},
    "GRU": {"activation_alpha", "activation_beta", "activations", "clip", "direction",
            "hidden_size", "layout", "linear_before_reset"},
    "RNN": {"activation_alpha", "activation_beta", "activations", "clip", "direction",
            "hidden_size", "layout"},
}
Activation = tuple[str, float, float]  # (ONNX-spec name, alpha, beta)


def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list):
            v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


@dataclass
class _Unroller:
    """Emits the nodes of one recurrent node's unrolled form."""

    node: onnx.NodeProto
    label: str  # the node's name, for messages and as the prefix of every new name
    consts: dict[str, np.ndarray]
    taken: set[str]
    display: str
    dtype: np.dtype
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    _cache: dict[tuple, str] = field(default_factory=dict)

    # -- naming and emission -----------------------------------------------------------------
    def fresh(self, base: str) -> str:
        name, k = f"{self.label}/{base}", 1
        while name in self.taken:
            k += 1
            name = f"{self.label}/{base}_{k}"
        self.taken.add(name)
        return name

    def const(self, base: str, value: np.ndarray, key: tuple | None = None) -> str:
        """A new constant (one name per ``key``: shared by every step that reads it)."""
        if key is not None and key in self._cache:
            return self._cache[key]
        name = self.fresh(base)
        self.consts[name] = np.asarray(value)
        if key is not None:
            self._cache[key] = name
        return name

    def scalar(self, value: float) -> str:
        return self.const("c", np.asarray(value, self.dtype), key=("scalar", float(value)))

    def ints(self, values: list[int]) -> str:
        return self.const("i", np.asarray(values, np.int64), key=("ints", tuple(values)))

    def op(self, op_type: str, inputs: list[str], base: str, out: str | None = None,
           **attrs) -> str:
        out = out or self.fresh(base)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    # -- building blocks ---------------------------------------------------------------------
    def slice_last(self, x: str, lo: int, hi: int, base: str) -> str:
        if x in self.consts:  # a step-0 product of a constant initial state
            return self.const(base, np.ascontiguousarray(self.consts[x][..., lo:hi]))
        return self.op("Slice", [x, self.ints([lo]), self.ints([hi]), self.ints([-1])], base)

    def activation(self, x: str, act: Activation, base: str) -> str:
        name, alpha, beta = act
        if name == "Affine":
            return self.op("Add", [self.op("Mul", [x, self.scalar(alpha)], base + "_scale"),
                                   self.scalar(beta)], base)
        if name == "ScaledTanh":
            inner = self.op("Mul", [x, self.scalar(beta)], base + "_scale")
            return self.op("Mul", [self.op("Tanh", [inner], base + "_tanh"), self.scalar(alpha)],
                           base)
        attrs: dict = {}
        if name in ("LeakyRelu", "ThresholdedRelu", "Elu"):
            attrs["alpha"] = alpha
        elif name == "HardSigmoid":
            attrs.update(alpha=alpha, beta=beta)
        return self.op(name, [x], base, **attrs)

    def gate(self, x: str, act: Activation, clip: float | None, base: str) -> str:
        if clip is not None:
            x = self.op("Clip", [x, self.scalar(-clip), self.scalar(clip)], base + "_clip")
        return self.activation(x, act, base)

    def product(self, h: str, w: str, base: str) -> str:
        """``h @ w`` on a crossbar; a constant ``h`` (a given initial state) makes it a constant
        computed here, as no crossbar read is needed for it."""
        if h in self.consts:
            return self.const(base, np.asarray(self.consts[h] @ self.consts[w], self.dtype))
        return self.op("MatMul", [h, w], base)

    def add(self, a: str | None, b: str, base: str) -> str:
        return b if a is None else self.op("Add", [a, b], base)

    def keep(self, mask: str | None, new: str, prev: str | None, base: str) -> str:
        """The state after a step: new where the sequence goes on, else the previous state."""
        if mask is None:
            return new
        return self.op("Where", [mask, new, prev if prev is not None else self.scalar(0.0)], base)

    def fail(self, what: str) -> UnsupportedOpError:
        return UnsupportedOpError(
            f"{self.display}: node {self.label!r} ({self.node.op_type}): {what}")


def _activations(u: _Unroller, attrs: dict, dirs: int) -> list[list[Activation]]:
    op = u.node.op_type
    per = len(DEFAULT_ACTIVATIONS[op])
    names = list(attrs.get("activations") or [])
    if not names:
        names = list(DEFAULT_ACTIVATIONS[op]) * dirs
    if len(names) != per * dirs:
        raise u.fail(f"attribute 'activations' lists {len(names)} functions {names}; expected "
                     f"{per * dirs} ({per} per direction, {dirs} direction(s))")
    alphas = list(attrs.get("activation_alpha") or [])
    betas = list(attrs.get("activation_beta") or [])
    out: list[Activation] = []
    for n in names:
        spec = ACTIVATIONS.get(str(n).lower())
        if spec is None:
            raise u.fail(f"attribute 'activations' names {n!r}; supported: "
                         + ", ".join(s[0] for s in ACTIVATIONS.values()))
        onnx_name, takes_a, takes_b, da, db = spec
        alpha = float(alphas.pop(0)) if takes_a and alphas else da
        beta = float(betas.pop(0)) if takes_b and betas else db
        out.append((onnx_name, alpha, beta))
    return [out[d * per:(d + 1) * per] for d in range(dirs)]


def _constant(u: _Unroller, idx: int, what: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """Input ``idx`` as a constant array of ``shape`` (None when absent); refused when it is
    computed from the inputs."""
    node = u.node
    if len(node.input) <= idx or not node.input[idx]:
        return None
    arr = u.consts.get(node.input[idx])
    if arr is None:
        raise u.fail(f"input {what} {node.input[idx]!r} is not a constant; only constant "
                     f"weights and biases go on crossbars (export the layer with its weights "
                     "as initializers)")
    if tuple(arr.shape) != shape:
        raise ModelImportError(f"{u.display}: node {u.label!r} ({node.op_type}): {what} "
                               f"{node.input[idx]!r} has shape {list(arr.shape)}; expected "
                               f"{list(shape)}")
    return np.asarray(arr, u.dtype)


def _state(u: _Unroller, idx: int, what: str, d: int, layout: int, shape_bh: tuple[int, int]
           ) -> str | None:
    """Direction ``d``'s initial state [B, H] as a tensor name; None when absent or all zeros."""
    node = u.node
    if len(node.input) <= idx or not node.input[idx]:
        return None
    src = node.input[idx]
    arr = u.consts.get(src)
    if arr is not None:
        arr = np.asarray(arr, u.dtype)
        part = arr[d] if layout == 0 else arr[:, d]
        if tuple(part.shape) != shape_bh:
            raise ModelImportError(
                f"{u.display}: node {u.label!r} ({node.op_type}): {what} {src!r} has shape "
                f"{list(arr.shape)}; expected {list(shape_bh)} per direction")
        if not part.any():
            return None
        return u.const(f"{what}{d}", np.ascontiguousarray(part))
    return u.op("Gather", [src, u.const(f"dir{d}", np.asarray(d, np.int64))], f"{what}{d}",
                axis=layout)


def _masks(u: _Unroller, seq: int, batch: int, infos: Mapping[str, onnx.ValueInfoProto]
           ) -> list[str | None]:
    """Per step, a bool [B, 1] mask 'the sequence is still running' (None: no masking)."""
    node = u.node
    if len(node.input) <= 4 or not node.input[4]:
        return [None] * seq
    src = node.input[4]
    lens = u.consts.get(src)
    if lens is not None:
        lens = np.asarray(lens).reshape(-1)
        if lens.shape != (batch,) or (lens < 1).any() or (lens > seq).any():
            raise ModelImportError(
                f"{u.display}: node {u.label!r} ({node.op_type}): sequence_lens {src!r} is "
                f"{lens.tolist()}; expected {batch} lengths in 1..{seq}")
        if (lens == seq).all():
            return [None] * seq
        return [None if (lens > t).all() else
                u.const(f"mask{t}", (t < lens).reshape(batch, 1)) for t in range(seq)]
    vi = infos.get(src)
    et = vi.type.tensor_type.elem_type if vi is not None and vi.type.HasField("tensor_type") \
        else onnx.TensorProto.INT32
    dt = helper.tensor_dtype_to_np_dtype(et or onnx.TensorProto.INT32)
    shape = u.ints([batch, 1])
    return [u.op("Reshape", [u.op("Less", [u.const(f"t{t}", np.asarray(t, dt)), src],
                                  f"running{t}"), shape], f"mask{t}") for t in range(seq)]


def _unroll(node: onnx.NodeProto, label: str, consts: dict[str, np.ndarray], taken: set[str],
            infos: Mapping[str, onnx.ValueInfoProto], display: str) -> list[onnx.NodeProto]:
    op = node.op_type
    attrs = _attrs(node)
    x = node.input[0]
    vi = infos.get(x)
    dims = dims_of(vi) if vi is not None else None
    where = f"{display}: node {label!r} ({op})"
    if dims is None or len(dims) != 3 or not all(isinstance(d, int) for d in dims):
        raise ModelImportError(
            f"{where}: the shape of its input X {x!r} is {'unknown' if dims is None else list(dims)}"
            "; unrolling the recurrence needs a static [seq_length, batch, input_size] (give "
            "static input dims with --input-shape)")
    et = vi.type.tensor_type.elem_type if vi is not None else 0
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(et)) if et else np.dtype(np.float32)
    u = _Unroller(node, label, consts, taken, display, dtype)
    for name in attrs:
        if name not in KNOWN_ATTRS[op]:
            raise u.fail(f"attribute {name!r} is not one of the {op} attributes "
                         f"({', '.join(sorted(KNOWN_ATTRS[op]))})")
    if dtype != np.float32:
        raise u.fail(f"X has type {dtype}; only float32 recurrent layers are supported")
    layout = int(attrs.get("layout", 0))
    if layout not in (0, 1):
        raise u.fail(f"attribute 'layout' is {layout}; supported: 0 or 1")
    direction = str(attrs.get("direction", "forward"))
    dir_list = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}.get(direction)
    if dir_list is None:
        raise u.fail(f"attribute 'direction' is {direction!r}; supported: forward, reverse, "
                     "bidirectional")
    lbr = int(attrs.get("linear_before_reset", 0))
    if lbr not in (0, 1):
        raise u.fail(f"attribute 'linear_before_reset' is {lbr}; supported: 0 or 1")
    input_forget = int(attrs.get("input_forget", 0))
    if input_forget not in (0, 1):
        raise u.fail(f"attribute 'input_forget' is {input_forget}; supported: 0 or 1")
    clip = attrs.get("clip")
    clip = float(clip) if clip is not None else None
    if clip is not None and not clip > 0:
        raise u.fail(f"attribute 'clip' is {clip}; expected a positive bound")
    static = [d for d in dims if isinstance(d, int)]
    seq, batch, isz = (static[0], static[1], static[2]) if layout == 0 else \
        (static[1], static[0], static[2])
    dirs, gates = len(dir_list), RECURRENT[op]
    w_arr = consts.get(node.input[1])
    r_arr = consts.get(node.input[2])
    if w_arr is None or r_arr is None:
        which = "W" if w_arr is None else "R"
        raise u.fail(f"input {which} {node.input[1 if w_arr is None else 2]!r} is not a "
                     "constant; only constant weights go on crossbars (export the layer with "
                     "its weights as initializers)")
    if r_arr.ndim != 3:
        raise ModelImportError(f"{where}: R {node.input[2]!r} has shape {list(r_arr.shape)}; "
                               "expected [num_directions, gates x hidden_size, hidden_size]")
    hid = int(r_arr.shape[-1])
    if int(attrs.get("hidden_size", hid)) != hid:
        raise ModelImportError(f"{where}: hidden_size is {attrs['hidden_size']} but R "
                               f"{node.input[2]!r} has shape {list(r_arr.shape)}")
    gh = gates * hid
    w = _constant(u, 1, "W", (dirs, gh, isz))
    r = _constant(u, 2, "R", (dirs, gh, hid))
    b = _constant(u, 3, "B", (dirs, 2 * gh))
    p = _constant(u, 7, "P", (dirs, 3 * hid)) if op == "LSTM" else None
    assert w is not None and r is not None
    acts = _activations(u, attrs, dirs)
    masks = _masks(u, seq, batch, infos)
    bh = (batch, hid)
    outs = list(node.output) + [""] * 3
    y_steps: list[list[str]] = []
    finals_h: list[str] = []
    finals_c: list[str] = []
    for d, reverse in enumerate(dir_list):
        wb = b[d, :gh] if b is not None else np.zeros(gh, dtype)
        rb = b[d, gh:] if b is not None else np.zeros(gh, dtype)
        x_bias = wb + rb
        h_bias = None  # GRU linear_before_reset: Rbh stays inside the reset product
        if op == "GRU" and lbr:
            x_bias = np.concatenate([wb[:2 * hid] + rb[:2 * hid], wb[2 * hid:]])
            h_bias = rb[2 * hid:]
        wt = u.const(f"W{d}_T", np.ascontiguousarray(w[d].T))
        xw = u.op("MatMul", [x, wt], f"d{d}/XW")
        if x_bias.any():
            xw = u.op("Add", [xw, u.const(f"Wb{d}", x_bias)], f"d{d}/XW_b")
        if op == "GRU" and not lbr:
            r_zr = u.const(f"R{d}_zr_T", np.ascontiguousarray(r[d, :2 * hid].T))
            r_h = u.const(f"R{d}_h_T", np.ascontiguousarray(r[d, 2 * hid:].T))
        else:
            rt = u.const(f"R{d}_T", np.ascontiguousarray(r[d].T))
        pi: str | None = None
        po: str | None = None
        pf: str | None = None
        if op == "LSTM" and p is not None and p[d].any():
            pi, po, pf = (u.const(f"P{d}_{g}", p[d, k * hid:(k + 1) * hid])
                          for k, g in enumerate("iof"))
        h = _state(u, 5, "initial_h", d, layout, bh)
        c = _state(u, 6, "initial_c", d, layout, bh) if op == "LSTM" else None
        steps: dict[int, str] = {}
        f_act = acts[d][0]
        for t in (range(seq - 1, -1, -1) if reverse else range(seq)):
            s = f"d{d}/t{t}/"
            xt = u.op("Gather", [xw, u.const(f"t{t}", np.asarray(t, np.int64))], s + "x",
                      axis=layout)
            m = masks[t]
            if op == "LSTM":
                pre = u.add(xt, u.product(h, rt, s + "HR"), s + "gates") \
                    if h is not None else xt
                gi, go, gf, gc = (u.slice_last(pre, k * hid, (k + 1) * hid, s + g)
                                  for k, g in enumerate("iofc"))
                if pi is not None and c is not None:
                    gi = u.op("Add", [gi, u.op("Mul", [c, pi], s + "Pi_c")], s + "i_peep")
                i_g = u.gate(gi, f_act, clip, s + "i_act")
                if input_forget:
                    f_g = u.op("Sub", [u.scalar(1.0), i_g], s + "f_act")
                else:
                    if pf is not None and c is not None:
                        gf = u.op("Add", [gf, u.op("Mul", [c, pf], s + "Pf_c")], s + "f_peep")
                    f_g = u.gate(gf, f_act, clip, s + "f_act")
                c_g = u.gate(gc, acts[d][1], clip, s + "c_act")
                ic = u.op("Mul", [i_g, c_g], s + "i_c")
                c_new = u.op("Add", [u.op("Mul", [f_g, c], s + "f_C"), ic], s + "C") \
                    if c is not None else ic
                if po is not None:
                    go = u.op("Add", [go, u.op("Mul", [c_new, po], s + "Po_c")], s + "o_peep")
                o_g = u.gate(go, f_act, clip, s + "o_act")
                h_new = u.op("Mul", [o_g, u.activation(c_new, acts[d][2], s + "h_act")], s + "H")
                c = u.keep(m, c_new, c, s + "C_kept")
            elif op == "GRU":
                xzr = u.slice_last(xt, 0, 2 * hid, s + "x_zr")
                xh = u.slice_last(xt, 2 * hid, 3 * hid, s + "x_h")
                if lbr:
                    hr_all = u.product(h, rt, s + "HR") if h is not None else None
                    zr = u.add(xzr, u.slice_last(hr_all, 0, 2 * hid, s + "HR_zr"), s + "zr") \
                        if hr_all is not None else xzr
                else:
                    zr = u.add(xzr, u.product(h, r_zr, s + "HR_zr"), s + "zr") \
                        if h is not None else xzr
                z_g = u.gate(u.slice_last(zr, 0, hid, s + "z"), f_act, clip, s + "z_act")
                r_g = u.gate(u.slice_last(zr, hid, 2 * hid, s + "r"), f_act, clip, s + "r_act")
                if lbr:
                    assert h_bias is not None
                    rh: str | None
                    if hr_all is not None:
                        hh = u.slice_last(hr_all, 2 * hid, 3 * hid, s + "HR_h")
                        if h_bias.any() and hh in consts:
                            hh = u.const(s + "HR_hb", consts[hh] + h_bias)
                        elif h_bias.any():
                            hh = u.op("Add", [hh, u.const(f"Rbh{d}", h_bias, key=("rbh", d))],
                                      s + "HR_hb")
                        rh = u.op("Mul", [r_g, hh], s + "r_HR")
                    elif h_bias.any():
                        rh = u.op("Mul", [r_g, u.const(f"Rbh{d}", h_bias, key=("rbh", d))],
                                  s + "r_HR")
                    else:
                        rh = None
                else:
                    rh = u.op("MatMul", [u.op("Mul", [r_g, h], s + "r_H"), r_h], s + "rH_R") \
                        if h is not None else None
                hpre = u.add(xh, rh, s + "h_pre") if rh is not None else xh
                h_t = u.gate(hpre, acts[d][1], clip, s + "h_act")
                one_minus_z = u.op("Sub", [u.scalar(1.0), z_g], s + "one_minus_z")
                h_new = u.op("Mul", [one_minus_z, h_t], s + "h_mix")
                if h is not None:
                    h_new = u.op("Add", [h_new, u.op("Mul", [z_g, h], s + "zH")], s + "H")
            else:  # RNN
                pre = u.add(xt, u.product(h, rt, s + "HR"), s + "pre") \
                    if h is not None else xt
                h_new = u.gate(pre, f_act, clip, s + "H")
            steps[t] = u.keep(m, h_new, None, s + "Y")
            h = steps[t] if h is None else u.keep(m, h_new, h, s + "H_kept")
        y_steps.append([steps[t] for t in range(seq)])
        assert h is not None
        finals_h.append(h)
        if c is not None:
            finals_c.append(c)
    if outs[0]:
        per_step = [1, 1, batch, hid] if layout == 0 else [batch, 1, 1, hid]
        shape = u.ints(per_step)
        parts = [u.op("Concat", [u.op("Reshape", [y, shape], f"d{d}/Y{t}")
                                 for t, y in enumerate(ys)], f"d{d}/Y", axis=layout)
                 for d, ys in enumerate(y_steps)]
        u.op("Concat", parts, "Y", out=outs[0], axis=1 if layout == 0 else 2)
    for out, finals, what in ((outs[1], finals_h, "Y_h"), (outs[2], finals_c, "Y_c")):
        if not out:
            continue
        shape = u.ints([1, batch, hid] if layout == 0 else [batch, 1, hid])
        u.op("Concat", [u.op("Reshape", [f, shape], f"d{d}/{what}")
                        for d, f in enumerate(finals)], what, out=out, axis=layout)
    return u.nodes


def unroll_recurrent(nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray],
                     infos: Mapping[str, onnx.ValueInfoProto], display: str
                     ) -> tuple[list[onnx.NodeProto], bool]:
    """Replace every default-domain LSTM / GRU / RNN node by its unrolled form; returns the
    nodes and whether any was replaced. New constants (per-direction W^T, R^T, biases, masks)
    are added to ``consts``.

    Raises:
        UnsupportedOpError: a recurrent node with non-constant weights or an attribute value
            outside what the ONNX spec and onnxruntime define.
        ModelImportError: a sequence of unknown length, inputs of the wrong shape.
    """
    if not any(n.op_type in RECURRENT and n.domain in ("", "ai.onnx") for n in nodes):
        return nodes, False
    taken = set(consts) | {t for n in nodes for t in list(n.input) + list(n.output)} \
        | set(infos) | {n.name for n in nodes}
    out: list[onnx.NodeProto] = []
    for k, node in enumerate(nodes):
        if node.op_type not in RECURRENT or node.domain not in ("", "ai.onnx"):
            out.append(node)
            continue
        label = node.name or f"{node.op_type}_{k}"
        out.extend(_unroll(node, label, consts, taken, infos, display))
    return out, True
