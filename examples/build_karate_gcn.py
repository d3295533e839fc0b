"""Build `karate_gcn.onnx` + `karate_gcn.npz`: a 2-layer GCN on Zachary's karate club graph.

Graph: networkx.karate_club_graph() (34 nodes). The normalized adjacency
Â = D^-1/2 (A + I) D^-1/2 is a registered buffer, i.e. a constant of the exported model.
Model: H1 = relu(Â @ (X W1)), out = Â @ (H1 W2), W1: 34->16, W2: 16->2 (nn.Linear, no bias),
X = identity features (34,34). Classes: the 'club' node attribute (0 = 'Mr. Hi', 1 = 'Officer').
Semi-supervised: trained on 4 labeled nodes (0, 1 of 'Mr. Hi'; 32, 33 of 'Officer').

Exported with the legacy exporter, opset 17: input `x` (34,34) -> `logits` (34,2). The whole graph
is one "batch". The npz holds `x` (34,34) float32 = identity and `labels` (34,) int64.

Float accuracy reached on all 34 nodes: 0.9706 (33/34), seed 0, torch 2.13.0 CPU.

Run: python examples/build_karate_gcn.py [outdir]
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from torch import nn

SEED = 0
LABELED = [0, 1, 32, 33]


def karate() -> tuple[np.ndarray, np.ndarray]:
    """Return (normalized adjacency Â (34,34) float32, labels (34,) int64)."""
    g = nx.karate_club_graph()
    nodes = sorted(g.nodes)
    a = nx.to_numpy_array(g, nodelist=nodes, weight=None) + np.eye(len(nodes))
    dinv = 1.0 / np.sqrt(a.sum(1))
    a_hat = (dinv[:, None] * a * dinv[None, :]).astype(np.float32)
    labels = np.array([0 if g.nodes[n]["club"] == "Mr. Hi" else 1 for n in nodes], dtype=np.int64)
    return a_hat, labels


class GCN(nn.Module):
    def __init__(self, a_hat: np.ndarray, in_dim: int, hidden: int = 16, classes: int = 2) -> None:
        super().__init__()
        self.register_buffer("a_hat", torch.from_numpy(a_hat))
        self.w1 = nn.Linear(in_dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a_hat @ self.w1(x))
        return self.a_hat @ self.w2(h)


def main(outdir: Path) -> float:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    a_hat, labels = karate()
    n = len(labels)
    x = np.eye(n, dtype=np.float32)
    model = GCN(a_hat, n)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=5e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels)
    lab = torch.tensor(LABELED)
    for _step in range(200):
        model.train()
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xt)[lab], yt[lab])
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(xt).argmax(1).numpy()
    acc = float((pred == labels).mean())
    print(f"karate_gcn: float accuracy on all nodes {acc:.4f} ({int((pred == labels).sum())}/{n})")

    outdir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (xt,), str(outdir / "karate_gcn.onnx"),
            dynamo=False, opset_version=17, input_names=["x"], output_names=["logits"],
        )
    np.savez_compressed(outdir / "karate_gcn.npz", x=x, labels=labels)
    return acc


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
