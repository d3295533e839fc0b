"""A bounded mutation fuzzer for the imccompile CLI (no atheris needed).

Every case takes one of the example models (examples/*.onnx), mutates it — at the byte level
(flip/overwrite/insert/delete bytes, truncate, splice) or at the proto level (attribute ints,
swapped or redirected node inputs, removed/duplicated nodes, initializer dims/types/values, graph
input dims, opsets, names) — and runs ``imccompile MODEL --target T --json PATH`` in a worker
process (in-process ``imccompile.cli.main``, so cases are fast), sometimes with ``--data`` and a
few ``--set`` overrides. Outcomes are counted:

* exit 0: the report must be finite, non-negative where it is a count/energy/latency/area,
  energy_j must equal the sum of energy_breakdown_j and latency_s <= serial_latency_s, else the
  case counts as a ``bad-report`` failure;
* exit 1: must be exactly one ``imccompile: error:`` line on stderr;
* exit 2 (internal error), any other code, a crash of the worker or a timeout: a failure.

Usage::

    python benchmarks/fuzz_mutate.py --cases 2000 --seed 0 [--timeout 10] [--show 20]

Exit status 0 when no failure was found, 1 otherwise. Every failing case is printed with its seed
so it can be replayed alone (``--replay SEED``) and written to ``--save DIR`` if given.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import math
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ["digits_cnn", "digits_transformer", "karate_gcn"]
TARGETS = ["pcm", "rram", "sram"]
INTERESTING_INTS = [-(2**63), -(2**31), -65536, -7, -2, -1, 0, 1, 2, 3, 5, 7, 8, 64, 255, 4096,
                    2**31 - 1, 2**31, 2**40, 2**63 - 1]
SEARCH_FIELDS = {"adc_bits": "adc.bits", "rows": "array.rows", "cols": "array.cols",
                 "bits_per_cell": "array.bits_per_cell", "weight_bits": "precision.weight_bits",
                 "input_bits": "precision.input_bits"}
BAD_SETS = ["adc.bits=1", "array.rows=16", "dac.bits=0", "hierarchy.tiles_per_chip=0",
            "array.read_latency_s=-1", "adc.bits=\"x\""]
NONNEG_EXEMPT = ("target",)  # spec values (e.g. a signed threshold) are not report outputs


# ----------------------------------------------------------------------------- report checks


def report_problems(report: dict) -> list[str]:
    """Why a report of an exit-0 run is wrong ([] when it is sane)."""
    problems: list[str] = []

    def walk(obj, path: str) -> None:
        if isinstance(obj, bool):
            return
        if isinstance(obj, (int, float)):
            if not math.isfinite(obj):
                problems.append(f"{path} = {obj} is not finite")
            elif obj < 0 and not path.startswith(NONNEG_EXEMPT) and "accuracy" not in path \
                    and "search" not in path:
                problems.append(f"{path} = {obj} is negative")
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, f"{path}[{i}]")

    walk(report, "")
    tot = report.get("totals", {})
    if "energy_breakdown_j" in tot:
        s = sum(tot["energy_breakdown_j"].values())
        if not math.isclose(s, tot["energy_j"], rel_tol=1e-9, abs_tol=1e-30):
            problems.append(f"totals.energy_j {tot['energy_j']} != sum of breakdown {s}")
        layers = sum(row["energy_j"] for row in report.get("layers", []))
        if not math.isclose(layers, tot["energy_j"], rel_tol=1e-9, abs_tol=1e-30):
            problems.append(f"totals.energy_j {tot['energy_j']} != sum of layers {layers}")
        if tot["latency_s"] > tot["serial_latency_s"] * (1 + 1e-12):
            problems.append(f"latency_s {tot['latency_s']} > serial {tot['serial_latency_s']}")
        if tot["pipeline_period_s"] > tot["latency_s"] * (1 + 1e-12):
            problems.append(f"pipeline_period_s {tot['pipeline_period_s']} > latency_s "
                            f"{tot['latency_s']}")
    return problems


def judge(code: int, stderr: str, report_text: str | None) -> tuple[str, str]:
    """(outcome, detail): outcome is ok, error, internal, bad-error, bad-report or exit-N."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if code == 0:
        if report_text is None:
            return "bad-report", "exit 0 without a report"
        try:
            report = json.loads(report_text)
        except ValueError as e:
            return "bad-report", f"report is not JSON: {e}"
        probs = report_problems(report)
        return ("bad-report", "; ".join(probs[:5])) if probs else ("ok", "")
    if code == 1:
        errs = [ln for ln in lines if ln.startswith("imccompile: error: ")]
        if len(errs) != 1 or "Traceback" in stderr:
            return "bad-error", stderr[-600:]
        return "error", errs[0]
    if code == 2:
        return "internal", stderr[-800:]
    return f"exit-{code}", stderr[-600:]


def _error_kind(line: str) -> str:
    """An error line without the model name, numbers and quoted names (to count kinds)."""
    import re

    text = line.removeprefix("imccompile: error: ")
    text = re.sub(r"^case\d*: ", "", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\d+(\.\d+)?", "_", text)
    return text[:90]


# ----------------------------------------------------------------------------- mutations


def _byte_mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    kind = rng.choice(["flip", "overwrite", "insert", "delete", "truncate", "splice", "flip"])
    n = rng.choice([1, 1, 2, 4, 16])
    if kind == "truncate":
        cut = rng.randrange(0, len(b) + 1)
        return bytes(b[:cut]), f"truncate@{cut}"
    for _ in range(n):
        if not b:
            break
        i = rng.randrange(len(b))
        if kind == "flip":
            b[i] ^= 1 << rng.randrange(8)
        elif kind == "overwrite":
            b[i] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif kind == "insert":
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 8])))
        elif kind == "delete":
            del b[i:i + rng.choice([1, 2, 8])]
        elif kind == "splice":
            j = rng.randrange(len(b))
            ln = rng.randrange(1, 64)
            b[i:i + ln] = b[j:j + ln]
    return bytes(b), f"{kind}x{n}"


def _rand_int(rng: random.Random, old: int | None = None) -> int:
    if old is not None and rng.random() < 0.4:
        return old + rng.choice([-2, -1, 1, 2])
    return rng.choice(INTERESTING_INTS)


def _proto_mutate(model, rng: random.Random) -> str:
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    nodes = list(g.node)
    kinds = ["attr_int", "attr_ints", "swap_inputs", "redirect_input", "cycle", "drop_node",
             "dup_node", "init_dims", "init_dtype", "init_nonfinite", "input_dims", "opset",
             "dup_name", "dup_output", "drop_input", "op_type", "empty_graph", "drop_init",
             "attr_type", "zero_dim"]
    kind = rng.choice(kinds)
    if kind in ("attr_int", "attr_ints", "attr_type"):
        cands = [(n, a) for n in nodes for a in n.attribute
                 if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)]
        if not cands:
            kind = "swap_inputs"
        else:
            n, a = rng.choice(cands)
            if kind == "attr_type":
                value = rng.choice([1.5, "x", [1.0, 2.0], ["a"], 3])
                new = helper.make_attribute(a.name, value)
                a.CopyFrom(new)
                return f"attr_type {n.name}.{a.name}"
            if a.type == onnx.AttributeProto.INT:
                a.i = _rand_int(rng, a.i)
                return f"attr_int {n.name}.{a.name}={a.i}"
            ints = list(a.ints)
            op = rng.choice(["set", "drop", "add"] if ints else ["add"])
            if op == "set":
                k = rng.randrange(len(ints))
                ints[k] = _rand_int(rng, ints[k])
            elif op == "drop":
                ints.pop(rng.randrange(len(ints)))
            else:
                ints.append(_rand_int(rng))
            del a.ints[:]
            a.ints.extend(ints)
            return f"attr_ints {n.name}.{a.name}={ints}"
    if kind == "swap_inputs":
        cands = [n for n in nodes if len(n.input) >= 2]
        if cands:
            n = rng.choice(cands)
            i, j = rng.sample(range(len(n.input)), 2)
            n.input[i], n.input[j] = n.input[j], n.input[i]
            return f"swap_inputs {n.name} {i}<->{j}"
        kind = "redirect_input"
    tensors = [t for n in nodes for t in list(n.input) + list(n.output) if t]
    tensors += [i.name for i in g.initializer] + [i.name for i in g.input]
    if kind == "redirect_input" and nodes and tensors:
        n = rng.choice(nodes)
        if n.input:
            k = rng.randrange(len(n.input))
            n.input[k] = rng.choice(tensors + ["", "nonexistent"])
            return f"redirect_input {n.name}[{k}]={n.input[k]}"
        kind = "cycle"
    if kind == "cycle" and nodes:
        i = rng.randrange(len(nodes))
        j = rng.randrange(i, len(nodes))
        if nodes[i].input and nodes[j].output:
            nodes[i].input[rng.randrange(len(nodes[i].input))] = nodes[j].output[0]
            return f"cycle {nodes[i].name} <- {nodes[j].name}"
        kind = "drop_node"
    if kind == "drop_node" and nodes:
        k = rng.randrange(len(nodes))
        del g.node[k]
        return f"drop_node {nodes[k].name}"
    if kind == "dup_node" and nodes:
        k = rng.randrange(len(nodes))
        g.node.insert(rng.randrange(len(nodes) + 1), nodes[k])
        return f"dup_node {nodes[k].name}"
    if kind == "dup_name" and len(nodes) >= 2:
        a, b = rng.sample(range(len(nodes)), 2)
        g.node[a].name = g.node[b].name
        return f"dup_name {g.node[b].name}"
    if kind == "dup_output" and len(nodes) >= 2:
        a, b = rng.sample(range(len(nodes)), 2)
        if g.node[a].output and g.node[b].output:
            g.node[a].output[0] = g.node[b].output[0]
            return f"dup_output {g.node[b].output[0]}"
    if kind == "op_type" and nodes:
        n = rng.choice(nodes)
        n.op_type = rng.choice(["Conv", "Gemm", "MatMul", "Relu", "Add", "MaxPool", "Softmax",
                                "Reshape", "Transpose", "ConvTranspose", "Flatten", "Identity",
                                "LayerNormalization", "Erf", "Div", "Concat", "QLinearConv"])
        return f"op_type {n.name}={n.op_type}"
    if kind == "empty_graph":
        del g.node[:]
        return "empty_graph"
    inits = list(g.initializer)
    if kind in ("init_dims", "init_dtype", "init_nonfinite", "drop_init", "zero_dim") and inits:
        t = rng.choice(inits)
        if kind == "drop_init":
            g.initializer.remove(t)
            return f"drop_init {t.name}"
        if kind == "init_nonfinite":
            arr = numpy_helper.to_array(t)
            if arr.dtype.kind == "f" and arr.size:
                arr = arr.copy()
                arr.flat[rng.randrange(arr.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e38])
                t.CopyFrom(numpy_helper.from_array(arr, t.name))
                return f"init_nonfinite {t.name}"
            kind = "init_dims"
        if kind == "init_dtype":
            arr = numpy_helper.to_array(t)
            dt = rng.choice([np.int32, np.int64, np.float16, np.float64, np.int8, np.uint8, bool])
            t.CopyFrom(numpy_helper.from_array(arr.astype(dt), t.name))
            return f"init_dtype {t.name}={np.dtype(dt).name}"
        if kind == "zero_dim":
            arr = numpy_helper.to_array(t)
            if arr.ndim:
                shape = list(arr.shape)
                shape[rng.randrange(len(shape))] = 0
                t.CopyFrom(numpy_helper.from_array(np.zeros(shape, arr.dtype), t.name))
                return f"zero_dim {t.name}={shape}"
        dims = list(t.dims)
        if dims:
            k = rng.randrange(len(dims))
            dims[k] = rng.choice([0, 1, dims[k] + 1, dims[k] * 2, -1])
        else:
            dims = [rng.choice([0, 1, 2])]
        del t.dims[:]
        t.dims.extend(dims)
        return f"init_dims {t.name}={dims}"
    if kind == "input_dims" and g.input:
        vi = rng.choice(list(g.input))
        dims = vi.type.tensor_type.shape.dim
        if dims:
            d = dims[rng.randrange(len(dims))]
            choice = rng.choice(["zero", "neg", "big", "sym", "plus"])
            if choice == "sym":
                d.dim_param = "N"
            elif choice == "zero":
                d.dim_value = 0
            elif choice == "neg":
                d.dim_value = -3
            elif choice == "big":
                d.dim_value = rng.choice([2**20, 2**31, 2**40])
            else:
                d.dim_value = d.dim_value + 1
            return f"input_dims {vi.name} {choice}"
    if kind == "drop_input" and g.input:
        vi = g.input[rng.randrange(len(g.input))]
        g.input.remove(vi)
        return f"drop_input {vi.name}"
    if kind == "opset":
        v = rng.choice([1, 6, 9, 11, 13, 21, 22, 30, 10**6])
        model.opset_import[0].version = v
        return f"opset {v}"
    return "none"


def _override(target: str, rng: random.Random) -> str:
    """A --set from the target's search lists (valid), a small chip, or (rarely) a bad value."""
    r = rng.random()
    if r < 0.15:
        return rng.choice(BAD_SETS)
    if r < 0.3:
        return f"hierarchy.tiles_per_chip={rng.choice([1, 2])}"
    search = json.loads((ROOT / "hwspecs" / f"{target}.json").read_text())["search"]
    key = rng.choice(sorted(k for k in search if k in SEARCH_FIELDS))
    return f"{SEARCH_FIELDS[key]}={rng.choice(search[key])}"


def make_case(seed: int) -> dict:
    """The mutated model bytes and the command line of case ``seed`` (deterministic)."""
    import onnx

    rng = random.Random(seed)
    name = rng.choice(EXAMPLES)
    src = (ROOT / "examples" / f"{name}.onnx").read_bytes()
    what = []
    if rng.random() < 0.35:
        data = src
        for _ in range(rng.choice([1, 1, 2, 3])):
            data, w = _byte_mutate(data, rng)
            what.append(w)
    else:
        model = onnx.load_from_string(src)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            try:
                what.append(_proto_mutate(model, rng))
            except Exception as e:  # noqa: BLE001 - an earlier mutation broke this one's input
                what.append(f"(mutation skipped: {type(e).__name__})")
        data = model.SerializeToString()
    target = rng.choice(TARGETS)
    argv = ["--target", target]
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        argv += ["--set", _override(target, rng)]
    if rng.random() < 0.25:
        argv += ["--data", str(ROOT / "examples" / f"{name}.npz"), "--samples", "8"]
        if rng.random() < 0.2:
            argv += [rng.choice(["--bit-accurate", "--ideal"])]
    if rng.random() < 0.15:  # report.html, simulation.onnx, the program image
        argv += ["-o", "{workdir}/out", "--force"]
    if rng.random() < 0.1:
        argv += ["--overflow", rng.choice(["reload", "error", "chips"])]
    if rng.random() < 0.1:
        argv += ["--passes", rng.choice(["prune{ratio=0.5}", "quantize{weight_bits=4}",
                                         "prune{ratio=0.3,granularity=column},quantize{weight_bits=3}"])]
    return {"seed": seed, "example": name, "mutations": what, "model": data, "argv": argv}


# ----------------------------------------------------------------------------- the worker


def run_case_inprocess(model_path: str, argv: list[str], json_path: str) -> tuple[int, str, str | None]:
    """Run imccompile.cli.main in this process; (exit code, stderr, report text or None)."""
    from imccompile import cli

    if os.path.exists(json_path):
        os.remove(json_path)
    err = io.StringIO()
    out = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = cli.main([model_path, *argv, "--json", json_path, "--quiet"])
        except BaseException as e:  # noqa: BLE001 - the CLI must never raise
            code = 99
            err.write(f"main() raised {type(e).__name__}: {e}\n")
    text = Path(json_path).read_text() if code == 0 and os.path.exists(json_path) else None
    return code, err.getvalue(), text


def _worker(conn, workdir: str) -> None:
    import resource
    import warnings

    warnings.simplefilter("ignore")
    try:  # a mutated dim must not take the machine down: cap the address space at 8 GiB
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
    except (ValueError, OSError):
        pass
    model_path = os.path.join(workdir, "case.onnx")
    json_path = os.path.join(workdir, "report.json")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        data, argv = msg
        argv = [a.replace("{workdir}", workdir) for a in argv]
        with open(model_path, "wb") as f:
            f.write(data)
        conn.send(run_case_inprocess(model_path, argv, json_path))


class Worker:
    """A persistent worker process; killed and restarted on a timeout or crash."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.ctx = mp.get_context("fork")
        self.proc = None
        self.conn = None

    def start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, self.workdir), daemon=True)
        self.proc.start()
        self.conn = parent

    def run(self, data: bytes, argv: list[str], timeout: float):
        if self.proc is None or not self.proc.is_alive():
            self.start()
        self.conn.send((data, argv))
        if not self.conn.poll(timeout):
            self.kill()
            return None
        try:
            return self.conn.recv()
        except EOFError:
            code = self.proc.exitcode if self.proc else None
            self.kill()
            return ("crash", f"worker died (exit code {code})", None)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(5)
        self.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0, help="first case seed; case i uses seed+i")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    ap.add_argument("--replay", type=int, help="run only the case of this seed, verbosely")
    ap.add_argument("--save", metavar="DIR", help="write failing models and commands here")
    ap.add_argument("--show", type=int, default=30, help="failures printed in full")
    args = ap.parse_args(argv)

    seeds = [args.replay] if args.replay is not None else range(args.seed, args.seed + args.cases)
    counts: collections.Counter = collections.Counter()
    failures: list[tuple[dict, str, str]] = []
    by_message: collections.Counter = collections.Counter()
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="imcfuzz-") as work:
        w = Worker(work)
        try:
            for i, seed in enumerate(seeds):
                case = make_case(seed)
                res = w.run(case["model"], case["argv"], args.timeout)
                if res is None:
                    outcome, detail = "timeout", f"no result after {args.timeout:.0f} s"
                elif res[0] == "crash":
                    outcome, detail = "crash", res[1]
                else:
                    outcome, detail = judge(*res)
                counts[outcome] += 1
                if outcome == "error":
                    by_message[_error_kind(detail)] += 1
                if args.replay is not None:
                    print(f"seed {seed}: {case['example']} {case['mutations']} {case['argv']}\n"
                          f"  -> {outcome}: {detail}")
                if outcome not in ("ok", "error"):
                    failures.append((case, outcome, detail))
                    if args.save:
                        d = Path(args.save)
                        d.mkdir(parents=True, exist_ok=True)
                        (d / f"case{seed}.onnx").write_bytes(case["model"])
                        (d / f"case{seed}.txt").write_text(
                            f"{case['mutations']}\nimccompile case{seed}.onnx "
                            f"{' '.join(case['argv'])}\n{outcome}: {detail}\n")
                if (i + 1) % 250 == 0:
                    print(f"  {i + 1} cases, {time.time() - t0:.0f} s: {dict(counts)}",
                          file=sys.stderr)
        finally:
            w.close()
    dt = time.time() - t0
    print(f"{sum(counts.values())} cases in {dt:.1f} s: " +
          ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print("exit 0 = ok; exit 1 = error; failures: internal (exit 2), bad-error, bad-report, "
          "timeout, crash")
    print("most frequent clean errors:")
    for kind, n in by_message.most_common(12):
        print(f"  {n:6d}  {kind}")
    for case, outcome, detail in failures[: args.show]:
        print(f"--- seed {case['seed']} ({case['example']}; {'; '.join(case['mutations'])}; "
              f"{' '.join(case['argv'])}): {outcome}\n{detail.rstrip()}")
    if len(failures) > args.show:
        print(f"... and {len(failures) - args.show} more failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
