"""Other libraries' contenders (PyTorch, ONNX Runtime) timed in processes of their own.

Two libraries in one process share it badly: each brings its own thread pools (PyTorch's
OpenMP team, its BLAS; ours: OpenBLAS through NumPy, Numba's team), which spin against one
another and against the other library's calls. So the peer library runs in a worker process
started by :class:`Peer`; the parent sends it one contender at a time and asks for samples
in turn with its own, so rounds still alternate between the two sides and
:func:`convbackends.tools.measure.time_calls` sees the peer as one more sampler. The worker
times its calls itself, with the same :class:`~convbackends.tools.measure.Sampler`, so the
pipe's latency is not in the numbers.

Protocol: one JSON object per line each way. ``setup`` imports ``"module:function"`` in the
worker and calls it with keyword arguments; it returns ``(run, info)``: a zero-argument
callable (the contender) and a JSON-able dict describing it. ``sample`` answers
``Sampler(run, min_time=...)(settle)`` and the contention it saw (``last_wait``);
``result`` saves ``run()``'s array where the parent says. Errors come back as
``{"error": "..."}`` and are raised as :class:`PeerError`.

A peer library is a :class:`PeerKind` in :data:`PEERS`: its name on the command line, the
packages it needs, and the setup target that builds its runner for one convolution layer
(:func:`torch_conv`: ``torch.nn.functional.convNd`` under ``inference_mode``;
:func:`onnxruntime_conv`: a one-node ONNX ``Conv`` model in an ``InferenceSession``). Each
peer gets a :class:`Peer` process of its own, so no two libraries share one.
"""

import contextlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConvError
from .measure import Sampler

__all__ = ["Peer", "PeerError", "PeerKind", "PEERS", "missing_packages", "torch_conv",
           "onnxruntime_conv", "onnxruntime_model", "onnxruntime_session", "conv_model",
           "peer_environment", "OWN_DEFAULTS", "ONNX_OPSET", "serve"]

TORCH_CONV = "convbackends.tools.peer:torch_conv"
ONNXRUNTIME_CONV = "convbackends.tools.peer:onnxruntime_conv"
CLOSE_TIMEOUT_SECONDS = 30
# Opset and IR version of the ONNX models built here: opset 17 has every operator the
# models need (Conv, BatchNormalization, pooling, Gemm) and runs on onnxruntime >= 1.14.
ONNX_OPSET = 17
ONNX_IR_VERSION = 8


@dataclass(frozen=True)
class PeerKind:
    """One peer library: what it is called, what it needs, how it runs a layer.

    Attributes
    ----------
    name : str
        Its name in ``--peers`` and its column in the tables.
    label : str
        What it is, for titles.
    packages : tuple of str
        Modules that must be importable for it to run.
    conv : str
        The ``"module:function"`` setup target for one convolution layer: called in the
        worker with ``inputs`` (an ``.npz`` of ``x``, ``w`` and maybe ``b``), ``threads``
        and the layer's ``stride``, ``padding``, ``dilation``, ``groups``.
    """

    name: str
    label: str
    packages: tuple
    conv: str


PEERS = {
    "torch": PeerKind("torch", "PyTorch (torch.nn.functional.convNd, inference_mode)",
                      ("torch",), TORCH_CONV),
    "onnxruntime": PeerKind("onnxruntime", "ONNX Runtime (one-node Conv model, CPU)",
                            ("onnxruntime", "onnx"), ONNXRUNTIME_CONV),
}


def missing_packages(kind):
    """The packages of ``kind`` (a :class:`PeerKind` or its name) not importable here.

    Looks them up without importing them: this process must not load a peer library.
    """
    kind = PEERS[kind] if isinstance(kind, str) else kind
    return [p for p in kind.packages if importlib.util.find_spec(p) is None]


# Set by convbackends for itself at import (``os.environ.setdefault``): PASSIVE OpenMP
# waiting keeps Numba's team from spinning against OpenBLAS on few cores. PyTorch's users do
# not get it, and on 2 cores it changes PyTorch's time per layer.
OWN_DEFAULTS = ("OMP_WAIT_POLICY",)


def _initial_names():
    """Names in this process's environment as it started (Linux), or ``None`` elsewhere."""
    try:
        data = Path("/proc/self/environ").read_bytes()
    except OSError:
        return None
    return {entry.partition(b"=")[0].decode(errors="replace")
            for entry in data.split(b"\0") if entry}


def peer_environment():
    """``os.environ`` less the :data:`OWN_DEFAULTS` that were not there when Python started.

    Where the starting environment cannot be read, ``os.environ`` as it is.
    """
    initial = _initial_names()
    env = dict(os.environ)
    if initial is not None:
        for name in OWN_DEFAULTS:
            if name not in initial:
                env.pop(name, None)
    return env


class PeerError(ConvError, RuntimeError):
    """The peer process failed a request (the message is its exception) or died."""


class Peer:
    """A worker process timing one contender at a time; a context manager.

    The worker sees the parent's ``sys.path`` and environment, so it imports what the
    parent imports, from the same places; but not the variables convbackends set for its
    own thread pools on import (:data:`OWN_DEFAULTS`): a peer library runs with its users'
    defaults unless the user's environment set them (:func:`peer_environment`).
    """

    def __init__(self):
        self.last_wait = None
        env = dict(peer_environment(), PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self._dir = tempfile.TemporaryDirectory(prefix="convbackends-peer-")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from convbackends.tools.peer import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def _ask(self, **request):
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
        except OSError:
            pass                    # a dead worker: the read below reports it
        line = self._proc.stdout.readline()
        if not line:
            raise PeerError(f"the peer process exited (code {self._proc.poll()})")
        reply = json.loads(line)
        if "error" in reply:
            raise PeerError(reply["error"])
        return reply

    def setup(self, target, *, min_time=0.0, **kwargs):
        """Make ``target(**kwargs)``'s callable the contender; returns its info dict.

        ``min_time``: each sample times batches of calls until they took that many seconds
        (:class:`~convbackends.tools.measure.Sampler`).
        """
        return self._ask(cmd="setup", target=target, kwargs=kwargs,
                         min_time=min_time)["info"]

    def setup_conv(self, x, w, b=None, *, target=TORCH_CONV, threads=None, min_time=0.0,
                   **conv_kwargs):
        """Make a peer's convolution on these arrays the contender.

        ``target`` is a :attr:`PeerKind.conv` (default: PyTorch's, :func:`torch_conv`).
        """
        path = Path(self._dir.name) / "inputs.npz"
        np.savez(path, x=x, w=w, **({} if b is None else {"b": b}))
        return self.setup(target, inputs=str(path), threads=threads, min_time=min_time,
                          **conv_kwargs)

    def sample(self, settle=0.0):
        """Seconds per call of the contender, timed in the worker: a sampler.

        Sets :attr:`last_wait`: the worker's run-queue wait during the sample, over its
        wall time (see :class:`~convbackends.tools.measure.Sampler`).
        """
        reply = self._ask(cmd="sample", settle=settle)
        self.last_wait = reply.get("wait")
        return reply["seconds"]

    def result(self):
        """The contender's output, as an array in this process."""
        path = Path(self._dir.name) / "result.npy"
        self._ask(cmd="result", path=str(path))
        return np.load(path)

    def close(self):
        """End the worker (it stops when its stdin closes) and remove its files."""
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=CLOSE_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:       # stuck in a call: nothing left to wait for
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()
        self._dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _listify(value):
    # JSON turns tuples into lists; PyTorch wants an int or a tuple.
    return tuple(value) if isinstance(value, list) else value


def torch_conv(inputs, threads=None, stride=1, padding=0, dilation=1, groups=1):
    """``torch.nn.functional.convNd`` on the arrays ``x``, ``w`` (and ``b``) of an ``.npz``.

    Runs under ``torch.inference_mode()``, with ``threads`` PyTorch threads (default: its
    own choice). Returns ``(run, info)`` as a ``setup`` target must.
    """
    import torch
    if threads:
        torch.set_num_threads(int(threads))
    with np.load(inputs) as arrays:
        x, w = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["w"])
        b = torch.from_numpy(arrays["b"]) if "b" in arrays.files else None
    fn = getattr(torch.nn.functional, f"conv{x.dim() - 2}d")
    args = [_listify(v) for v in (stride, padding, dilation)] + [int(groups)]

    def run():
        with torch.inference_mode():
            return fn(x, w, b, *args).numpy()

    return run, {"library": f"torch {torch.__version__}", "threads": torch.get_num_threads()}


def onnxruntime_session(model, threads=None):
    """An ONNX Runtime CPU ``InferenceSession`` on ``model`` (bytes or a file path).

    ``threads`` intra-op threads (default: ONNX Runtime's own choice), one inter-op thread,
    sequential execution, every graph optimisation.
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3          # warnings about unused initialisers and the like
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _per_dim(value, nd):
    value = _listify(value)
    return [int(v) for v in value] if isinstance(value, tuple) else [int(value)] * nd


def conv_model(x_shape, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    """A one-node ONNX ``Conv`` model: input ``x`` of ``x_shape``, weights as initialisers.

    ``padding`` is symmetric per spatial dim, as in :func:`convbackends.conv`. Returns the
    ``onnx.ModelProto``, checked.
    """
    import onnx
    from onnx import helper, numpy_helper
    nd = len(x_shape) - 2
    pads, strides, dilations = (_per_dim(v, nd) for v in (padding, stride, dilation))
    y_shape = [x_shape[0], w.shape[0]] + [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(x_shape[2:], w.shape[2:], strides, pads, dilations)]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(w.dtype))
    inits = [numpy_helper.from_array(np.asarray(w), "w")]
    if b is not None:
        inits.append(numpy_helper.from_array(np.asarray(b), "b"))
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if b is not None else []), ["y"],
                            kernel_shape=list(w.shape[2:]), strides=strides,
                            pads=pads + pads, dilations=dilations, group=int(groups))
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info(
        "x", elem, list(x_shape))], [helper.make_tensor_value_info("y", elem, y_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              ir_version=ONNX_IR_VERSION, producer_name="convbackends")
    onnx.checker.check_model(model)
    return model


def onnxruntime_conv(inputs, threads=None, stride=1, padding=0, dilation=1, groups=1):
    """ONNX Runtime's ``Conv`` on the arrays ``x``, ``w`` (and ``b``) of an ``.npz``.

    One node per layer (:func:`conv_model`), run in :func:`onnxruntime_session` with the
    output bound to a reused buffer (as ours writes into ``out=``). Returns ``(run, info)``.
    """
    import onnxruntime as ort
    with np.load(inputs) as arrays:
        x, w = arrays["x"], arrays["w"]
        b = arrays["b"] if "b" in arrays.files else None
    model = conv_model(x.shape, w, b, stride=stride, padding=padding, dilation=dilation,
                       groups=groups)
    session = onnxruntime_session(model.SerializeToString(), threads)
    y = np.empty_like(session.run(None, {"x": x})[0])
    binding = session.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_output("y", "cpu", 0, y.dtype, y.shape, y.ctypes.data)

    def run():
        session.run_with_iobinding(binding)
        return y

    return run, {"library": f"onnxruntime {ort.__version__}", "threads": threads,
                 "opset": ONNX_OPSET}


def onnxruntime_model(model, inputs, threads=None):
    """ONNX Runtime on an ONNX file ``model``, fed the array ``x`` of the ``.npz`` ``inputs``.

    For whole networks (their graph exported elsewhere). Returns ``(run, info)``.
    """
    import onnxruntime as ort
    with np.load(inputs) as arrays:
        x = np.ascontiguousarray(arrays["x"])
    session = onnxruntime_session(str(model), threads)
    feed = {session.get_inputs()[0].name: x}

    def run():
        return session.run(None, feed)[0]

    return run, {"library": f"onnxruntime {ort.__version__}", "threads": threads}


def _handle(state, request):
    cmd = request["cmd"]
    if cmd == "setup":
        module, _, name = request["target"].partition(":")
        run, info = getattr(importlib.import_module(module), name)(**request["kwargs"])
        state["run"] = run
        state["sampler"] = Sampler(run, min_time=request.get("min_time", 0.0), watch=True)
        return {"info": info}
    if cmd == "sample":
        seconds = state["sampler"](request["settle"])
        return {"seconds": seconds, "wait": state["sampler"].last_wait}
    if cmd == "result":
        np.save(request["path"], np.asarray(state["run"]()))
        return {}
    raise PeerError(f"unknown request {cmd!r}")


def serve():
    """The worker: answer requests from stdin on stdout until stdin closes.

    Importing this module imported convbackends, which set :data:`OWN_DEFAULTS` again; they
    are taken back out (unless this process started with them) before any peer library
    loads and reads them.
    """
    os.environ.clear()
    os.environ.update(peer_environment())
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)                   # what the peer library prints must not corrupt replies
    state = {}
    for line in sys.stdin:
        try:
            reply = _handle(state, json.loads(line))
        except Exception as e:      # reported to the parent, which decides
            reply = {"error": f"{type(e).__name__}: {e}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
