"""Scheduler: start/end times of every op along the op DAG, with the arrays as resources.

* layer-sequential: one inference alone; an op starts when all its producers have ended *and*
  the arrays it computes on are free, so parallel branches overlap and the latency is the DAG's
  critical path. Ops on the same arrays (uses of one shared weight, layers taking turns on the
  reload pool: `Mapping.resource`) run one after another, in graph order.
* layer-pipelined: every set of arrays is one pipeline stage, so consecutive inferences overlap;
  the period is set by the busiest stage: the sum of the latencies of the ops on one set of
  arrays (one op per stage when nothing is shared), or the slowest digital op. The latency of
  one inference stays the critical path (never above the sequential one).
"""

from __future__ import annotations

from dataclasses import dataclass

from imccompile.cost import Cost
from imccompile.ir import Graph, MatrixOp
from imccompile.mapper import Mapping


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


def schedule(graph: Graph, cost: Cost, mapping: Mapping | None = None) -> Schedule:
    """Schedule the graph's ops (in their topological order) with the cost's latencies."""
    dag = graph.dag()
    lat = {lc.name: lc.latency_s for lc in cost.layers}
    resource: dict[str, str] = {}
    if mapping is not None:
        resource = {op.name: mapping.resource(op.name) for op in graph.ops
                    if isinstance(op, MatrixOp)}
    end: dict[str, float] = {}
    best_pred: dict[str, str | None] = {}
    free: dict[str, tuple[float, str]] = {}  # resource -> (free at, last op on it)
    stage: dict[str, float] = {}
    steps = []
    for op in graph.ops:
        name = op.name
        preds = tuple(sorted(dag.predecessors(name)))
        start = max((end[p] for p in preds), default=0.0)
        best_pred[name] = max(preds, key=lambda p: end[p]) if preds else None
        res = resource.get(name)
        if res is not None and res in free and free[res][0] > start:
            start, best_pred[name] = free[res]
        end[name] = start + lat.get(name, 0.0)
        if res is not None:
            free[res] = (end[name], name)
        key = res if res is not None else f"op:{name}"
        stage[key] = stage.get(key, 0.0) + lat.get(name, 0.0)
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
    period = max(stage.values(), default=0.0)
    return Schedule(tuple(steps), latency, float(sum(lat.values())), period, tuple(reversed(path)))
