"""onnxruntime sessions of simulation models, one per model structure.

A simulation model's crossbar tensors are fed inputs (`emit.emit_parts` with ``feed_params``),
so the models of every noise seed, and of every search trial that changes values only (weight
bits, pruning, ADC bits), have the same protobuf: the session made for the first is reused by
the others. Sessions are cached by the SHA-256 of that protobuf and the thread count; the cache
holds at most `MAX_SESSIONS` (least recently used dropped first), which bounds the memory that
onnxruntime's copies of inline tensors and its arenas take.

Facts learned about a structure (whether it runs batched) are cached with it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Callable

MAX_SESSIONS = 6  # distinct (structure, threads) sessions alive at once: a trial with --data
# has three structures (calibration with and without the activity outputs, the simulation), each
# maybe batched

_cache: OrderedDict[tuple[str, int], Any] = OrderedDict()
_facts: dict[tuple[str, str], Any] = {}
stats = {"created": 0, "reused": 0}  # for the benchmarks and tests


def key_of(model_bytes: bytes) -> str:
    return hashlib.sha256(model_bytes).hexdigest()


def make(model_bytes: bytes, threads: int = 1) -> Any:
    """A new onnxruntime CPU session of the model with ``threads`` intra-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4  # failures are raised (and explained) by the caller, not logged
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # no memory arena: a run's activations are given back when it ends, so that the cached
    # sessions of a study hold their weights, not each its peak of activations
    so.enable_cpu_mem_arena = False
    so.enable_mem_pattern = False
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def session(key: str, build: Callable[[], bytes], threads: int = 1) -> Any:
    """The cached session of the model structure ``key`` (`key_of` its bytes, or a name derived
    from one), made from ``build()`` when first asked."""
    k = (key, threads)
    sess = _cache.get(k)
    if sess is not None:
        _cache.move_to_end(k)
        stats["reused"] += 1
        return sess
    sess = make(build(), threads)
    stats["created"] += 1
    _cache[k] = sess
    while len(_cache) > MAX_SESSIONS:
        _cache.popitem(last=False)
    return sess


def fact(key: str, name: str) -> Any:
    """What was recorded about a structure (None: nothing yet)."""
    return _facts.get((key, name))


def record(key: str, name: str, value: Any) -> None:
    _facts[(key, name)] = value


def clear() -> None:
    """Drop every cached session and fact."""
    _cache.clear()
    _facts.clear()
