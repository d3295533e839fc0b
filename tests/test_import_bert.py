"""A Hugging Face BertModel-style encoder exported by torch imports (issue 15).

The embeddings are written the way transformers' BertEmbeddings writes them: ``position_ids``
and ``token_type_ids`` registered buffers, the token types taken with
``torch.gather(buffer.expand(...), 1, position_ids)`` (GatherElements + Expand in ONNX, which
the old hand-written folding got wrong: "cannot reshape array of size 1 into shape (1,32)"),
and an extended ``attention_mask``. Counts are by hand; the re-emitted IR matches onnxruntime on
the export.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

torch = pytest.importorskip("torch", reason="torch not installed: pip install torch==2.13.0")

import onnx_builders as ob  # noqa: E402
from torch import nn  # noqa: E402

from imccompile.emit import emit  # noqa: E402
from imccompile.frontend import import_model  # noqa: E402

D, HEADS, FF, LAYERS, VOCAB, MAXPOS, SEQ = 32, 4, 64, 2, 50, 80, 16


class Embeddings(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.word = nn.Embedding(VOCAB, D)
        self.pos = nn.Embedding(MAXPOS, D)
        self.token_type = nn.Embedding(2, D)
        self.norm = nn.LayerNorm(D)
        self.register_buffer("position_ids", torch.arange(MAXPOS).expand((1, -1)),
                             persistent=False)
        self.register_buffer("token_type_ids", torch.zeros((1, MAXPOS), dtype=torch.long),
                             persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b, n = ids.shape
        pos = self.position_ids[:, :n]
        tt = self.token_type_ids.expand(pos.shape[0], -1)  # as transformers >= 4.48 writes it
        tt = torch.gather(tt, dim=1, index=pos).expand(b, n)
        return self.norm(self.word(ids) + self.token_type(tt) + self.pos(pos))


class Layer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.ff1, self.ff2 = nn.Linear(D, FF), nn.Linear(FF, D)
        self.norm1, self.norm2 = nn.LayerNorm(D), nn.LayerNorm(D)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        hd = D // HEADS

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, HEADS, hd).transpose(1, 2)

        att = torch.softmax(split(self.q(x)) @ split(self.k(x)).transpose(-1, -2)
                            / math.sqrt(hd) + mask, -1) @ split(self.v(x))
        x = self.norm1(x + self.o(att.transpose(1, 2).reshape(b, n, D)))
        return self.norm2(x + self.ff2(nn.functional.gelu(self.ff1(x))))


class Bert(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embeddings = Embeddings()
        self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        ext = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) \
            * torch.finfo(torch.float32).min
        x = self.embeddings(input_ids)
        for layer in self.layers:
            x = layer(x, ext)
        return x


@pytest.fixture(scope="module", params=["legacy", "dynamo"])
def exported(request, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = Bert().eval()
    ids = torch.randint(0, VOCAB, (1, SEQ))
    mask = torch.ones(1, SEQ, dtype=torch.long)
    path = tmp_path_factory.mktemp("bert") / f"bert_{request.param}.onnx"
    kw = (dict(dynamo=True, external_data=False) if request.param == "dynamo"
          else dict(dynamo=False, opset_version=17))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, mask), str(path), input_names=["input_ids",
                          "attention_mask"], output_names=["last_hidden_state"], **kw)
    return path


def test_bert_style_export_counts(exported: Path) -> None:
    g = import_model(exported)
    # per layer: q, k, v, o (D x D) and the MLP (D x FF, FF x D), on SEQ tokens; the
    # embedding tables are Gathers (digital), the attention products digital.
    per_layer = 4 * D * D + 2 * D * FF
    assert len(g.matrix_ops) == 6 * LAYERS
    assert g.total_weights == LAYERS * per_layer
    assert g.total_macs == LAYERS * per_layer * SEQ
    assert sum(o.attention for o in g.digital_ops) == 2 * LAYERS


def test_bert_style_export_matches_onnxruntime(exported: Path) -> None:
    import onnx

    g = import_model(exported)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, (1, SEQ)).astype(np.int64)
    mask = np.ones((1, SEQ), np.int64)
    mask[0, -5:] = 0  # padding: the extended mask matters
    feeds = {"input_ids": ids, "attention_mask": mask}
    (ref,) = ob.run(onnx.load(str(exported)), feeds)
    (ours,) = ob.run(emit(g)[0], {k: feeds[k] for k in g.inputs})
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_bert_style_export_costs_and_simulates_ideally(exported: Path, tmp_path: Path) -> None:
    """Costs on every bundled target; --ideal (no noise, ADC, DAC or weight quantization)
    reproduces the float model on every output (cosine 1 up to float rounding)."""
    import imccompile
    from imccompile.simulate import SimOptions

    for target in ("pcm", "rram", "sram"):
        res = imccompile.compile(exported, target)
        assert res.cost.energy_j > 0 and res.mapping.arrays > 0 and res.schedule.latency_s > 0
    rng = np.random.default_rng(1)
    ids = rng.integers(0, VOCAB, (4, 1, SEQ)).astype(np.int64)
    mask = np.ones((4, 1, SEQ), np.int64)
    mask[:, 0, -3:] = 0
    data = tmp_path / "tokens.npz"
    np.savez(data, input_ids=ids, attention_mask=mask)
    ideal = SimOptions(noise=False, adc=False, dac=False, weights=False)
    res = imccompile.compile(exported, "pcm", data=data, sim_options=ideal)
    assert res.accuracy is not None
    assert res.accuracy["mean"] == pytest.approx(1.0, abs=1e-9)
    assert res.accuracy["relative_error"] < 1e-5
