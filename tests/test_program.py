"""Program images (imccompile.program, docs/program-format.md).

For the examples and a ResNet-style and a transformer torch model, on pcm and rram:
* the quantized weights read back from the image (undoing slicing, sign scheme and scales) equal
  an independent per-column quantization of the IR weights, exactly — once through the readout
  tables (`layer_weights`) and once through placement.json's block description alone;
* the reference executor's outputs equal the simulation model's (no noise, no ADC, DAC and
  weight quantization on) to float tolerance;
* every placed array is in the schedule, counts agree with the mapping / report, arrays hold one
  tile unless packed, the JSON files validate against the shipped schemas;
* corrupt images fail to load with a ProgramError naming the file.
Plus: every signed scheme, packing, pruning, replication, reload, and the CLI.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import imccompile
import imccompile.program as P
from imccompile.errors import ImcCompileError
from imccompile.outputs import build_report
from imccompile.simulate import SimOptions, simulation_model_of

sys.path.insert(0, str(Path(__file__).resolve().parent))

ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "imccompile" / "schemas"
EXAMPLES = ["digits_cnn", "digits_transformer", "karate_gcn"]
TORCH = ["resnet_style", "transformer_encoder"]
SAMPLES = 4
SIM = SimOptions(noise=False, adc=False, dac=True, weights=True)


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """name -> (onnx path, npz path); torch models are exported on first use."""
    root = tmp_path_factory.mktemp("models")
    cache: dict[str, tuple[Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path]:
        if name in EXAMPLES:
            return ROOT / "examples" / f"{name}.onnx", ROOT / "examples" / f"{name}.npz"
        if name not in cache:
            pytest.importorskip("torch", reason="torch not installed: pip install torch==2.13.0")
            import torch_models as tm

            model, inputs = getattr(tm, name)()
            path = tm.export(model, inputs, root / f"{name}.onnx", dynamo=False)
            rng = np.random.default_rng(1)
            x = inputs[0].numpy()
            data = rng.standard_normal((SAMPLES,) + x.shape).astype(np.float32)
            np.savez(root / f"{name}.npz", input=data)
            cache[name] = (path, root / f"{name}.npz")
        return cache[name]

    return get


@pytest.fixture(scope="module")
def compiled(model_files, tmp_path_factory):
    """(name, target, options...) -> (CompileResult, Image), compiled and written once."""
    root = tmp_path_factory.mktemp("images")
    cache: dict = {}

    def get(name: str, target: str, **kw):
        key = (name, target, json.dumps(kw, sort_keys=True, default=str))
        if key not in cache:
            onnx_path, npz = model_files(name)
            res = imccompile.compile(onnx_path, target, data=npz, samples=SAMPLES,
                                     sim_options=SIM, **kw)
            d = root / f"img{len(cache)}"
            P.write(res, d)
            cache[key] = (res, P.load(d))
        return cache[key]

    return get


MAIN = [pytest.param(m, t, id=f"{m}-{t}") for m in EXAMPLES + TORCH for t in ("pcm", "rram")]
# aihwkit-pcm scales every input vector (conv: patch) by its max |x| (dac.input_scaling abs_max)
PER_VECTOR = [pytest.param(m, "aihwkit-pcm", id=f"{m}-aihwkit")
              for m in ("digits_transformer", "digits_cnn")]


# -- independent references ------------------------------------------------------------------
def expected_codes(op, target) -> tuple[np.ndarray, np.ndarray]:
    """Per-column symmetric quantization of the masked IR weight, written out here."""
    bits = op.compression.weight_bits or target.precision.weight_bits
    w = op.weight.astype(np.float64)
    if op.compression.mask is not None:
        w = w * op.compression.mask
    qmax = 2 ** (bits - 1) - 1 if bits > 1 else 1
    wmax = np.abs(w).max(axis=0)
    step = np.where(wmax > 0, wmax / qmax, 1.0)
    return np.clip(np.rint(w / step), -qmax, qmax).astype(np.int64), step


def _expand(runs) -> np.ndarray:
    return np.concatenate([np.arange(a, b) for a, b in runs]) if runs else np.zeros(0, int)


def codes_from_placement(img, layer: dict) -> np.ndarray:
    """A layer's codes from placement.json's block descriptions and the conductance matrices
    only (not the readout tables): slices, sign scheme and layout rule applied by hand."""
    t = img.target
    c, scheme = t["bits_per_cell"], t["signed_scheme"]
    s_n, cdev, wb = layer["slices"], layer["column_devices"], layer["weight_bits"]
    qmax = 2 ** (wb - 1) - 1 if wb > 1 else 1
    # slice s holds digits up to F_s at g_max: all 2^c - 1 levels below the top slice; the top
    # slice's largest digit of the largest stored value M (|q| <= Q with differential schemes,
    # q + Q <= 2Q with offset, the b-bit code with two's complement)
    levels = 2 ** c - 1
    top = {"offset": 2 * qmax, "twos_complement": 2 ** wb - 1}.get(scheme, qmax)
    full = [max(1, min(levels, top >> (c * s))) for s in range(s_n)]
    assert layer["full_scale"] == full
    codes = np.zeros((layer["rows"], layer["cols"]), np.int64)
    arrays = {a["index"]: a for a in img.placement["arrays"]}
    span = t["g_max_us"] - t["g_min_us"]
    for index in layer["arrays"][:layer["arrays_per_replica"]]:
        gp, gn = img.conductance(index)
        for b in arrays[index]["blocks"]:
            w_rows = _expand(b["weight_rows"])
            a_rows = np.arange(*b["array_rows"])
            assert len(w_rows) == len(a_rows)
            w_cols = _expand(b["weight_cols"])
            first_kept = b["layout_cols"][0] // (s_n * cdev)
            for col in range(*b["array_cols"]):
                p = b["layout_cols"][0] + col - b["array_cols"][0]
                j = w_cols[p // (s_n * cdev) - first_kept]
                s, d = (p // cdev) % s_n, p % cdev
                g_step = span / full[s]
                v = np.rint((gp[a_rows, col] - t["g_min_us"]) / g_step).astype(np.int64)
                if gn is not None:
                    v = v - np.rint((gn[a_rows, col] - t["g_min_us"]) / g_step).astype(np.int64)
                if scheme == "offset":
                    v = v - ((qmax >> (c * s)) & ((1 << c) - 1))
                sig = 2 ** (c * s)
                if scheme == "twos_complement" and s == s_n - 1:
                    sig = -sig
                codes[w_rows, j] += (-1 if d == 1 else 1) * sig * v
    return codes


def sim_outputs(res, feeds) -> list[np.ndarray]:
    sess = ort.InferenceSession(simulation_model_of(res, 0).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    return [sess.run(None, f)[0] for f in feeds]


def feeds_of(res, npz: Path) -> list[dict]:
    from imccompile.simulate import load_data

    return load_data(npz, res.graph, limit=SAMPLES).feeds


def assert_close(out: np.ndarray, ref: np.ndarray, rel: float = 1e-4) -> None:
    assert out.shape == ref.shape and out.dtype == ref.dtype
    scale = max(float(np.abs(ref).max()), 1e-12)
    err = float(np.abs(out.astype(np.float64) - ref).max())
    assert err <= rel * scale, f"max |diff| {err:.3g} vs max |ref| {scale:.3g}"


# -- acceptance: weights, outputs, consistency, schemas ------------------------------------------
@pytest.mark.parametrize("model,target", MAIN)
def test_weights_read_back_exactly(compiled, model, target):
    res, img = compiled(model, target)
    got = P.layer_weights(img)
    assert set(got) == {op.name for op in res.graph.matrix_ops}
    for op in res.graph.matrix_ops:
        want_q, want_step = expected_codes(op, res.target)
        codes, step = got[op.name]
        np.testing.assert_array_equal(codes, want_q, err_msg=op.name)
        np.testing.assert_array_equal(step, want_step, err_msg=op.name)
        np.testing.assert_array_equal(codes * step, want_q * want_step)
        np.testing.assert_array_equal(codes_from_placement(img, img.layer(op.name)), want_q)


@pytest.mark.parametrize("model,target", MAIN + PER_VECTOR)
def test_executor_matches_simulation_model(compiled, model_files, model, target):
    res, img = compiled(model, target)
    feeds = feeds_of(res, model_files(model)[1])
    refs = sim_outputs(res, feeds)
    for feed, ref in zip(feeds, refs):
        out = P.run(img, feed)
        assert list(out) == list(res.graph.outputs)
        assert_close(out[res.graph.outputs[0]], ref)


@pytest.mark.parametrize("model,target", MAIN)
def test_placement_and_schedule_agree(compiled, model, target):
    res, img = compiled(model, target)
    arrays = img.placement["arrays"]
    assert len(arrays) == res.mapping.arrays == build_report(res)["totals"]["arrays"]
    assert img.placement["arrays_total"] == res.mapping.arrays
    assert [a["index"] for a in arrays] == list(range(len(arrays)))
    steps = img.schedule["steps"]
    assert {s["name"] for s in steps} == {o.name for o in res.graph.ops}
    fired = [i for s in steps for i in s["arrays"]]
    # every array fires, once for the layer holding it and once for every layer that reads the
    # same weight (the GCN's adjacency matrix is read by both aggregations)
    readers = {i: 0 for i in range(len(arrays))}
    by_key = {lay["key"]: lay for lay in img.placement["layers"]}
    for lay in img.placement["layers"]:
        if lay["shares"]:
            assert lay["arrays"] == by_key[lay["shares"]]["arrays"]
        for i in lay["arrays"]:
            readers[i] += 1
    assert sorted(fired) == sorted(i for i, n in readers.items() for _ in range(n))
    assert set(fired) == set(range(len(arrays)))
    for s in steps:
        lay = img.layer(s["name"]) if s["type"] == "crossbar" else None
        if lay is not None:
            assert s["arrays"] == lay["arrays"] and s["layer_key"] == lay["key"]
        else:
            assert s["arrays"] == []
    locations = {(a["chip"], a["tile"], a["core"], a["array"]) for a in arrays}
    assert len(locations) == len(arrays)
    _assert_blocks_disjoint(img)
    for lm in res.mapping.layers:
        lay = img.layer(lm.name)
        assert len(lay["arrays"]) == lm.total_arrays
        assert lay["arrays"] == list(range(lm.first_array, lm.first_array + lm.total_arrays))
        assert (lay["shares"] is None) == (lm.shares is None)


def _assert_blocks_disjoint(img) -> None:
    rows, cols = img.target["rows"], img.target["cols"]
    for a in img.placement["arrays"]:
        if not a["packed"]:
            assert len(a["blocks"]) == 1, a["index"]
        used = np.zeros((rows, cols), int)
        for b in a["blocks"]:
            used[slice(*b["array_rows"]), slice(*b["array_cols"])] += 1
        assert used.max() <= 1, f"array {a['index']}: blocks overlap"
        if a["reference_column"] is not None:
            assert not used[:, a["reference_column"]].any()


@pytest.mark.parametrize("model,target", MAIN)
def test_files_validate_against_schemas(compiled, model, target):
    jsonschema = pytest.importorskip("jsonschema", reason="pip install jsonschema (test extra)")
    _, img = compiled(model, target)
    for name in ("placement", "schedule"):
        schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
        doc = json.loads((img.path / f"{name}.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.validate(doc, schema)
        assert P.schema_errors(doc, schema) == []


# -- corrupt images -----------------------------------------------------------------------
@pytest.fixture()
def image_copy(compiled, tmp_path):
    _, img = compiled("digits_cnn", "rram")
    d = tmp_path / "prog"
    shutil.copytree(img.path, d)
    return d


def _load_fails(d, *fragments: str) -> str:
    with pytest.raises(P.ProgramError) as ei:
        P.load(d)
    assert isinstance(ei.value, ImcCompileError)
    msg = str(ei.value)
    for f in fragments:
        assert f in msg, msg
    return msg


def _edit_json(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def test_load_missing(tmp_path, image_copy):
    _load_fails(tmp_path / "nope", "no such program image folder")
    (image_copy / "schedule.json").unlink()
    _load_fails(image_copy, "missing schedule.json")


def test_load_truncated_npz(image_copy):
    f = image_copy / "conductances.npz"
    f.write_bytes(f.read_bytes()[:1000])
    _load_fails(image_copy, "conductances.npz", "not a readable .npz file")


def test_load_bad_json(image_copy):
    f = image_copy / "placement.json"
    f.write_text(f.read_text()[:-200])
    _load_fails(image_copy, "placement.json", "not valid JSON", "line")


def test_load_schema_violation(image_copy):
    jsonschema = pytest.importorskip("jsonschema")
    f = image_copy / "placement.json"
    _edit_json(f, lambda d: d["arrays"][3].update(chip=-1))
    schema = json.loads((SCHEMAS / "placement.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(f.read_text()), schema)
    _load_fails(image_copy, "placement.json", "placement.schema.json", "arrays[3].chip",
                "below the minimum")


def test_load_schedule_schema_violation(image_copy):
    _edit_json(image_copy / "schedule.json", lambda d: d["steps"][0].pop("end_s"))
    _load_fails(image_copy, "schedule.json", "steps[0]", "'end_s'")


def test_load_other_format_version(image_copy):
    _edit_json(image_copy / "schedule.json", lambda d: d.update(format=2))
    _load_fails(image_copy, "schedule.json", "format 2", "format 1")


def test_load_inconsistent_files(image_copy, tmp_path):
    d2 = tmp_path / "p2"
    shutil.copytree(image_copy, d2)
    z = dict(np.load(image_copy / "conductances.npz"))
    z.pop("array_00005")
    np.savez(image_copy / "conductances.npz", **z)
    _load_fails(image_copy, "conductances.npz", "array_00005")
    z = dict(np.load(d2 / "conductances.npz"))
    z["array_00002"] = z["array_00002"] * 10.0
    np.savez(d2 / "conductances.npz", **z)
    _load_fails(d2, "array_00002", "outside the device's range")


def test_load_bad_schedule_array(image_copy):
    _edit_json(image_copy / "schedule.json",
               lambda d: next(s for s in d["steps"] if s["arrays"])["arrays"].append(999))
    _load_fails(image_copy, "schedule.json", "999")


def test_load_corrupt_graph(image_copy):
    (image_copy / "graph.onnx").write_bytes(b"\x08\xff\xff garbage")
    _load_fails(image_copy, "graph.onnx", "corrupt")


def test_run_checks_inputs(compiled):
    _, img = compiled("digits_cnn", "pcm")
    with pytest.raises(P.ProgramError, match="no array for input 'input'"):
        P.run(img, {})
    with pytest.raises(P.ProgramError, match=r"shape \[8, 8\]"):
        P.run(img, {"input": np.zeros((8, 8), np.float32)})


# -- schemes, packing, pruning, replication, overflow -----------------------------------------
SMALL = ["search.rows=[16,256]", "search.cols=[15,16,256]", "array.rows=16"]
VARIANTS = [
    pytest.param("digits_cnn", "sram", {}, id="sram-twos_complement"),
    pytest.param("digits_transformer", "rram", {"overrides": ["precision.weight_bits=8"]},
                 id="rram-8bit"),
    pytest.param("digits_cnn", "pcm", {"overrides": SMALL + [
        "array.cols=15", 'array.signed_scheme="differential"']}, id="differential-odd-cols"),
    pytest.param("digits_cnn", "pcm", {"overrides": SMALL + ["array.cols=16"],
                                       "passes": "prune{ratio=0.5,granularity=block,"
                                                 "block_rows=8,block_cols=8}"},
                 id="block-pruned"),
    pytest.param("digits_cnn", "rram", {"passes": "prune{ratio=0.4,granularity=column},"
                                                  "prune{ratio=0.3,granularity=row},"
                                                  "quantize{weight_bits=5,act_bits=6}"},
                 id="pruned-quantized"),
    pytest.param("karate_gcn", "rram", {"auto_replicate": True}, id="replicated"),
    pytest.param("digits_cnn", "pcm", {"overflow": "reload",
                                       "overrides": ["hierarchy.tiles_per_chip=2"]},
                 id="reload"),
    pytest.param("depthwise_separable", "pcm", {}, id="packed-pcm"),
    pytest.param("depthwise_separable", "rram", {}, id="packed-rram"),
]


@pytest.fixture(scope="module")
def variant_files(model_files, tmp_path_factory):
    def get(name):
        if name != "depthwise_separable":
            return model_files(name)
        root = tmp_path_factory.mktemp("dw")
        pytest.importorskip("torch", reason="torch not installed: pip install torch==2.13.0")
        import torch_models as tm

        model, inputs = tm.depthwise_separable()
        path = tm.export(model, inputs, root / "dw.onnx", dynamo=False)
        x = np.random.default_rng(2).standard_normal((SAMPLES,) + tuple(inputs[0].shape))
        np.savez(root / "dw.npz", input=x.astype(np.float32))
        return path, root / "dw.npz"

    return get


@pytest.mark.parametrize("model,target,kw", VARIANTS)
def test_variants(variant_files, tmp_path, model, target, kw):
    onnx_path, npz = variant_files(model)
    res = imccompile.compile(onnx_path, target, data=npz, samples=SAMPLES, sim_options=SIM, **kw)
    P.write(res, tmp_path / "p")
    img = P.load(tmp_path / "p")
    assert len(img.placement["arrays"]) == res.mapping.arrays
    got = P.layer_weights(img)
    for op in res.graph.matrix_ops:
        want, step = expected_codes(op, res.target)
        np.testing.assert_array_equal(got[op.name][0], want, err_msg=op.name)
        np.testing.assert_array_equal(got[op.name][1], step)
        np.testing.assert_array_equal(codes_from_placement(img, img.layer(op.name)), want)
        lay = img.layer(op.name)
        for r in range(1, lay["replicas"]):  # every replica holds the same weights
            np.testing.assert_array_equal(P.layer_codes(img, lay, replica=r), want)
    _assert_blocks_disjoint(img)
    feeds = feeds_of(res, npz)
    for feed, ref in zip(feeds, sim_outputs(res, feeds)):
        assert_close(P.run(img, feed)[res.graph.outputs[0]], ref)
    if model == "depthwise_separable":
        assert any(len(a["blocks"]) > 1 for a in img.placement["arrays"])
    if kw.get("auto_replicate"):
        assert any(lay["replicas"] > 1 for lay in img.layers)
    if kw.get("overflow") == "reload":
        assert max(a["reload_round"] for a in img.placement["arrays"]) >= 1
    if "passes" in kw and "block" in kw["passes"]:
        assert res.mapping.arrays < imccompile.compile(onnx_path, target,
                                                       overrides=kw["overrides"]).mapping.arrays


def test_crossbar_layers_match_on_every_scheme(model_files, tmp_path):
    """Layer by layer (the simulation model's own layer input fed to the executor's layer), so
    DAC rounding ties cannot propagate: every signed scheme, tight tolerance."""
    import onnx

    from imccompile.simulate import load_data

    onnx_path, npz = model_files("digits_transformer")
    for target, over in [("sram", []), ("pcm", ['array.signed_scheme="differential"']),
                         ("rram", []), ("pcm", [])]:
        res = imccompile.compile(onnx_path, target, overrides=over, data=npz, samples=2,
                                 sim_options=SIM)
        model = simulation_model_of(res, 0)
        names = [t for op in res.graph.matrix_ops for t in (op.inputs[0], op.outputs[0])]
        for t in dict.fromkeys(names):
            if t not in res.graph.inputs and t not in res.graph.outputs:
                model.graph.output.append(onnx.ValueInfoProto(name=t))
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        feed = load_data(npz, res.graph, limit=1).feeds[0]
        vals = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
        vals.update(feed)
        d = tmp_path / f"{target}{len(over)}"
        P.write(res, d)
        img = P.load(d)
        assert img.target["signed_scheme"] == res.target.array.signed_scheme
        for op in res.graph.matrix_ops:
            out = P.crossbar(img, img.layer(op.name), vals[op.inputs[0]])
            ref = vals[op.outputs[0]]
            err = np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-12)
            assert err < 1e-5, (target, over, op.name, err)


# -- CLI ------------------------------------------------------------------------------------
def test_cli_writes_program(tmp_path, capsys):
    from imccompile.cli import main

    model, npz = ROOT / "examples" / "karate_gcn.onnx", ROOT / "examples" / "karate_gcn.npz"
    args = [str(model), "--target", "rram", "--data", str(npz), "-q",
            "-o", str(tmp_path / "out"), "--program", str(tmp_path / "prog")]
    assert main(args) == 0
    for d in (tmp_path / "prog", tmp_path / "out" / "program"):
        img = P.load(d)
        assert img.placement["model"] == "karate_gcn"
        assert img.layers[0]["dac"] is not None  # calibrated on --data
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["totals"]["arrays"] == len(img.placement["arrays"])
    capsys.readouterr()
    assert main(args) == 1  # exists: refused
    assert "already exists" in capsys.readouterr().err
    assert main([str(model), "--program", str(tmp_path / "p3")]) == 1
    assert "--program needs a --target" in capsys.readouterr().err
    assert main([str(model), "-t", "pcm", "-q", "--program", str(tmp_path / "p4")]) == 0
    assert P.load(tmp_path / "p4").layers[0]["dac"] is None  # no data: no DAC steps
