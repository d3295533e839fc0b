"""Scheduler: start/end times of every op along the op DAG.

* layer-sequential: one inference alone; an op starts when all its producers have ended, so
  parallel branches overlap and the latency is the DAG's critical path.
* layer-pipelined: every matrix layer holds its own arrays, so consecutive inferences overlap;
  the throughput is set by the slowest stage (1 / max op latency) and the latency of one
  inference stays the critical path (never above the sequential one).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from imccompile.cost import Cost
from imccompile.ir import Graph


@dataclass(frozen=True)
class Step:
    name: str
    start_s: float
    end_s: float
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class Schedule:
    steps: tuple[Step, ...]
    latency_s: float  # critical path of one inference
    serial_latency_s: float  # every op one after another
    period_s: float  # pipelined: time between consecutive inferences
    critical_path: tuple[str, ...]

    @property
    def inferences_per_s(self) -> float:
        return 1.0 / self.period_s if self.period_s > 0 else 0.0


def schedule(graph: Graph, cost: Cost) -> Schedule:
    dag: nx.DiGraph = graph.dag()
    lat = {lc.name: lc.latency_s for lc in cost.layers}
    end: dict[str, float] = {}
    best_pred: dict[str, str | None] = {}
    steps = []
    for name in nx.topological_sort(dag):
        preds = tuple(sorted(dag.predecessors(name)))
        start = max((end[p] for p in preds), default=0.0)
        best_pred[name] = max(preds, key=lambda p: end[p]) if preds else None
        end[name] = start + lat.get(name, 0.0)
        steps.append(Step(name, start, end[name], preds))
    order = {o.name: i for i, o in enumerate(graph.ops)}
    steps.sort(key=lambda s: (s.start_s, order.get(s.name, 0)))
    latency = max(end.values(), default=0.0)
    path: list[str] = []
    if end:
        cur: str | None = max(end, key=lambda n: (end[n], -order.get(n, 0)))
        while cur is not None:
            path.append(cur)
            cur = best_pred[cur]
    period = max(lat.values(), default=0.0)
    return Schedule(tuple(steps), latency, float(sum(lat.values())), period, tuple(reversed(path)))
