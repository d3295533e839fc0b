"""One calibration run for a pipeline of many passes that each ask for activation statistics.

A search trial's pipeline quantizes every layer with a pass of its own (its own bits), in
graph order, and each pass asks for the activation ranges of the graph it is given: the
ranges of its layer's input with the earlier layers already quantized. Measured as asked, that
is one float run of the model over the data per layer (21 on a ResNet-18).

The answer is the same when measured once, on the graph the whole pipeline produces, for every
request whose layers' inputs no pass from that one on changes: an input depends only on the ops
upstream of it, and the passes up to the request have changed those the same way in both
graphs. `plan` finds out which requests these are by a dry run of the pipeline (each pass given
empty statistics) and then answers them from that one run; any other request is measured on
the graph it is asked for, as before. The numbers are those of the pass-by-pass run, exactly.

It holds for passes that declare ``stats_set_ranges_only`` (the built-in ones): their changes
to the graph never depend on the statistics' values, and they read the statistics of the
inputs of the ops they change only. A pipeline with any other pass is run as asked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Optional

import networkx as nx

from imccompile.ir import Graph
from imccompile.passes.base import ActivationStats, Pass, PassContext

Request = tuple[Optional[float], bool]  # (percentile, answered from the shared run)


def _changed(before: Graph, after: Graph) -> set[str] | None:
    """Names of the ops a pass replaced; None when it added, removed or reordered ops."""
    if [o.name for o in before.ops] != [o.name for o in after.ops]:
        return None
    return {b.name for b, a in zip(before.ops, after.ops) if a is not b}


def plan(passes: Sequence[Pass], graph: Graph, ctx: PassContext) -> ActivationStats | None:
    """Statistics for the pass-by-pass run of ``passes`` on ``graph`` that answer, from one
    measurement on the pipeline's result, every request that it gives the same answer; None
    when that saves nothing (or the pipeline has a pass that does not declare
    ``stats_set_ranges_only``)."""
    measure = ctx.activation_stats
    if measure is None or not all(getattr(p, "stats_set_ranges_only", False) for p in passes):
        return None
    asked: list[tuple[int, Optional[float]]] = []
    index = 0

    def record(g: Graph, percentile: Optional[float] = None) -> Mapping[str, tuple[float, float]]:
        asked.append((index, percentile))
        return {}

    dry = dataclasses.replace(ctx, activation_stats=record)
    graphs = [graph]
    try:
        for index, p in enumerate(passes):
            graphs.append(p(graphs[-1], dry))
    except Exception:  # the real run reports it, with its context
        return None
    if len(asked) < 2:
        return None
    end = graphs[-1]
    changes = [_changed(graphs[i], graphs[i + 1]) for i in range(len(passes))]
    dag = end.dag()
    requests: list[Request] = []
    for i, pct in asked:
        later = changes[i:]
        ok = all(c is not None for c in later)
        if ok:
            mine = changes[i] or set()
            touched = set().union(*later)  # type: ignore[arg-type]
            upstream = set().union(*(nx.ancestors(dag, n) for n in mine))
            ok = bool(mine) and not (upstream & touched)
        requests.append((pct, ok))
    if sum(ok for _, ok in requests) < 2:
        return None
    shared: dict[Optional[float], Mapping[str, tuple[float, float]]] = {}
    calls = iter(requests)

    def stats(g: Graph, percentile: Optional[float] = None) -> Mapping[str, tuple[float, float]]:
        pct, ok = next(calls, (percentile, False))
        if ok and pct == percentile:
            if percentile not in shared:
                shared[percentile] = measure(end, percentile)
            return shared[percentile]
        return measure(g, percentile)

    return stats
