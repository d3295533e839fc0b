"""Dynamic shapes: one refusal names every input with unknown dims and suggests typical sizes
(batch 1, sequence 128, 224x224 images), '?' where nothing says, never every dim set to 1."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_builders as ob  # noqa: E402

from imccompile.errors import ModelImportError  # noqa: E402
from imccompile.frontend import import_model  # noqa: E402


def _two_input_text_model():
    emb = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["E", "input_ids"], ["e"], axis=0),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "ax"], ["m1"]),
             helper.make_node("Mul", ["e", "m1"], ["y"])]
    inits = [ob.init("E", emb), ob.init("ax", np.array([-1], np.int64))]
    return ob.model(nodes, [ob.vi("input_ids", ("batch", "sequence"), TensorProto.INT64),
                            ob.vi("attention_mask", ("batch", "sequence"), TensorProto.INT64)],
                    [ob.vi("y", None)], inits)


def test_every_dynamic_input_is_named_in_one_error() -> None:
    with pytest.raises(ModelImportError) as e:
        import_model(_two_input_text_model())
    msg = str(e.value)
    assert "input 'input_ids' has dynamic shape [batch,sequence]" in msg
    assert "input 'attention_mask' has dynamic shape [batch,sequence]" in msg
    assert "--input-shape input_ids=1,128 --input-shape attention_mask=1,128" in msg
    g = import_model(_two_input_text_model(), {"input_ids": (1, 128), "attention_mask": (1, 128)})
    assert g.tensors["y"].shape == (1, 128, 8)


def test_image_input_suggests_224_not_1() -> None:
    w = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)
    with pytest.raises(ModelImportError, match=r"--input-shape x=1,3,224,224"):
        import_model(ob.conv_model(("N", 3, "H", "W"), w))


def test_unknown_dim_without_a_hint_is_a_question_mark() -> None:
    w = np.random.default_rng(2).standard_normal((4, 2, 3, 3, 3)).astype(np.float32)
    with pytest.raises(ModelImportError, match=r"x=1,2,\?,\?,\? \(replace each \? with that size\)"):
        import_model(ob.conv_model(("N", 2, "D", "H", "W"), w))
