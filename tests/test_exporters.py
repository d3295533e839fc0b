"""The frontend on models from both torch ONNX exporters (legacy TorchScript and dynamo).

For 4 small random-weight models (ResNet-style, depthwise-separable, hand-written transformer
encoder, GCN with a constant adjacency) x exporters:

* the export itself runs in onnxruntime and matches torch (1e-4);
* `import_model` finds exactly the matrix ops / weights counted independently from the torch
  module (`torch_models.expected_counts`);
* the frontend's folded crossbar matrices (BN folded into convs, biases, transposed weights,
  constant left operands) equal the ones computed from the torch module
  (`torch_models.expected_matrices`).

"legacy" / "dynamo" are what users get by default. "legacy_nofold" (do_constant_folding=False)
and "dynamo_noopt" (optimize=False) keep real BatchNormalization nodes, Transpose nodes on
weights and Shape/Constant chains, so the frontend's own folding is exercised.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

torch = pytest.importorskip("torch", reason="torch not installed: pip install torch==2.13.0")
ort = pytest.importorskip("onnxruntime")

import torch_models as tm  # noqa: E402

DEFAULT_EXPORTERS = ("legacy", "dynamo")
ALL_EXPORTERS = tuple(tm.EXPORTERS)

def _frontend_params():
    out = []
    for name in tm.MODELS:
        for variant in ALL_EXPORTERS:
            out.append(pytest.param(name, variant, id=f"{name}-{variant}"))
    return out


def _needs(variant: str) -> None:
    if tm.EXPORTERS[variant].get("dynamo"):
        pytest.importorskip("onnxscript",
                            reason="the dynamo exporter needs onnxscript: pip install onnxscript")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model name, exporter variant) -> (model, inputs, onnx path), exported once per module."""
    cache: dict[tuple[str, str], tuple] = {}
    root = tmp_path_factory.mktemp("exports")

    def get(name: str, variant: str):
        _needs(variant)
        if (name, variant) not in cache:
            model, inputs = tm.MODELS[name]()
            path = tm.export_variant(model, inputs, root / f"{name}_{variant}.onnx", variant)
            cache[(name, variant)] = (model, inputs, path)
        return cache[(name, variant)]

    return get


@pytest.mark.parametrize("variant", ALL_EXPORTERS)
@pytest.mark.parametrize("name", list(tm.MODELS))
def test_export_runs_in_onnxruntime(exported, name, variant):
    import onnx

    model, inputs, path = exported(name, variant)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    for vi in proto.graph.input:  # static shapes: no symbolic dims
        assert all(d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim), vi
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: x.numpy() for i, x in zip(sess.get_inputs(), inputs)}
    got = sess.run(None, feeds)[0]
    with torch.no_grad():
        ref = model(*inputs).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_model_sizes():
    for name, build in tm.MODELS.items():
        model, _ = build()
        n_ops, total = tm.expected_counts(model)
        assert 0 < total < 1_000_000, name
        assert n_ops == len(tm.expected_matrices(model)), name
        assert total == sum(w.size for w, _, _ in tm.expected_matrices(model)), name


@pytest.mark.parametrize("name, variant", _frontend_params())
def test_frontend_counts(exported, name, variant):
    from imccompile.frontend import import_model

    model, _, path = exported(name, variant)
    n, total = tm.expected_counts(model)
    g = import_model(str(path))
    assert len(g.matrix_ops) == n, [(op.name, op.kind, op.weight.shape) for op in g.matrix_ops]
    assert g.total_weights == total


@pytest.mark.parametrize("name, variant", _frontend_params())
def test_frontend_weight_folding(exported, name, variant):
    """Every expected (W, bias, groups) is found among the frontend's matrix ops, one to one."""
    from imccompile.frontend import import_model

    model, _, path = exported(name, variant)
    g = import_model(str(path))
    free = list(g.matrix_ops)
    for w, b, groups in tm.expected_matrices(model):
        match = None
        for op in free:
            if op.weight.shape == w.shape and op.groups == groups and np.allclose(
                    op.weight, w, rtol=1e-4, atol=1e-5):
                match = op
                break
        assert match is not None, (
            f"no frontend matrix op with W {w.shape} groups={groups} matching torch; have "
            f"{[(op.name, op.weight.shape, op.groups) for op in free]}")
        free.remove(match)
        bias = np.zeros(w.shape[1], np.float32) if match.bias is None else match.bias
        expect = np.zeros(w.shape[1], np.float32) if b is None else b
        np.testing.assert_allclose(bias, expect, rtol=1e-4, atol=1e-5, err_msg=match.name)
    assert not free, [op.name for op in free]
