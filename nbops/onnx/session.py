"""Loading an ONNX model into a plan of bound nbops calls, and running that plan on NumPy or CUDA arrays.

``load`` checks the graph once (our own producer check and topological sort, then ``onnx.checker`` and shape
inference), binds each node to a converter from :mod:`nbops.onnx.converters` with its attributes already read,
folds nodes whose inputs are all constants, and records after which node each intermediate value is last read.
``Session.run`` then only walks that list: look up the inputs, call, store the outputs, release dead values.

Where values live. Graph inputs decide the target: NumPy arrays (or CPU torch tensors) run the cpu kernels, CUDA
arrays the cuda kernels. Shape metadata (the outputs of Shape and Size, and whatever is computed only from them and
from constants) stays a small NumPy array on the host on both targets, so that Reshape, Slice, Expand and the like
read their parameters without a device-to-host copy. A node runs on the device when any of its inputs is on the
device; its host data inputs are then copied there (constants once per session, other host values on each run),
while its parameters stay on the host (read back from the device when they were computed there).
"""

import contextlib
import functools
import heapq

import numpy as np

from .._arrays import NUMPY, call_stream, cuda_stream, kind_of, native, target_of_kind, wrap
from . import converters

SUPPORTED_DTYPES = tuple(np.dtype(t) for t in
                         (np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_))


class UnsupportedModelError(ValueError):
    """The model uses an operator, attribute or dtype that nbops.onnx does not run (raised by ``load``)."""


class ValueInfo:
    """A graph input or output as ``Session.get_inputs()`` reports it: ``name``, ``shape`` (ints, and strings for
    named dynamic dims, None for unnamed ones) and ``type`` (onnxruntime's spelling, e.g. ``'tensor(float)'``);
    ``dtype`` is the NumPy dtype."""

    def __init__(self, name, shape, dtype, type_name):
        self.name, self.shape, self.dtype, self.type = name, shape, dtype, type_name

    def __repr__(self):
        return f"ValueInfo(name={self.name!r}, shape={self.shape!r}, type={self.type!r})"


def _value_info(vi):
    import onnx

    t = vi.type.tensor_type
    shape = None
    if t.HasField("shape"):
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)) if t.elem_type else None
    type_name = "tensor(" + onnx.TensorProto.DataType.Name(t.elem_type).lower() + ")" if t.elem_type else None
    return ValueInfo(vi.name, shape, dtype, type_name)


def _as_model(path_or_model):
    import onnx

    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    if isinstance(path_or_model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(path_or_model))
    return onnx.load(path_or_model)


def _topological(graph, known):
    """The graph's nodes in an order where every input is produced before it is read (Kahn's algorithm, keeping
    the file's order among ready nodes). Raises UnsupportedModelError for an input nothing produces, or a cycle."""
    producer = {}
    for i, node in enumerate(graph.node):
        for out in node.output:
            if out:
                producer[out] = i
    for node in graph.node:
        for name in node.input:
            if name and name not in producer and name not in known:
                raise UnsupportedModelError(
                    f"node {node.name!r} ({node.op_type}): input {name!r} is not a graph input, an initializer or "
                    f"the output of any node (a missing initializer?)")
    waiting = [sum(1 for n in set(node.input) if n in producer) for node in graph.node]
    readers = {}
    for i, node in enumerate(graph.node):
        for name in set(node.input):
            if name in producer:
                readers.setdefault(name, []).append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    order = []
    heapq.heapify(ready)
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for out in graph.node[i].output:
            for j in readers.get(out, ()):
                waiting[j] -= 1
                if waiting[j] == 0:
                    heapq.heappush(ready, j)
    if len(order) != len(graph.node):
        raise UnsupportedModelError("the graph has a cycle")
    return [graph.node[i] for i in order]


class _Step:
    """One bound node: the converter's function, its input and output slots, the slots released after it."""

    __slots__ = ("name", "op", "fn", "host", "inputs", "outputs", "release")

    def __init__(self, name, op, fn, host, inputs, outputs):
        self.name, self.op, self.fn, self.host = name, op, fn, host
        self.inputs, self.outputs, self.release = inputs, outputs, ()


def _readers(steps):
    """Each value's reading steps (a step reading a value twice counts once)."""
    readers = {}
    for step in steps:
        for s in set(step.inputs):
            readers.setdefault(s, []).append(step)
    return readers


def _only_reader(readers, outputs, step):
    """The one step that reads ``step``'s single output, where that output is not a graph output; else None."""
    out = step.outputs[0]
    r = readers.get(out, ())
    return r[0] if out not in outputs and len(r) == 1 and len(step.outputs) == 1 else None


def _scale(out, reader, constants):
    """The constant one-element float (0-d) that ``reader`` multiplies ``out`` by, or divides it by (``out`` the
    numerator); None when ``reader`` is anything else."""
    if reader.op not in ("Mul", "Div") or len(set(reader.inputs)) != 2 or \
            (reader.op == "Div" and reader.inputs[0] != out):
        return None
    c = constants.get(reader.inputs[1] if reader.inputs[0] == out else reader.inputs[0])
    return c.reshape(()) if c is not None and c.size == 1 and c.dtype in converters.FLOATS else None


def _fuse(steps, constants, outputs, slot):
    """Two rewrites of a MatMul whose output has one reader and is not a graph output; the fused step sits at the
    MatMul's place and writes the reader's output.

    - MatMul by a constant 2-D float weight, then Add of a constant bias of one entry per column: one
      ``nbops.linear`` (the bias added as the GEMM stores its first tiles: one pass over the result fewer).
    - MatMul, then Div or Mul by a constant one-element float (attention's 1/sqrt(d)): one GEMM whose store scales
      by alpha (``converters.scaled_matmul``), instead of a second pass over the product.
    """
    readers = _readers(steps)
    fused, dropped = [], set()
    for step in steps:
        if id(step) in dropped:
            continue
        out = step.outputs[0]
        reader = _only_reader(readers, outputs, step) if step.op == "MatMul" else None
        if reader is None:
            fused.append(step)
            continue
        name = f"{step.name}+{reader.name}"
        bias = (reader.inputs[1] if reader.inputs[0] == out else reader.inputs[0]) \
            if reader.op == "Add" and len(set(reader.inputs)) == 2 else None
        c, w = constants.get(bias), constants.get(step.inputs[1])
        scale = _scale(out, reader, constants)
        if c is not None and w is not None and w.ndim == 2 and w.dtype in converters.FLOATS and \
                c.shape == (w.shape[1],) and c.dtype == w.dtype:
            w_t = slot(f"{step.name}/weight.T (fused)")
            constants[w_t] = w.T
            fused.append(_Step(name, "MatMul+Add", converters.linear, frozenset(), (step.inputs[0], w_t, bias),
                               reader.outputs))
        elif scale is not None:
            fn = functools.partial(converters.scaled_matmul, scale=scale, divide=reader.op == "Div")
            fused.append(_Step(name, f"MatMul+{reader.op}", fn, frozenset(), step.inputs, reader.outputs))
        else:
            fused.append(step)
            continue
        dropped.add(id(reader))
    return fused


def _fuse_attention(steps, constants, outputs, last_axis):
    """Attention as one step: MatMul(q, kT), optionally Div or Mul by a constant one-element float (``_scale``),
    Softmax over the last axis (``last_axis``: ids of such steps), MatMul of the weights by v; each intermediate
    read once and not a graph output. The fused step (``converters.attention``: on the CPU one kernel that keeps
    the scores in cache) takes (q, kT, v) and sits at the last MatMul's place, where v is known to be computed."""
    readers = _readers(steps)
    at, dropped = {}, set()
    for step in steps:
        if step.op != "MatMul":
            continue
        chain, scale, divide = [step], None, False
        nxt = _only_reader(readers, outputs, step)
        if nxt is not None and nxt.op in ("Mul", "Div"):
            scale, divide = _scale(step.outputs[0], nxt, constants), nxt.op == "Div"
            if scale is None:
                continue
            chain.append(nxt)
            nxt = _only_reader(readers, outputs, nxt)
        if nxt is None or nxt.op != "Softmax" or id(nxt) not in last_axis:
            continue
        weights = nxt.outputs[0]
        last = _only_reader(readers, outputs, nxt)
        if last is None or last.op != "MatMul" or last.inputs[0] != weights or last.inputs[1] == weights:
            continue
        chain += [nxt, last]
        fn = functools.partial(converters.attention, scale=scale, divide=divide)
        at[id(last)] = _Step("+".join(s.name for s in chain), "Attention", fn, frozenset(),
                             (step.inputs[0], step.inputs[1], last.inputs[1]), last.outputs)
        dropped.update(id(s) for s in chain[:-1])
    return [at.get(id(step), step) for step in steps if id(step) not in dropped]


class Runtime:
    """What a converter's function may ask of the run it is part of: the run's target, moving a host array there
    (``put``), reading a parameter array on the host (``host``) and making a constant next to another array.
    ``stream``: the CUDA stream the run's kernels and transfers go on (0: numba's default stream)."""

    def __init__(self, target, session=None, stream=0):
        self.target, self.stream = target, stream
        self._session = session

    def put(self, x):
        """Host NumPy array ``x`` on this run's target (itself on cpu), copied on the run's stream."""
        if self.target == "cpu" or not isinstance(x, np.ndarray):
            return x
        from numba import cuda

        return cuda.to_device(np.asarray(x, order="C"), stream=self.stream)  # (ascontiguousarray makes 0-D 1-D)

    def host(self, x):
        """``x`` as a host NumPy array (a device-to-host copy for a device array, which waits for the run's stream:
        parameters only)."""
        if x is None or isinstance(x, np.ndarray):
            return x
        out = x.copy_to_host(stream=self.stream)
        if not isinstance(self.stream, int):  # 0 is the default stream, where the copy is synchronous
            self.stream.synchronize()
        return out

    def constant(self, value):
        """Small NumPy array ``value`` on this run's target (on cuda, copied once per session and value)."""
        if self.target == "cpu":
            return value
        return self._session._device_constant(value) if self._session is not None else self.put(value)

    def like(self, x, value):
        """Small NumPy array ``value`` on the same side as array ``x`` (host or device)."""
        if isinstance(x, np.ndarray):
            return value
        return self.constant(value)


class Session:
    """A loaded model, ready to run: onnxruntime's ``InferenceSession`` shape of API on nbops kernels.

    ``run(output_names, {input_name: array})`` returns a list of arrays of the kind the inputs were (NumPy in,
    NumPy out; numba device arrays, CuPy arrays or CUDA torch tensors in, the same kind out on the device).
    """

    def __init__(self, model):
        import onnx

        graph = model.graph
        for n in graph.node:
            if n.domain not in ("", "ai.onnx"):
                raise UnsupportedModelError(f"node {n.name!r} ({n.op_type}): domain {n.domain!r} is not supported")
        for vi in list(graph.input) + list(graph.output):
            if not vi.type.HasField("tensor_type"):
                raise UnsupportedModelError(f"graph input/output {vi.name!r} is not a tensor (sequences, maps and "
                                            f"optionals are not supported)")
        self.opset = next((op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), 1)
        init_names = {t.name for t in graph.initializer}
        inputs = [vi for vi in graph.input if vi.name not in init_names]
        known = init_names | {vi.name for vi in inputs}
        ordered = _topological(graph, known)
        if list(ordered) != list(graph.node):
            model = onnx.ModelProto.FromString(model.SerializeToString())
            del model.graph.node[:]
            model.graph.node.extend(ordered)
            graph = model.graph
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as e:
            raise UnsupportedModelError(f"the model does not pass onnx.checker: {e}") from None
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception:  # inference is a help, not a requirement: a model it cannot type still runs
            inferred = model
        types = {}
        for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            types[vi.name] = _value_info(vi)
        for t in graph.initializer:
            types[t.name] = ValueInfo(t.name, list(t.dims), np.dtype(onnx.helper.tensor_dtype_to_np_dtype(
                t.data_type)), None)
        for name, info in types.items():
            if info.dtype is not None and info.dtype not in SUPPORTED_DTYPES:
                raise UnsupportedModelError(f"value {name!r} has dtype {info.type or info.dtype}; nbops.onnx runs "
                                            f"{', '.join(str(d) for d in SUPPORTED_DTYPES)}")
        self._inputs = [_value_info(vi) for vi in inputs]
        self._outputs = [types.get(vi.name, _value_info(vi)) for vi in graph.output]
        for o, vi in zip(self._outputs, graph.output):
            if o.type is None:
                o.type = _value_info(vi).type

        slots = {}

        def slot(name):
            if name not in slots:
                slots[name] = len(slots)
            return slots[name]

        constants = {}
        for t in graph.initializer:
            constants[slot(t.name)] = onnx.numpy_helper.to_array(t)
        for vi in inputs:
            slot(vi.name)
        steps = []
        last_axis = set()  # the Softmax steps over the last axis whatever the rank
        cpu = Runtime("cpu")
        for node in graph.node:
            info = converters.NodeInfo(node, self.opset, types, {n: constants[slots[n]] for n in node.input
                                                                 if n in slots and slots[n] in constants},
                                       UnsupportedModelError)
            fn, host = converters.bind(info)
            step = _Step(node.name or node.op_type, node.op_type, fn, host,
                         tuple(slot(n) if n else -1 for n in node.input), tuple(slot(n) if n else -1
                                                                            for n in node.output))
            if all(s < 0 or s in constants for s in step.inputs):
                for s, v in zip(step.outputs, self._call(step, [constants.get(s) for s in step.inputs], cpu)):
                    if s >= 0:
                        constants[s] = v
                continue
            steps.append(step)
            if node.op_type == "Softmax" and self.opset >= 13 and info.attr("axis", -1) == -1:
                last_axis.add(id(step))
        graph_outputs = {slots[vi.name] for vi in graph.output}
        steps = _fuse(_fuse_attention(steps, constants, graph_outputs, last_axis), constants, graph_outputs, slot)
        self._slots = slots
        self._constants = constants
        self._device_copies = {}
        self._device_small = {}
        self._input_slots = [slots[vi.name] for vi in self._inputs]
        self._output_slots = {vi.name: slots[vi.name] for vi in graph.output}
        keep = set(self._output_slots.values()) | set(constants)
        last = {}
        for i, step in enumerate(steps):
            for s in step.inputs:
                if s >= 0:
                    last[s] = i
            for s in step.outputs:  # an output nothing reads dies right after its node
                if s >= 0:
                    last.setdefault(s, i)
        for s, i in last.items():
            if s not in keep:
                steps[i].release += (s,)
        producer = {s: step.op for step in steps for s in step.outputs}
        for step in steps:  # an activation whose input dies here and is a fresh buffer overwrites it
            if step.op in converters.IN_PLACE and step.inputs[0] in step.release and \
                    producer.get(step.inputs[0]) in converters.FRESH_OUTPUT:
                step.fn = converters.IN_PLACE[step.op]
        self._steps = steps

    def get_inputs(self):
        """The graph inputs (initializers excluded), as :class:`ValueInfo`: name, shape, type."""
        return list(self._inputs)

    def get_outputs(self):
        """The graph outputs, as :class:`ValueInfo`: name, shape (as inferred), type."""
        return list(self._outputs)

    def _device_constant(self, value):
        key = (value.dtype.str, value.shape, value.tobytes())
        if key not in self._device_small:
            self._device_small[key] = Runtime("cuda").put(value)  # the default stream: a synchronous copy
        return self._device_small[key]

    def _check_input(self, vi, x):
        shape, dtype = tuple(x.shape), np.dtype(x.dtype)
        if vi.dtype is not None and dtype != vi.dtype:
            raise TypeError(f"nbops.onnx run(): input {vi.name!r} has dtype {dtype}, the model declares {vi.type}")
        if vi.shape is not None:
            if len(shape) != len(vi.shape) or any(isinstance(d, int) and d != s for d, s in zip(vi.shape, shape)):
                raise ValueError(f"nbops.onnx run(): input {vi.name!r} has shape {shape}, the model declares "
                                 f"{tuple(vi.shape)}")

    def run(self, output_names, input_feed, run_options=None):
        """Run the model once. ``output_names``: names to return (None: all graph outputs, in order);
        ``input_feed``: ``{input_name: array}``. Returns a list of arrays, the same kind as the inputs."""
        names = list(self._output_slots) if output_names is None else list(output_names)
        for n in names:
            if n not in self._output_slots:
                raise ValueError(f"nbops.onnx run(): {n!r} is not a graph output; outputs: {list(self._output_slots)}")
        missing = [vi.name for vi in self._inputs if vi.name not in input_feed]
        extra = [n for n in input_feed if n not in {vi.name for vi in self._inputs}]
        if missing or extra:
            raise ValueError(f"nbops.onnx run(): missing inputs {missing}, unknown inputs {extra}; the model takes "
                             f"{[vi.name for vi in self._inputs]}")
        values = [None] * len(self._slots)
        kind = like = target = None
        for vi, s in zip(self._inputs, self._input_slots):
            x = input_feed[vi.name]
            if isinstance(x, np.generic):
                x = np.asarray(x)
            k = kind_of(x)
            if k is None:
                raise TypeError(f"nbops.onnx run(): input {vi.name!r} must be an array (numpy.ndarray, torch.Tensor "
                                f"or a CUDA array), got {type(x).__name__}")
            t = target_of_kind(x, k)
            if target is None:
                kind, like, target = k, x, t
            elif t != target:
                raise ValueError(f"nbops.onnx run(): inputs live on both {target} and {t}")
            x = native(x, k)
            self._check_input(vi, x)
            values[s] = x
        target = target or "cpu"
        kind = kind or NUMPY
        for s, v in self._constants.items():
            values[s] = v
        stream = call_stream(kind, like) if target == "cuda" else 0
        rt = Runtime(target, self, stream)
        on_stream = cuda_stream(stream) if not isinstance(stream, int) else contextlib.nullcontext()
        with on_stream:  # every op of the run on the caller's stream
            for step in self._steps:
                outs = self._call(step, [values[s] if s >= 0 else None for s in step.inputs], rt)
                for s, v in zip(step.outputs, outs):
                    if s >= 0:
                        values[s] = v
                for s in step.release:
                    values[s] = None
        result = []
        for n in names:
            v = values[self._output_slots[n]]
            if target != "cpu" and isinstance(v, np.ndarray):
                v = rt.put(v)
            elif self._output_slots[n] in self._constants:  # never hand out the session's own constant
                v = v.copy()
            result.append(wrap(v, kind, like))
        return result

    def _call(self, step, args, rt):
        if rt.target != "cpu":  # on the device when any input is there (a Gather of a constant table by indices
            # computed on the device runs there too); host parameters stay on the host
            if any(a is not None and not isinstance(a, np.ndarray) for a in args):
                args = [self._to_device(step.inputs[i], a, rt) if isinstance(a, np.ndarray) and i not in step.host
                        else a for i, a in enumerate(args)]
        try:
            out = step.fn(rt, *args)
        except (TypeError, ValueError, IndexError) as e:
            raise type(e)(f"node {step.name!r} ({step.op}): {e}") from e
        return out if isinstance(out, tuple) else (out,)

    def _to_device(self, s, a, rt):
        if s in self._constants and self._constants[s] is a:
            if s not in self._device_copies:  # once per session, on the default stream: a synchronous copy
                self._device_copies[s] = Runtime("cuda").put(a)
            return self._device_copies[s]
        return rt.put(a)


def load(path_or_model):
    """Load an ONNX model (a path, serialized bytes or an ``onnx.ModelProto``) into a :class:`Session`.

    Everything that can fail is checked here: an operator, attribute value, opset or dtype nbops.onnx does not run
    raises :class:`UnsupportedModelError` naming the node, its op type and the opset; so does a node input that
    nothing produces, and a model that fails ``onnx.checker``.

    >>> import numpy as np, onnx
    >>> from onnx import helper, TensorProto
    >>> g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
    ...                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
    ...                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])
    >>> sess = load(helper.make_model(g))
    >>> sess.run(None, {"x": np.array([[-1.0, 0.5, 2.0]], np.float32)})[0]
    array([[0. , 0.5, 2. ]], dtype=float32)
    """
    return Session(_as_model(path_or_model))
