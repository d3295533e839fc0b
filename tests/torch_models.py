"""Small random-weight torch models for exporter tests, an ONNX export helper, and independent
expected matrix-op counts.

Importing this module imports torch; tests must `pytest.importorskip("torch")` first.

Builders (seeded, < 1M weights each, random weights, BN running stats randomized so that BN
folding is numerically non-trivial) return ``(model, example_inputs)`` with the model in eval
mode and ``example_inputs`` a tuple of float32 tensors with a fixed batch of 1 (GCN: the whole
graph):

* `resnet_style`        input (1,3,16,16): conv stem, 2 basic residual blocks with BN, the second
                        strided with a 1x1-conv+BN shortcut, global avg pool, fc.
* `depthwise_separable` input (1,3,16,16): MobileNet style, depthwise 3x3 (groups=C)+BN+ReLU then
                        pointwise 1x1+BN+ReLU, twice (the second depthwise strided), pool, fc.
* `transformer_encoder` input (1,8,16): Linear embed 16->32 + learned positions, 2 hand-written
                        pre-LN encoder layers (4 heads, d=32, MLP 32->64->32, GELU), LayerNorm,
                        mean-pool, final Linear 32->10.
* `gcn`                 input (20,12): 2-layer GCN with a constant normalized adjacency buffer
                        (20x20) of a seeded random graph, used twice.

`MODELS` maps names to builders.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

SEED = 0


def _randomize_bn(model: nn.Module, gen: torch.Generator) -> None:
    """Give every BatchNorm non-trivial affine params and running stats (so folding matters)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))


def _finish(model: nn.Module,
            *shape_list: Sequence[int]) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(SEED + 1)
    _randomize_bn(model, gen)
    model.eval()
    inputs = tuple(torch.randn(*s, generator=gen) for s in shape_list)
    return model, inputs


# --------------------------------------------------------------------------- ResNet style


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return torch.relu(h + self.shortcut(x))


class ResNetStyle(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.block1 = BasicBlock(16, 16, 1)
        self.block2 = BasicBlock(16, 32, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block2(self.block1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(h), 1))


def resnet_style() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(SEED)
    return _finish(ResNetStyle(), (1, 3, 16, 16))


# --------------------------------------------------------------------------- MobileNet style


def _dw_sep(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class DepthwiseSeparable(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.ds1 = _dw_sep(16, 32, 1)
        self.ds2 = _dw_sep(32, 64, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ds2(self.ds1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(h), 1))


def depthwise_separable() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(SEED)
    return _finish(DepthwiseSeparable(), (1, 3, 16, 16))


# --------------------------------------------------------------------------- Transformer


class Attention(nn.Module):
    """Multi-head softmax attention from plain nn.Linear projections (no fused ops)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.h, self.dh = heads, d // heads
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.o = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q = self.q(x).reshape(b, t, self.h, self.dh).transpose(1, 2)
        k = self.k(x).reshape(b, t, self.h, self.dh).transpose(1, 2)
        v = self.v(x).reshape(b, t, self.h, self.dh).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.dh), dim=-1)
        return self.o((att @ v).transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class TransformerEncoder(nn.Module):
    def __init__(self, tokens: int = 8, feat: int = 16, d: int = 32, layers: int = 2,
                 heads: int = 4, hidden: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Linear(feat, d)
        self.pos = nn.Parameter(0.02 * torch.randn(1, tokens, d))
        self.layers = nn.ModuleList(EncoderLayer(d, heads, hidden) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos
        for layer in self.layers:
            h = layer(h)
        return self.head(self.ln(h).mean(dim=1))


def transformer_encoder() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(SEED)
    return _finish(TransformerEncoder(), (1, 8, 16))


# --------------------------------------------------------------------------- GCN


class GCN(nn.Module):
    """out = Â @ (relu(Â @ (X W1 + b1)) W2); Â is a constant buffer, a left matmul operand."""

    # Constant buffers used as the constant operand of a matmul, with their number of uses.
    constant_matmul_operands = {"a_hat": 2}

    def __init__(self, a_hat: np.ndarray, in_dim: int, hidden: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.register_buffer("a_hat", torch.from_numpy(a_hat))
        self.w1 = nn.Linear(in_dim, hidden)
        self.w2 = nn.Linear(hidden, classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a_hat @ self.w1(x))
        return self.a_hat @ self.w2(h)


def normalized_adjacency(n: int = 20, p: float = 0.2, seed: int = SEED) -> np.ndarray:
    """Â = D^-1/2 (A + I) D^-1/2 of a seeded symmetric random graph, float32 (n, n)."""
    rng = np.random.default_rng(seed)
    a = np.triu(rng.random((n, n)) < p, 1).astype(np.float64)
    a = a + a.T + np.eye(n)
    dinv = 1.0 / np.sqrt(a.sum(1))
    return (dinv[:, None] * a * dinv[None, :]).astype(np.float32)


def gcn() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(SEED)
    return _finish(GCN(normalized_adjacency(20), 12), (20, 12))


MODELS: dict[str, Callable[[], tuple[nn.Module, tuple[torch.Tensor, ...]]]] = {
    "resnet_style": resnet_style,
    "depthwise_separable": depthwise_separable,
    "transformer_encoder": transformer_encoder,
    "gcn": gcn,
}


# --------------------------------------------------------------------------- export / counts


EXPORTERS: dict[str, dict] = {
    # name -> extra torch.onnx.export kwargs. The first two are what users get by default.
    "legacy": dict(dynamo=False, opset_version=17),
    "dynamo": dict(dynamo=True, external_data=False),
    # Unfolded variants: real BatchNormalization nodes, Transpose/Shape chains on weights.
    "legacy_nofold": dict(dynamo=False, opset_version=17, do_constant_folding=False),
    "dynamo_noopt": dict(dynamo=True, external_data=False, optimize=False),
}


def export(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], path: str | Path,
           dynamo: bool, input_names: Sequence[str] | None = None,
           output_names: Sequence[str] = ("output",), **overrides) -> Path:
    """Export `model` to ONNX at `path` and return the path.

    dynamo=False: legacy TorchScript exporter, opset 17 (constant folding on, its default).
    dynamo=True: torch.export-based exporter with the defaults a user gets (optimize=True, its
    default opset, 20 with torch 2.13), weights embedded in the file (external_data=False).
    Needs onnxscript. (Asking it for opset 17 fails to down-convert ReduceMean and silently
    leaves opset 18, so the default is used.) `overrides` are passed on to torch.onnx.export
    (e.g. do_constant_folding=False, optimize=False). Input names default to "input" (one
    input) or "input0", "input1", ...
    """
    path = Path(path)
    model.eval()
    if input_names is None:
        n_in = len(example_inputs)
        input_names = ["input"] if n_in == 1 else [f"input{i}" for i in range(n_in)]
    kwargs = dict(EXPORTERS["dynamo" if dynamo else "legacy"])
    kwargs.update(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(example_inputs), str(path), input_names=list(input_names),
                          output_names=list(output_names), verbose=False, **kwargs)
    return path


def export_variant(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], path: str | Path,
                   variant: str) -> Path:
    """Export with one of the named `EXPORTERS` settings."""
    kw = dict(EXPORTERS[variant])
    return export(model, example_inputs, path, **kw)


def expected_counts(model: nn.Module) -> tuple[int, int]:
    """(number of crossbar matrix ops, total crossbar weights) counted from the torch module alone.

    Rule:
    * every nn.Conv2d / nn.ConvTranspose2d / nn.Linear is one matrix op of weight.numel() weights
      (bias not counted; a grouped/depthwise conv's weight is (Cout, Cin/groups, kh, kw), which
      is exactly what the block-diagonal crossbar mapping stores);
    * every constant tensor used as the constant operand of a matmul (a module's
      ``constant_matmul_operands = {buffer_name: uses}``, e.g. the GCN adjacency) counts as one
      matrix op per use, each with numel() weights (GCN: Â used twice -> 2 ops, 2 * n^2 weights);
    * BatchNorm is folded into the preceding conv: no op, no weights; LayerNorm, pooling,
      positional-embedding adds etc. are digital;
    * activation x activation products (attention Q K^T and softmax(.) V) are not matrix ops.
    """
    n_ops = 0
    total = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            n_ops += 1
            total += m.weight.numel()
        for buf_name, uses in getattr(m, "constant_matmul_operands", {}).items():
            numel = getattr(m, buf_name).numel()
            n_ops += uses
            total += uses * numel
    return n_ops, total


def expected_matrices(model: nn.Module) -> list[tuple[np.ndarray, np.ndarray | None, int]]:
    """The crossbar matrices the frontend should produce, computed from the torch module alone.

    Returns one (W, bias, groups) per matrix op of `expected_counts` (module traversal order), W
    float32 (K, N) with K = in_features (Linear) or Cin/groups*kh*kw (Conv, flattened in the
    weight's (Cin/g, kh, kw) C order) and N = out features; bias (N,) or None. A BatchNorm2d
    that directly follows a Conv2d in module order (nothing in between) is folded into it:
    W' = W * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta.
    Constant matmul operands A (used as A @ X) give W = A.T, no bias, once per use.
    """
    out: list[list] = []
    last_conv: list | None = None
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            w = m.weight.detach().double().numpy()
            b = None if m.bias is None else m.bias.detach().double().numpy()
            groups = getattr(m, "groups", 1)
            entry = [w, b, groups, type(m)]
            out.append(entry)
            last_conv = entry if isinstance(m, nn.Conv2d) else None
        elif isinstance(m, nn.BatchNorm2d):
            assert last_conv is not None, "BatchNorm2d without a preceding Conv2d"
            std = torch.sqrt(m.running_var.double() + m.eps)
            scale = (m.weight.detach().double() / std).numpy()
            shift = m.bias.detach().double().numpy() - m.running_mean.double().numpy() * scale
            w, b = last_conv[0], last_conv[1]
            last_conv[0] = w * scale.reshape(-1, 1, 1, 1)
            last_conv[1] = (0.0 if b is None else b * scale) + shift
            last_conv = None
        elif len(list(m.children())) == 0 and not isinstance(m, (nn.Identity,)):
            last_conv = None  # e.g. a ReLU between conv and BN: no folding
        for buf_name, uses in getattr(m, "constant_matmul_operands", {}).items():
            a = getattr(m, buf_name).detach().double().numpy()
            out.extend([[a.T, None, 1, None] for _ in range(uses)])
    result = []
    for w, b, groups, kind in out:
        if kind is nn.Linear:
            wkn = w.T
        elif kind is nn.Conv2d:
            wkn = w.reshape(w.shape[0], -1).T
        elif kind is nn.ConvTranspose2d:
            # weight (Cin, Cout/g, kh, kw): rows = Cin/g inputs of a group, cols = Cout outputs x k
            raise NotImplementedError("ConvTranspose2d layout not needed by these models")
        else:
            wkn = w
        result.append((np.ascontiguousarray(wkn, dtype=np.float32),
                       None if b is None else np.asarray(b, dtype=np.float32), int(groups)))
    return result


def op_type_report(tmpdir: str | Path, variants: Sequence[str] = ("legacy", "dynamo")) -> str:
    """Export every model with every variant into `tmpdir`; return op types per exported model."""
    import collections

    import onnx

    lines = []
    for name, build in MODELS.items():
        model, inputs = build()
        for variant in variants:
            p = export_variant(model, inputs, Path(tmpdir) / f"{name}_{variant}.onnx", variant)
            m = onnx.load(str(p))
            opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
            ops = collections.Counter(n.op_type for n in m.graph.node)
            lines.append(f"{name:20s} {variant:14s} opset {opset}: "
                         + ", ".join(f"{k} x{v}" for k, v in sorted(ops.items())))
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        print(op_type_report(d, tuple(sys.argv[1:]) or tuple(EXPORTERS)))
