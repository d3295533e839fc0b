"""Reading an ONNX model: file or ModelProto, checker, input shapes, shape inference."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from imccompile.errors import ModelImportError, UnsupportedOpError
from imccompile.frontend.control import CONTROL_FLOW, refuse_control_flow

InputShapes = Mapping[str, tuple[int, ...]]


# onnx builds its operator-schema registry on first use (~15 ms); do it when the frontend is
# imported, like onnxruntime does when it is imported, rather than inside the first compile.
onnx.defs.has("Conv")


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """Parse ``NAME=1,3,224,224`` (as given to --input-shape)."""
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise ModelImportError(
            f"--input-shape {text!r}: expected NAME=D1,D2,... (e.g. input=1,3,224,224)")
    try:
        shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise ModelImportError(
            f"--input-shape {text!r}: dimensions must be positive integers, got {dims!r}") from None
    if not shape or any(d <= 0 for d in shape):
        raise ModelImportError(
            f"--input-shape {text!r}: dimensions must be positive integers, got {dims!r}")
    return name, shape


def parse_dim(text: str) -> tuple[str, int]:
    """Parse ``NAME=VALUE`` (as given to --dim): a symbolic dimension name and its size."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ModelImportError(
            f"--dim {text!r}: expected NAME=VALUE, a symbolic dimension name of the model's "
            "inputs and its size (e.g. --dim batch=1 --dim sequence=128)")
    try:
        size = int(value.strip())
    except ValueError:
        raise ModelImportError(
            f"--dim {text!r}: the size must be a positive integer, got {value!r}") from None
    if size < 1:
        raise ModelImportError(
            f"--dim {text!r}: the size must be a positive integer, got {size}")
    return name, size


MEMORY_LIMIT_ENV = "IMCCOMPILE_MEMORY_LIMIT"


def available_memory_bytes() -> int | None:
    """Memory the tool may use: the least of MemAvailable (/proc/meminfo), the cgroup's free
    memory (containers), and ``IMCCOMPILE_MEMORY_LIMIT`` (bytes, or with a K/M/G suffix).
    None where none of them is known."""
    limits: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        top = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if top.isdigit():
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            limits.append(max(0, int(top) - used))
    except (OSError, ValueError):
        pass
    env = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if env:
        mult = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(env[-1].upper(), 1)
        try:
            value = float(env[:-1] if mult > 1 else env) * mult
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):  # inf would not convert to int
            raise ModelImportError(f"{MEMORY_LIMIT_ENV}={env!r}: expected a positive size in "
                                   "bytes, e.g. 8G or 512M")
        limits.append(int(value))
    return min(limits) if limits else None


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; sizes in messages stay readable from bytes to TiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _external_info(init: onnx.TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in init.external_data}


def weight_bytes(proto: onnx.ModelProto) -> int:
    """Bytes of all initializers, inline or external, from their dims and types."""
    total = 0
    for init in proto.graph.initializer:
        try:
            item = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
        except Exception:
            item = 4
        total += int(np.prod(init.dims, dtype=np.int64)) * item
    return total


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_model(model: str | os.PathLike[str] | onnx.ModelProto
               ) -> tuple[onnx.ModelProto, str, Path | None]:
    """Load a model's graph (external weight data stays on disk) with a display name and the
    folder its external data lives in. Refuses a model whose weights exceed the free memory."""
    if isinstance(model, onnx.ModelProto):
        return model, model.graph.name or "model", None
    if not isinstance(model, (str, os.PathLike)) or (isinstance(model, str) and not model):
        raise ModelImportError(f"model {_show(model)}: expected a path to an .onnx file or an "
                               "onnx.ModelProto")
    path = Path(model)
    if not path.exists():
        raise ModelImportError(f"{path}: no such file")
    if path.is_dir():
        raise ModelImportError(f"{path}: is a directory, expected an .onnx file")
    if not path.is_file():  # /dev/zero, a pipe: endless or unsized, never read whole
        raise ModelImportError(f"{path}: not a regular file (a device or a pipe); expected an "
                               ".onnx file")
    avail = available_memory_bytes()
    size = path.stat().st_size
    if avail is not None and size > avail:
        raise ModelImportError(
            f"{path}: the file is {human_bytes(size)} but only {human_bytes(avail)} of memory "
            "is free; save its weights as external data (onnx.save_model(..., "
            "save_as_external_data=True)) or use a machine with more memory")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and others
        raise ModelImportError(
            f"{path}: not a readable ONNX model ({type(e).__name__}: {str(e)[:200]})") from None
    if not proto.graph.node and not proto.graph.output:
        raise ModelImportError(f"{path}: not an ONNX model (no graph, no nodes, no outputs)")
    need = weight_bytes(proto)
    if avail is not None and need > avail:
        raise ModelImportError(
            f"{path}: its weights take {human_bytes(need)} but only {human_bytes(avail)} of "
            "memory is free; nothing was loaded. Use a machine with more memory")
    return proto, path.stem, path.parent


def _non_text(msg, path: str):
    """Paths of string fields that are not UTF-8 text (protobuf hands those back as bytes)."""
    for fd, value in msg.ListFields():
        if fd.type not in (fd.TYPE_MESSAGE, fd.TYPE_STRING):
            continue
        repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED
        for i, v in enumerate(value if repeated else [value]):
            here = f"{path}.{fd.name}[{i}]" if repeated else f"{path}.{fd.name}"
            if fd.type == fd.TYPE_MESSAGE:
                yield from _non_text(v, here)
            elif isinstance(v, bytes):
                yield here, v


def check_model(proto: onnx.ModelProto, display: str) -> None:
    """Run onnx's checker and refuse control flow, naming the node."""
    for where, raw in _non_text(proto, "model"):  # e.g. a corrupted name or op type
        raise ModelImportError(f"{display}: not a valid ONNX model: {where} is not UTF-8 text "
                               f"({raw[:60]!r})")
    for node in proto.graph.node:  # If is resolved (or refused) after constant folding
        if node.op_type in CONTROL_FLOW - {"If"} and node.domain in ("", "ai.onnx"):
            refuse_control_flow([node], display)
    if not proto.graph.node:
        raise ModelImportError(f"{display}: the graph has no nodes")
    for node in proto.graph.node:  # the checker's own message would not name the node
        if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type):
            raise UnsupportedOpError(
                f"{display}: node {node.name or '(unnamed)'!r} has op type {node.op_type!r}, which "
                "is not an ONNX operator of the default domain; export with standard ONNX ops")
    try:
        # Structural checks on a weight-free copy: big initializers become typed inputs, so the
        # check neither copies the weights nor trips over the 2 GB protobuf limit.
        onnx.checker.check_model(_weight_free(proto))
    except onnx.checker.ValidationError as e:
        first = " ".join(str(e).split())[:300]  # its node context is on later lines
        raise ModelImportError(f"{display}: the ONNX checker rejects the model: {first}") from None
    except ValueError as e:  # >2 GB protos
        if "2GB" not in str(e) and "2 GB" not in str(e):
            raise ModelImportError(f"{display}: the ONNX checker rejects the model: {e}") from None


def _empty_like(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A model with the same header, opsets, functions and graph name, and an empty graph."""
    out = onnx.ModelProto()
    for f in ("ir_version", "producer_name", "producer_version", "domain", "model_version"):
        setattr(out, f, getattr(proto, f))
    out.opset_import.extend(proto.opset_import)
    out.functions.extend(proto.functions)
    out.graph.name = proto.graph.name
    return out


def _weight_free(proto: onnx.ModelProto) -> onnx.ModelProto:
    light = _empty_like(proto)
    g, src = light.graph, proto.graph
    g.node.extend(src.node)
    g.input.extend(src.input)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    # onnxruntime runs graphs whose inputs/outputs declare no shape; the checker refuses them.
    # fix_input_shapes asks for (or applies) the inputs' dims; shape inference finds the outputs'.
    for v in list(g.input) + list(g.output):
        if v.type.HasField("tensor_type") and not v.type.tensor_type.HasField("shape"):
            v.type.tensor_type.shape.SetInParent()
    declared = {i.name for i in src.input}
    for init in src.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL or len(init.raw_data) > 4096:
            if init.name not in declared:
                g.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        else:
            g.initializer.append(init)
    g.sparse_initializer.extend(src.sparse_initializer)
    return light


def dims_of(vi: onnx.ValueInfoProto) -> tuple[int | str | None, ...] | None:
    """Dims of a value info: ints, symbolic names, or None for unknown; None if no shape."""
    t = vi.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in t.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            out.append(d.dim_param)
        else:
            out.append(None)
    return tuple(out)


def elem_dtype(vi: onnx.ValueInfoProto) -> str:
    et = vi.type.tensor_type.elem_type
    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(et))
    except Exception:
        return "float32"


def _override_dims(real: list[onnx.ValueInfoProto], dims: Mapping[str, int],
                   display: str, skip: set[str]) -> None:
    """onnxruntime's free-dimension overrides: every input dim named NAME becomes VALUE."""
    symbolic = sorted({d.dim_param for vi in real if vi.type.HasField("tensor_type")
                       for d in vi.type.tensor_type.shape.dim if d.dim_param})
    for name, size in dims.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ModelImportError(f"--dim {name}={size!r}: the size must be a positive integer")
        if name not in symbolic:
            known = ", ".join(symbolic) if symbolic else "none: give static dims per input " \
                "with --input-shape"
            raise ModelImportError(
                f"{display}: --dim {name}={size}: no input has a dimension named {name!r} "
                f"(symbolic dims of the inputs: {known})")
    for vi in real:
        if not vi.type.HasField("tensor_type") or vi.name in skip:
            continue  # --input-shape gives that input's dims
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param and d.dim_param in dims:
                d.dim_value = dims[d.dim_param]  # clears dim_param (a oneof)


def fix_input_shapes(proto: onnx.ModelProto, shapes: InputShapes, display: str,
                     dim_sizes: Mapping[str, int] | None = None) -> None:
    """Set the real inputs' dims from --dim (symbolic dims by name, everywhere) and
    --input-shape (per input, which wins); refuse unknown names or symbolic leftovers."""
    inits = {i.name for i in proto.graph.initializer}  # none in a shell (see shell_of)
    real = [i for i in proto.graph.input if i.name not in inits]
    names = [i.name for i in real]
    if dim_sizes:
        _override_dims(real, dict(dim_sizes), display, set(shapes))
    for name in shapes:
        if name not in names:
            raise ModelImportError(
                f"{display}: --input-shape names {name!r}, which is not an input "
                f"(inputs: {', '.join(names)})")
    dynamic: list[tuple[str, tuple[int | str | None, ...]]] = []
    for vi in real:
        dims = dims_of(vi)
        if vi.name in shapes:
            given = shapes[vi.name]
            if dims is not None and len(dims) != len(given):
                raise ModelImportError(
                    f"{display}: --input-shape {vi.name}: the model's input has rank {len(dims)} "
                    f"{_fmt(dims)}, got {len(given)} dims {list(given)}")
            if dims is not None:
                for k, (d, g) in enumerate(zip(dims, given)):
                    if isinstance(d, int) and d != g:
                        raise ModelImportError(
                            f"{display}: --input-shape {vi.name}: dim {k} is fixed to {d} in the "
                            f"model, got {g}")
            shape = vi.type.tensor_type.shape
            del shape.dim[:]
            for g in given:
                shape.dim.add().dim_value = g
            continue
        if dims is None:
            raise ModelImportError(
                f"{display}: input {vi.name!r} has no shape; give it with "
                f"--input-shape {vi.name}=D1,D2,...")
        if any(not isinstance(d, int) for d in dims):
            dynamic.append((vi.name, dims))
    if dynamic:
        listed = "; ".join(f"input {n!r} has dynamic shape {_fmt(d)}" for n, d in dynamic)
        command = " ".join(f"--input-shape {n}={','.join(suggest_dims(d))}" for n, d in dynamic)
        unsure = any("?" in suggest_dims(d) for _, d in dynamic)
        raise ModelImportError(
            f"{display}: {listed}. Give static dims for the size you will run, e.g. {command}"
            + (" (replace each ? with that size)" if unsure else "")
            + " (batch 1, sequences of 128 and 224x224 images are typical guesses: check them)"
            + _dim_hint(dynamic))
    _check_input_memory(real, display)


def _check_input_memory(inputs: Sequence[onnx.ValueInfoProto], display: str) -> None:
    """Refuse, before any work, input dims whose one sample does not fit in the free memory
    (``--input-shape x=1000000000,16``): every input tensor, and the activations computed from
    it, is at least that large."""
    avail = available_memory_bytes()
    if avail is None:
        return
    total = 0
    sizes = []
    for vi in inputs:
        dims = dims_of(vi) or ()
        count = 1
        for d in dims:
            count *= d if isinstance(d, int) and d > 0 else 1
        elem = vi.type.tensor_type.elem_type
        try:
            item = onnx.helper.tensor_dtype_to_np_dtype(elem).itemsize if elem else 4
        except (KeyError, TypeError, ValueError):
            item = 4
        total += count * item
        sizes.append((count * item, vi.name, dims))
    if total > avail:
        size, name, dims = max(sizes)
        raise ModelImportError(
            f"{display}: one sample of the inputs takes {human_bytes(total)} (input {name!r} of "
            f"shape {_fmt(dims)}: {human_bytes(size)}) but only {human_bytes(avail)} of memory is "
            "free; give smaller dims (--input-shape / --dim)")


def _dim_hint(dynamic: list[tuple[str, tuple[int | str | None, ...]]]) -> str:
    """When inputs share symbolic dim names, the --dim flags that set each name once."""
    users: dict[str, set[str]] = {}
    guess: dict[str, str] = {}
    for n, d in dynamic:
        for sym, g in zip(d, suggest_dims(d)):
            if isinstance(sym, str):
                users.setdefault(sym, set()).add(n)
                guess.setdefault(sym, g)
    if not any(len(u) > 1 for u in users.values()):
        return ""
    flags = " ".join(f"--dim {s}={guess[s]}" for s in users)
    return (f"; the inputs share symbolic dims, which --dim sets by name in every input: "
            f"{flags}")


SEQUENCE_WORDS = ("seq", "len", "token", "time", "step", "word", "sentence", "frames")


def suggest_dims(dims: tuple[int | str | None, ...]) -> list[str]:
    """A typical static size for each dim of a dynamic input: the leading (batch) dim 1, a
    sequence dim (by its symbolic name) 128, the spatial dims of a 1- or 3-channel image 224;
    '?' where nothing says what the size is (never a blind 1)."""
    out = []
    image = len(dims) == 4 and dims[1] in (1, 3)
    for k, d in enumerate(dims):
        name = d.lower() if isinstance(d, str) else ""
        if isinstance(d, int):
            out.append(str(d))
        elif k == 0 and (len(dims) > 1 or "batch" in name or name in ("n", "b")):
            out.append("1")
        elif any(w in name for w in SEQUENCE_WORDS) or (len(dims) in (2, 3) and k == 1):
            out.append("128")
        elif image and k >= 2:
            out.append("224")
        else:
            out.append("?")
    return out


def _fmt(dims: tuple[int | str | None, ...]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def infer_shapes(proto: onnx.ModelProto, nodes: list[onnx.NodeProto], consts: Mapping[str, np.ndarray],
                 display: str) -> dict[str, onnx.ValueInfoProto]:
    """Shape inference on a weight-free copy: big constants become typed inputs, small ones stay
    as initializers so that shape computations propagate (data_prop).

    Returns value infos by tensor name for every tensor whose type onnx could infer.
    """
    light = _empty_like(proto)
    g = light.graph
    g.node.extend(nodes)
    g.output.extend(proto.graph.output)
    g.input.extend(i for i in proto.graph.input if i.name not in consts)
    for name, arr in consts.items():
        if arr.size <= 64:
            g.initializer.append(numpy_helper.from_array(arr, name))
        else:
            et = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
            g.input.append(onnx.helper.make_tensor_value_info(name, et, list(arr.shape)))
    try:
        inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True,
                                                     check_type=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ModelImportError(f"{display}: shape inference failed: {msg}") from None
    out: dict[str, onnx.ValueInfoProto] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if vi.name not in out or dims_of(out[vi.name]) is None:  # a graph input that is also an
            out[vi.name] = vi  # output keeps its shape when the output declares none
    return out


def _external_array(init: onnx.TensorProto, base: Path | None, display: str) -> np.ndarray:
    """A read-only memory map of an external tensor (nothing is read until used)."""
    info = _external_info(init)
    loc = info.get("location", "")
    if base is None:
        raise ModelImportError(
            f"{display}: initializer {init.name!r} keeps its data in external file {loc!r}; "
            "import the model from its path so the file can be found")
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type))
    file = (base / loc).resolve()
    if not loc or Path(loc).is_absolute() or base.resolve() not in file.parents:
        raise ModelImportError(f"{display}: initializer {init.name!r}: external data location "
                               f"{loc!r} must be a file beside the model")
    if not file.is_file():
        raise ModelImportError(f"{display}: initializer {init.name!r}: external data file "
                               f"{loc!r} not found next to the model")
    offset = int(info.get("offset", 0) or 0)
    count = int(np.prod(init.dims, dtype=np.int64))
    length = int(info.get("length", count * dtype.itemsize) or count * dtype.itemsize)
    if length != count * dtype.itemsize or offset + length > file.stat().st_size:
        raise ModelImportError(f"{display}: initializer {init.name!r}: external data {loc!r} "
                               f"holds {length} bytes at offset {offset}; the tensor needs "
                               f"{count * dtype.itemsize} (file size {file.stat().st_size})")
    if count == 0:
        return np.zeros(tuple(init.dims), dtype)
    return np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=tuple(init.dims))


def initializer_arrays(proto: onnx.ModelProto, base: Path | None = None,
                       display: str = "model") -> dict[str, np.ndarray]:
    """Every initializer as a numpy array; external data is memory-mapped, not read."""
    out: dict[str, np.ndarray] = {}
    for init in proto.graph.initializer:
        try:
            if init.data_location == onnx.TensorProto.EXTERNAL:
                out[init.name] = _external_array(init, base, display)
            else:
                out[init.name] = numpy_helper.to_array(init)
        except ModelImportError:
            raise
        except Exception as e:
            raise ModelImportError(
                f"{display}: initializer {init.name!r} cannot be read: {e}") from None
    return out


def shell_of(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model without its initializers (cheap to copy and safe to modify)."""
    shell = _empty_like(proto)
    g, src = shell.graph, proto.graph
    inits = {i.name for i in src.initializer}
    g.node.extend(src.node)
    g.input.extend(i for i in src.input if i.name not in inits)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    return shell
