"""Fuzzing the CLI: whatever the input, the outcome is exit 0 with a sane report or exit 1 with one
clear ``imccompile: error:`` line — never an internal error (exit 2), a traceback or a hang.

Inputs: random bytes as a model; small onnx.helper graphs (Conv/Gemm/MatMul/Relu/Add chains) and
the example models with mutated attributes and structure; mutated target spec JSON; the accuracy
path (``--data``) on generated models with matching (and with NaN/Inf) data.

Every case runs in-process (``imccompile.cli.main``) under a wall-clock alarm. Hypothesis runs
derandomized (the same examples on every run) and without an example database.
The standalone mutation fuzzer is benchmarks/fuzz_mutate.py.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import signal
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from imccompile import cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CASE_SECONDS = 10  # one case: import + map + cost (+ a few samples of simulation)


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


# ----------------------------------------------------------------------------- running a case


class CaseTimeout(BaseException):
    """Raised by the alarm; a BaseException so that the CLI's ``except Exception`` keeps it."""


@contextlib.contextmanager
def time_limit(seconds: float):
    def fire(signum, frame):
        raise CaseTimeout(f"case did not finish in {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_cli(argv: list[str], seconds: float = CASE_SECONDS) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``imccompile ARGV`` run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with time_limit(seconds), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


NONNEG_EXEMPT = ("target.", "accuracy.")  # spec fields are inputs; accuracy: see below


def report_problems(report: dict) -> list[str]:
    """Why a report is not sane ([] if it is): non-finite numbers, negative counts / energies /
    latencies / areas, energy totals that are not the sum of their parts, latency above the
    serial latency, a pipeline period above the latency."""
    problems: list[str] = []

    def walk(obj, path: str) -> None:
        if isinstance(obj, bool):
            return
        if isinstance(obj, (int, float)):
            if not math.isfinite(obj):
                problems.append(f"{path} = {obj} is not finite")
            elif obj < 0 and not path.startswith(NONNEG_EXEMPT):
                problems.append(f"{path} = {obj} is negative")
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, f"{path}[{i}]")

    walk(report, "")
    tot = report.get("totals", {})
    if "energy_j" not in tot:  # import-only report
        return problems

    def close(a: float, b: float) -> bool:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-30)

    if not close(sum(tot["energy_breakdown_j"].values()), tot["energy_j"]):
        problems.append(f"totals.energy_j {tot['energy_j']} != sum of energy_breakdown_j "
                        f"{sum(tot['energy_breakdown_j'].values())}")
    layers = report.get("layers", [])
    if not close(sum(r["energy_j"] for r in layers), tot["energy_j"]):
        problems.append(f"totals.energy_j {tot['energy_j']} != sum of the layers' energy_j")
    for r in layers:
        if not close(sum(r["energy_breakdown_j"].values()), r["energy_j"]):
            problems.append(f"layer {r['name']}: energy_j != sum of its energy_breakdown_j")
    if not close(tot["energy_per_inference_j"], tot["energy_j"]):
        problems.append("energy_per_inference_j != energy_j")
    if tot["latency_s"] > tot["serial_latency_s"] * (1 + 1e-12):
        problems.append(f"latency_s {tot['latency_s']} > serial_latency_s "
                        f"{tot['serial_latency_s']}")
    if tot["pipeline_period_s"] > tot["latency_s"] * (1 + 1e-12):
        problems.append(f"pipeline_period_s {tot['pipeline_period_s']} > latency_s "
                        f"{tot['latency_s']}")
    if not close(sum(tot["area_breakdown_mm2"].values()), tot["area_mm2"]):
        problems.append("area_mm2 != sum of area_breakdown_mm2")
    if tot["area_mm2"] > tot["chip_area_mm2"] * (1 + 1e-9):
        problems.append(f"area_mm2 {tot['area_mm2']} > chip_area_mm2 {tot['chip_area_mm2']}")
    if not 0 <= tot["utilization"] <= 1 + 1e-12:
        problems.append(f"totals.utilization {tot['utilization']} outside [0, 1]")
    acc = report.get("accuracy")
    if acc is not None:  # top-1 figures in [0, 1]; a cosine similarity in [-1, 1];
        # a relative error >= 0; an SNR in [-100, 100] dB
        low, high = {"cosine": (-1 - 1e-9, 1 + 1e-9), "relerr": (0, math.inf),
                     "snr": (-100, 100)}.get(acc["metric"], (0, 1 + 1e-9))
        for k, v in [("float", acc["float"]), ("mean", acc["mean"])] + \
                [(f"per_seed[{i}]", v) for i, v in enumerate(acc["per_seed"])]:
            if not low <= v <= high:
                problems.append(f"accuracy.{k} {v} outside [{low:.0f}, {high:.0f}]")
        for k in ("std", "relative_error"):
            if acc[k] < 0:
                problems.append(f"accuracy.{k} {acc[k]} is negative")
    return problems


def check_outcome(code: int, err: str, json_path: Path | None, what: str = "") -> dict | None:
    """Exit 0 with a sane report (returned) or exit 1 with one clean error line (None)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, f"{what}: traceback\n{err}"
    assert code in (0, 1), f"{what}: exit {code}\n{err}"
    if code == 1:
        errors = [ln for ln in lines if ln.startswith("imccompile: error: ")]
        assert len(errors) == 1 and lines[0] == errors[0], f"{what}: not one error line\n{err}"
        assert len(errors[0]) > len("imccompile: error: ") + 10, errors[0]
        return None
    if json_path is None:
        return None
    report = json.loads(json_path.read_text())
    problems = report_problems(report)
    assert not problems, f"{what}: insane report: {problems}"
    return report


def compile_case(model: onnx.ModelProto | bytes, work: Path, *extra: str,
                 target: str = "pcm", what: str = "", stdout: bool = False
                 ) -> tuple[int, dict | None, str]:
    """Write the model, run ``imccompile MODEL --target T --json PATH -q EXTRA``, check it.
    With ``stdout`` the report goes to ``--json -`` and stdout must be that JSON alone."""
    path = work / "model.onnx"
    path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    out = work / "report.json"
    out.unlink(missing_ok=True)
    code, text, err = run_cli([path, "--target", target, "--json", "-" if stdout else out, "-q",
                               *extra])
    if stdout and code == 0:
        out.write_text(text)  # json.loads below fails unless stdout is the report alone
    if _in_hypothesis():  # --hypothesis-show-statistics shows how many cases got how far
        event(f"exit {code}")
        if what:
            event(f"{what.split(':')[0].split(' ')[0]} -> exit {code}")
    return code, check_outcome(code, err, out, what), err


def _in_hypothesis() -> bool:
    from hypothesis.control import _current_build_context

    return _current_build_context.value is not None


SEARCH_FIELDS = {"adc_bits": "adc.bits", "rows": "array.rows", "cols": "array.cols",
                 "bits_per_cell": "array.bits_per_cell", "weight_bits": "precision.weight_bits",
                 "input_bits": "precision.input_bits"}
PASSES = ["prune{ratio=0.5}", "quantize{weight_bits=4}",
          "prune{ratio=0.3,granularity=column},quantize{weight_bits=3}",
          "prune{ratio=0.25,granularity=row}"]


@st.composite
def options(draw, target: str) -> list[str]:
    """Valid extra options: overrides from the target's search lists, a one-tile chip with
    --overflow reload, compression passes."""
    search = json.loads((ROOT / "hwspecs" / f"{target}.json").read_text())["search"]
    out: list[str] = []
    for key in draw(st.lists(st.sampled_from(sorted(SEARCH_FIELDS)), max_size=2, unique=True)):
        out += ["--set", f"{SEARCH_FIELDS[key]}={draw(st.sampled_from(search[key]))}"]
    if draw(st.integers(0, 4)) == 0:
        out += ["--set", "hierarchy.tiles_per_chip=1", "--overflow",
                draw(st.sampled_from(["reload", "chips"]))]
    if draw(st.integers(0, 3)) == 0:
        out += ["--passes", draw(st.sampled_from(PASSES))]
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# ----------------------------------------------------------------------------- random bytes


@fuzz_settings(400)
@given(data=st.binary(min_size=0, max_size=600))
def test_random_bytes_are_a_clean_error(work, data):
    code, _, err = compile_case(data, work, what=f"bytes {data[:40]!r}")
    assert code == 1, err  # random bytes are no valid model


@fuzz_settings(400)
@given(name=st.sampled_from(["digits_cnn", "digits_transformer", "karate_gcn"]),
       cut=st.floats(0.0, 1.0), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)),
                                              max_size=6))
def test_truncated_or_flipped_examples(work, name, cut, flips):
    data = bytearray((EXAMPLES / f"{name}.onnx").read_bytes())
    for pos, bit in flips:
        data[min(int(pos * len(data)), len(data) - 1)] ^= 1 << bit
    data = bytes(data[: max(1, int(cut * len(data)))]) if cut < 0.98 else bytes(data)
    compile_case(data, work, what=f"{name} cut={cut} flips={flips}")


# ----------------------------------------------------------------------------- small graphs

FLOAT = TensorProto.FLOAT


class G:
    """A small model under construction: nodes, initializers (name -> array), one input."""

    def __init__(self, x_shape: list[int], rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {}
        self.x_shape = list(x_shape)
        self.shapes: dict[str, list[int]] = {"x": list(x_shape)}
        self.out = "x"
        self.n = 0

    def w(self, *shape: int) -> str:
        self.n += 1
        name = f"w{self.n}"
        self.inits[name] = (self.rng.standard_normal(shape) / math.sqrt(max(1, shape[-1]))
                            ).astype(np.float32)
        return name

    def add(self, op: str, inputs: list[str], shape: list[int], **attrs) -> str:
        self.n += 1
        out = f"{op.lower()}{self.n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.n}", **attrs))
        self.shapes[out] = shape
        self.out = out
        return out

    def model(self, opset: int = 17) -> onnx.ModelProto:
        inits = [numpy_helper.from_array(v, k) for k, v in self.inits.items()]
        g = helper.make_graph(self.nodes, "fuzz",
                              [helper.make_tensor_value_info("x", FLOAT, self.x_shape)],
                              [helper.make_tensor_value_info(self.out, FLOAT, None)], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m


@st.composite
def chain(draw) -> G:
    """A valid Conv/Gemm/MatMul/Relu/Add chain (image or dense), weights seeded."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if draw(st.booleans()):  # image chain: Conv layers, then maybe Flatten + Gemm
        c, h = draw(st.integers(1, 4)), draw(st.integers(3, 8))
        g = G([1, c, h, h], rng)
        for _ in range(draw(st.integers(1, 3))):
            groups = draw(st.sampled_from([d for d in (1, 2, 4) if c % d == 0]))
            cout = groups * draw(st.integers(1, 3))
            k = draw(st.integers(1, min(3, h)))
            s, p, d = draw(st.integers(1, 2)), draw(st.integers(0, 1)), draw(st.integers(1, 2))
            if (k - 1) * d + 1 > h + 2 * p:
                d = 1
            ho = (h + 2 * p - (k - 1) * d - 1) // s + 1
            ins = [g.out, g.w(cout, c // groups, k, k)]
            if draw(st.booleans()):
                ins.append(g.w(cout))
            g.add("Conv", ins, [1, cout, ho, ho], kernel_shape=[k, k], strides=[s, s],
                  pads=[p] * 4, dilations=[d, d], group=groups)
            c, h = cout, ho
            if draw(st.booleans()):
                g.add("Relu", [g.out], g.shapes[g.out])
        if draw(st.booleans()):
            g.add("Flatten", [g.out], [1, c * h * h])
            n = draw(st.integers(1, 6))
            g.add("Gemm", [g.out, g.w(n, c * h * h), g.w(n)], [1, n], transB=1)
        return g
    m, k = draw(st.integers(1, 4)), draw(st.integers(1, 12))
    g = G([m, k], rng)
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 12))
        op = draw(st.sampled_from(["Gemm", "MatMul", "GemmT"]))
        if op == "Gemm":
            g.add("Gemm", [g.out, g.w(k, n), g.w(n)], [m, n])
        elif op == "GemmT":
            g.add("Gemm", [g.out, g.w(n, k)], [m, n], transB=1, alpha=0.5)
        else:
            g.add("MatMul", [g.out, g.w(k, n)], [m, n])
        k = n
        if draw(st.booleans()):
            g.add("Add", [g.out, g.w(n)], [m, n])
        if draw(st.booleans()):
            g.add("Relu", [g.out], [m, n])
    return g


MUTATIONS = ["none", "neg_pads", "stride", "dilation", "group", "kernel_shape", "weight_shape",
             "nonfinite", "empty_graph", "dup_node_name", "dup_output", "self_cycle",
             "later_cycle", "missing_input", "drop_graph_input", "int_weights", "zero_dim_weight",
             "zero_dim_input", "attr_type", "bias_size", "huge_dim", "dup_graph_output",
             "input_is_output"]


# Exit 0 on these is right although onnxruntime refuses them: duplicate node names pass onnx's
# checker (the layers get unique names), an input of 2^31 rows is a (large) valid shape.
ACCEPTED_THOUGH_ORT_REFUSES = {"dup_node_name", "huge_dim"}


def ort_run(m: onnx.ModelProto, x_shape: list[int]) -> None:
    """onnxruntime runs the model (else the compiler accepted an invalid model)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    sess.run(None, {"x": np.ones(x_shape, np.float32)})


def _pick(draw, items, label: str):
    return items[draw(st.integers(0, len(items) - 1), label=label)] if items else None


def mutate(draw, g: G, kind: str) -> onnx.ModelProto:
    """Apply mutation ``kind`` to the model of ``g`` (when it has something to mutate)."""
    m = g.model()
    nodes = m.graph.node
    convs = [n for n in nodes if n.op_type == "Conv"]

    def set_ints(node, name, values):
        for a in node.attribute:
            if a.name == name:
                node.attribute.remove(a)
                break
        node.attribute.append(helper.make_attribute(name, values))

    if kind in ("neg_pads", "stride", "dilation", "group", "kernel_shape") and convs:
        n = _pick(draw, convs, "conv")
        if kind == "neg_pads":
            set_ints(n, "pads", draw(st.lists(st.integers(-3, 1), min_size=4, max_size=4)))
        elif kind == "stride":
            set_ints(n, "strides", draw(st.lists(st.integers(-2, 0), min_size=2, max_size=2)))
        elif kind == "dilation":
            set_ints(n, "dilations", draw(st.sampled_from([[0, 0], [0, 1], [-1, 1]])))
        elif kind == "group":
            set_ints(n, "group", draw(st.sampled_from([0, -1, 3, 5, 7, 64])))
        else:
            set_ints(n, "kernel_shape", draw(st.sampled_from([[1, 1], [2, 3], [5, 5], [3]])))
    elif kind in ("weight_shape", "nonfinite", "int_weights", "zero_dim_weight", "bias_size"):
        inits = list(m.graph.initializer)
        t = _pick(draw, inits, "init")
        if t is not None:
            arr = numpy_helper.to_array(t).copy()
            if kind == "weight_shape":
                shape = list(arr.shape)
                shape[draw(st.integers(0, len(shape) - 1))] += draw(st.sampled_from([1, 2, 5]))
                arr = np.ones(shape, np.float32)
            elif kind == "nonfinite":
                arr.flat[draw(st.integers(0, arr.size - 1))] = draw(
                    st.sampled_from([np.nan, np.inf, -np.inf]))
            elif kind == "int_weights":
                arr = arr.astype(draw(st.sampled_from([np.int64, np.int32, np.float64,
                                                       np.float16, np.int8])))
            elif kind == "zero_dim_weight":
                shape = list(arr.shape)
                shape[draw(st.integers(0, len(shape) - 1))] = 0
                arr = np.zeros(shape, np.float32)
            else:
                arr = np.ones(arr.size + draw(st.sampled_from([-1, 1, 3])), np.float32)
            t.CopyFrom(numpy_helper.from_array(arr, t.name))
    elif kind == "empty_graph":
        del nodes[:]
    elif kind == "dup_node_name" and len(nodes) >= 2:
        nodes[1].name = nodes[0].name
    elif kind == "dup_output" and len(nodes) >= 2:
        i, j = sorted(draw(st.lists(st.integers(0, len(nodes) - 1), min_size=2, max_size=2,
                                    unique=True)))
        nodes[i].output[0] = nodes[j].output[0]
    elif kind == "self_cycle":
        n = _pick(draw, list(nodes), "node")
        n.input[0] = n.output[0]
    elif kind == "later_cycle" and len(nodes) >= 2:
        i = draw(st.integers(0, len(nodes) - 2))
        j = draw(st.integers(i + 1, len(nodes) - 1))
        nodes[i].input[0] = nodes[j].output[0]
    elif kind == "missing_input":
        n = _pick(draw, list(nodes), "node")
        n.input[draw(st.integers(0, len(n.input) - 1))] = "no_such_tensor"
    elif kind == "drop_graph_input":
        del m.graph.input[:]
    elif kind == "zero_dim_input":
        m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0
    elif kind == "huge_dim":
        m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = draw(
            st.sampled_from([2**31, 2**40, 2**62]))
    elif kind == "dup_graph_output":
        m.graph.output.append(m.graph.output[0])
    elif kind == "input_is_output":
        m.graph.output.append(helper.make_tensor_value_info("x", FLOAT, None))
    elif kind == "attr_type":
        n = _pick(draw, list(nodes), "node")
        n.attribute.append(helper.make_attribute(
            draw(st.sampled_from(["strides", "transB", "group", "alpha", "perm"])),
            draw(st.sampled_from([1.5, "s", [0.5, 2.0], 7]))))
    return m


@fuzz_settings(2500)
@given(st.data())
def test_mutated_small_graphs(work, data):
    g = data.draw(chain(), label="model")
    kind = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    m = mutate(data.draw, g, kind)
    if m.SerializeToString() == g.model().SerializeToString():
        kind = "none"  # nothing to mutate (e.g. a conv mutation of a dense chain)
    target = data.draw(st.sampled_from(["pcm", "rram", "sram"]), label="target")
    extra = data.draw(options(target), label="options")
    if data.draw(st.integers(0, 4), label="-o") == 0:  # report.html and the program image too
        extra += ["-o", str(work / "outdir"), "--force"]
    code, report, err = compile_case(m, work, *extra, target=target, what=kind,
                                     stdout=data.draw(st.booleans(), label="--json -"))
    if code == 0 and "-o" in extra:
        assert json.loads((work / "outdir" / "report.json").read_text()) == report
    if code == 0 and kind not in ACCEPTED_THOUGH_ORT_REFUSES:  # accepted: a model that runs
        ort_run(m, g.x_shape)
    if kind == "none":  # a valid model compiles, and its weights are all counted
        assert code == 0, err
        want = sum(int(v.size) for k, v in g.inits.items()
                   if any(n.op_type in ("Conv", "Gemm", "MatMul") and n.input[1] == k
                          for n in g.nodes))
        assert report["totals"]["weights"] == want


# ----------------------------------------------------------------------------- the examples


def _example_attr_mutation(draw, proto: onnx.ModelProto) -> str:
    nodes = list(proto.graph.node)
    cands = [(n, a) for n in nodes for a in n.attribute
             if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)]
    if not cands:
        return "no int attribute"
    n, a = _pick(draw, cands, "attribute")
    bad = st.sampled_from([-(2**31), -7, -1, 0, 1, 2, 3, 9, 2**31 - 1, 2**40])
    if a.type == onnx.AttributeProto.INT:
        a.i = draw(bad)
    else:
        ints = list(a.ints)
        if ints and draw(st.booleans()):
            ints[draw(st.integers(0, len(ints) - 1))] = draw(bad)
        elif ints and draw(st.booleans()):
            ints.pop()
        else:
            ints.append(draw(bad))
        del a.ints[:]
        a.ints.extend(ints)
    return f"{n.name}.{a.name}"


@fuzz_settings(900)
@given(st.data())
def test_mutated_examples(work, data):
    name = data.draw(st.sampled_from(["digits_cnn", "digits_transformer", "karate_gcn"]))
    proto = onnx.load(str(EXAMPLES / f"{name}.onnx"))
    what = []
    for _ in range(data.draw(st.integers(1, 2))):
        kind = data.draw(st.sampled_from(["attr", "attr", "swap", "cycle", "dup_name",
                                          "nonfinite", "drop_node"]))
        nodes = proto.graph.node
        if kind == "attr":
            what.append(_example_attr_mutation(data.draw, proto))
        elif kind == "swap":
            n = _pick(data.draw, [n for n in nodes if len(n.input) >= 2], "node")
            n.input[0], n.input[1] = n.input[1], n.input[0]
            what.append(f"swap {n.name}")
        elif kind == "cycle":
            i = data.draw(st.integers(0, len(nodes) - 1))
            j = data.draw(st.integers(i, len(nodes) - 1))
            if nodes[i].input:
                nodes[i].input[0] = nodes[j].output[0]
            what.append(f"cycle {i}<-{j}")
        elif kind == "dup_name":
            nodes[data.draw(st.integers(1, len(nodes) - 1))].name = nodes[0].name
            what.append("dup_name")
        elif kind == "drop_node":
            del nodes[data.draw(st.integers(0, len(nodes) - 1))]
            what.append("drop_node")
        else:
            t = _pick(data.draw, [t for t in proto.graph.initializer
                                  if t.data_type == FLOAT and np.prod(t.dims) > 0], "init")
            arr = numpy_helper.to_array(t).copy()
            arr.flat[data.draw(st.integers(0, arr.size - 1))] = np.nan
            t.CopyFrom(numpy_helper.from_array(arr, t.name))
            what.append(f"nan {t.name}")
    target = data.draw(st.sampled_from(["pcm", "rram", "sram"]))
    extra = []
    if data.draw(st.integers(0, 3)) == 0:  # the accuracy path on the data that came with it
        extra = ["--data", str(EXAMPLES / f"{name}.npz"), "--samples", "4"]
    compile_case(proto, work, *extra, target=target, what=f"{name}: {what}")


# ----------------------------------------------------------------------------- accuracy path


@fuzz_settings(400)
@given(st.data())
def test_accuracy_path_on_fuzzed_models(work, data):
    """Models that compile get matching random data: the accuracy path works (exit 0, sane) or
    refuses cleanly; NaN/Inf in the data is always a clean error."""
    g = data.draw(chain(), label="model")
    kind = data.draw(st.sampled_from(["none", "none", "nonfinite", "neg_pads", "int_weights",
                                      "dup_node_name", "weight_shape", "bias_size"]))
    m = mutate(data.draw, g, kind)
    if m.SerializeToString() == g.model().SerializeToString():
        kind = "none"
    code, _, err = compile_case(m, work, what=kind)
    if code != 0:
        return
    n = data.draw(st.integers(1, 5))
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    x = rng.standard_normal([n, *g.x_shape]).astype(np.float32)
    with_labels = data.draw(st.booleans())
    arrays = {"x": x}
    if with_labels:
        per_sample = tuple(g.x_shape[:-1]) if len(g.x_shape) == 2 else ()
        arrays["labels"] = rng.integers(0, 2, size=(n, *per_sample)).astype(np.int64)
    npz = work / "data.npz"
    np.savez(npz, **arrays)
    target = data.draw(st.sampled_from(["pcm", "rram", "sram"]))
    sim = data.draw(st.sampled_from([[], [], ["--bit-accurate"], ["--adc-range", "full_scale"],
                                     ["--ideal"]]), label="simulation options")
    if data.draw(st.integers(0, 3), label="-o") == 0:  # with simulation.onnx and program/
        sim = [*sim, "-o", str(work / "outdir"), "--force"]
    code, report, err = compile_case(m, work, "--data", npz, "--seeds", "2", *sim,
                                     target=target, what=f"{kind} with data")
    if kind == "none" and not with_labels:
        assert code == 0, err
        assert report["accuracy"]["samples"] == n
    bad = x.copy()
    bad.flat[data.draw(st.integers(0, bad.size - 1))] = data.draw(
        st.sampled_from([np.nan, np.inf, -np.inf]))
    np.savez(npz, **{**arrays, "x": bad})
    code, _, err = compile_case(m, work, "--data", npz, target=target, what="nan data")
    assert code == 1 and "NaN or Inf" in err, err


# ----------------------------------------------------------------------------- command lines

OPTION_VALUES = {
    "--target": ["pcm", "rram", "sram", "nope", "", "hwspecs/pcm.json", "/dev/null"],
    "--set": ["adc.bits=6", "adc.bits=x", "adc=3", "=", "adc.bits", "nope.x=1", "array.rows=64",
              "hierarchy.tiles_per_chip=1", "noise.model=none", "a.b.c.d=[]"],
    "--input-shape": ["x=34,34", "x=0", "x=-1", "x=a", "nope=1", "x=", "x=34x34", "x=1,2,3"],
    "--passes": ["prune{ratio=0.5}", "prune{ratio=2}", "quantize{weight_bits=0}", "nope",
                 "prune{", "prune{ratio=0.5},,", "quantize{weight_bits=4,act_bits=8}", ""],
    "--overflow": ["chips", "reload", "error", "bogus"],
    "--replicate": ["/w1/MatMul=2", "*=3", "x=abc", "nope=2", "=2", "/w1/MatMul=0",
                    "/w1/MatMul=-1"],
    "--data": ["examples/karate_gcn.npz", "examples/digits_cnn.npz", "/nonexistent.npz",
               "examples/karate_gcn.onnx"],
    "--seeds": ["1", "2", "0", "-3", "x", "99999999999999999999"],
    "--samples": ["1", "5", "0", "-1", "x"],
    "--adc-range": ["calibrated", "full_scale", "x"],
    "--search": ["2", "0", "-1", "x"],
    "--fix": ["adc.bits=6", "nope=1", "adc.bits", "prune=0"],
    "--objectives": ["accuracy,energy", "energy", "nope", "", ",,"],
}
FLAGS = ["--ideal", "--auto-replicate", "--verbose", "--print-ir", "--bit-accurate", "--force"]


@fuzz_settings(400)
@given(st.data())
def test_random_command_lines(work, data):
    """Random options and values on the karate example: never an internal error. (Usage
    errors may print argparse's usage; the one error line is what counts.)"""
    argv: list[str] = [str(EXAMPLES / "karate_gcn.onnx")]
    for _ in range(data.draw(st.integers(0, 5))):
        if data.draw(st.integers(0, 4)) == 0:
            argv.append(data.draw(st.sampled_from(FLAGS)))
        else:
            opt = data.draw(st.sampled_from(sorted(OPTION_VALUES)))
            value = data.draw(st.one_of(st.sampled_from(OPTION_VALUES[opt]),
                                        st.text(max_size=8)))
            argv += [opt, str(ROOT / value) if value.startswith("examples/") else value]
    out = work / "cli.json"
    out.unlink(missing_ok=True)
    code, _, err = run_cli([*argv, "--json", out, "-q"])
    event(f"exit {code}")
    if code == 0 and not out.exists():  # --print-ir: no report
        return
    check_outcome(code, err, out if code == 0 else None, what=" ".join(argv))


# ----------------------------------------------------------------------------- spec JSON

SPEC_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.sampled_from([0, 1, -1, 0.5]),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6),
    st.lists(st.integers(-3, 600), max_size=4), st.dictionaries(st.text(max_size=4),
                                                                 st.integers(), max_size=2))


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@fuzz_settings(1200)
@given(st.data())
def test_mutated_spec_json(work, data):
    name = data.draw(st.sampled_from(["pcm", "rram", "sram"]))
    spec = json.loads((ROOT / "hwspecs" / f"{name}.json").read_text())
    what = []
    benign = data.draw(st.booleans(), label="benign")  # numbers scaled: often a valid spec
    for _ in range(data.draw(st.integers(1, 2 if benign else 3))):
        paths = [p for p in _paths(spec) if p]
        if benign:
            paths = [p for p in paths if _number(_get(spec, p))]
        path = _pick(data.draw, paths, "path")
        parent = _get(spec, path[:-1])
        op = "scale" if benign else data.draw(st.sampled_from(["delete", "replace", "insert",
                                                               "scale"]))
        key = path[-1]
        number = _number(parent[key])
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = data.draw(SPEC_VALUES)
        elif op == "scale" and number:  # often still valid: the numbers must stay sane
            factor = data.draw(st.sampled_from([0.5, 2, 10, 0.1, 3] if benign else
                                               [0, -1, 1e6, 1e-9, 1e300, 2]))
            value = parent[key] * factor
            parent[key] = int(value) if isinstance(parent[key], int) and abs(value) < 2**62 \
                else value
        elif isinstance(parent, dict):
            parent[data.draw(st.text(min_size=1, max_size=5))] = data.draw(SPEC_VALUES)
        what.append(f"{op} {'.'.join(map(str, path))}")
    text = json.dumps(spec)
    if data.draw(st.integers(0, 9)) == 0:  # and sometimes broken JSON
        text = text[: data.draw(st.integers(0, len(text)))]
    path = work / "spec.json"
    path.write_text(text)
    model = data.draw(st.sampled_from(["karate_gcn", "digits_cnn"]))
    extra = []
    if model == "karate_gcn" and data.draw(st.integers(0, 2)) == 0:  # noise, ADC, DAC too
        extra = ["--data", str(EXAMPLES / "karate_gcn.npz")]
    compile_case((EXAMPLES / f"{model}.onnx").read_bytes(), work, *extra, target=str(path),
                 what=f"{name}: {what}")


@pytest.mark.parametrize("name", ["pcm", "rram", "sram"])
def test_spec_copy_is_valid(work, name):
    """The fuzzer's starting point: an unmodified copy of the bundled spec compiles."""
    path = work / f"{name}-copy.json"
    path.write_text((ROOT / "hwspecs" / f"{name}.json").read_text())
    code, report, err = compile_case((EXAMPLES / "karate_gcn.onnx").read_bytes(), work,
                                     target=str(path))
    assert code == 0, err
    assert report["target"] == copy.deepcopy(report["target"])


def test_report_checker_catches_problems():
    """The oracle itself: a broken report is flagged."""
    good = {"totals": {"energy_j": 3.0, "energy_breakdown_j": {"a": 1.0, "b": 2.0},
                       "energy_per_inference_j": 3.0, "latency_s": 1.0, "serial_latency_s": 2.0,
                       "pipeline_period_s": 0.5, "area_mm2": 1.0, "chip_area_mm2": 2.0,
                       "area_breakdown_mm2": {"x": 1.0}, "utilization": 0.5},
            "layers": [{"name": "l", "energy_j": 3.0, "energy_breakdown_j": {"a": 3.0}}]}
    assert report_problems(good) == []
    cosine = {"metric": "cosine", "float": 1.0, "mean": -0.5, "per_seed": [-1.0, 0.0],
              "std": 0.7, "relative_error": 1.2}
    assert report_problems({**good, "accuracy": cosine}) == []
    assert report_problems({**good, "accuracy": {**cosine, "metric": "top1"}})
    for path, value in [(("totals", "energy_j"), 4.0), (("totals", "latency_s"), 3.0),
                        (("totals", "area_mm2"), float("nan")), (("totals", "utilization"), -1)]:
        bad = copy.deepcopy(good)
        bad[path[0]][path[1]] = value
        assert report_problems(bad), (path, value)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
