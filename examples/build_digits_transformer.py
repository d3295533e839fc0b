"""Build `digits_transformer.onnx` + `digits_transformer.npz`: a tiny transformer on sklearn digits.

Each 8x8 digit is read as 8 tokens (rows) of 8 features. Model: Linear embed(8->32) + learned
positional embedding, 2 pre-LN encoder layers written by hand (Q/K/V/out projections as nn.Linear,
4-head softmax attention, MLP 32->64->32 with GELU, LayerNorm), final LayerNorm, mean-pool over
tokens, Linear(32->10). No nn.TransformerEncoderLayer / nn.MultiheadAttention (their export uses
fused ops). Exported with the legacy exporter, opset 17, static input `input` (1,8,8) -> `logits`
(1,10).

The npz holds the 360 held-out test digits: `input` (360,8,8) float32 in [0,1] and `labels` (360,)
int64.

Float test accuracy reached: 0.9833 (354/360), seed 0, torch 2.13.0 CPU.

Run: python examples/build_digits_transformer.py [outdir]
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

SEED = 0
N_TEST = 360


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic train/test split of sklearn digits, scaled to [0,1], shape (n,8,8)."""
    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(SEED).permutation(len(y))
    test, train = perm[:N_TEST], perm[N_TEST:]
    return x[train], y[train], x[test], y[test]


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.h, self.dh = heads, d // heads
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.o = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q = self.q(x).reshape(b, t, self.h, self.dh).transpose(1, 2)  # (b,h,t,dh)
        k = self.k(x).reshape(b, t, self.h, self.dh).transpose(1, 2)
        v = self.v(x).reshape(b, t, self.h, self.dh).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.dh), dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.o(ctx)


class EncoderLayer(nn.Module):
    def __init__(self, d: int = 32, heads: int = 4, hidden: int = 64) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class DigitsTransformer(nn.Module):
    def __init__(self, tokens: int = 8, feat: int = 8, d: int = 32, layers: int = 2,
                 heads: int = 4, hidden: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Linear(feat, d)
        self.pos = nn.Parameter(torch.randn(1, tokens, d) * 0.02)
        self.layers = nn.ModuleList(EncoderLayer(d, heads, hidden) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos
        for layer in self.layers:
            h = layer(h)
        return self.head(self.ln(h).mean(dim=1))


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == y).mean())


def main(outdir: Path) -> float:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    xtr, ytr, xte, yte = load_split()
    model = DigitsTransformer()
    epochs = 60
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    steps = epochs * math.ceil(len(ytr) / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for _epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(yt), generator=gen).split(64):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
    acc = accuracy(model, xte, yte)
    print(f"digits_transformer: float test accuracy {acc:.4f} "
          f"({int(round(acc * len(yte)))}/{len(yte)})")

    outdir.mkdir(parents=True, exist_ok=True)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (torch.zeros(1, 8, 8),), str(outdir / "digits_transformer.onnx"),
            dynamo=False, opset_version=17, input_names=["input"], output_names=["logits"],
        )
    np.savez_compressed(outdir / "digits_transformer.npz", input=xte, labels=yte)
    return acc


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
