"""Another library's contender (PyTorch) timed in a process of its own.

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
``Sampler(run)(settle)``; ``result`` saves ``run()``'s array where the parent says.
"""

import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ConvError
from .measure import Sampler

__all__ = ["Peer", "PeerError", "torch_conv", "serve"]

TORCH_CONV = "convbackends.tools.peer:torch_conv"
CLOSE_TIMEOUT_SECONDS = 30


class PeerError(ConvError, RuntimeError):
    """The peer process failed a request (the message is its exception) or died."""


class Peer:
    """A worker process timing one contender at a time; a context manager.

    The worker sees the parent's ``sys.path`` and environment, so it imports what the
    parent imports, from the same places.
    """

    def __init__(self):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
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

    def setup(self, target, **kwargs):
        """Make ``target(**kwargs)``'s callable the contender; returns its info dict."""
        return self._ask(cmd="setup", target=target, kwargs=kwargs)["info"]

    def setup_conv(self, x, w, b=None, *, threads=None, **conv_kwargs):
        """Make PyTorch's ``convNd`` on these arrays the contender (see :func:`torch_conv`)."""
        path = Path(self._dir.name) / "inputs.npz"
        np.savez(path, x=x, w=w, **({} if b is None else {"b": b}))
        return self.setup(TORCH_CONV, inputs=str(path), threads=threads, **conv_kwargs)

    def sample(self, settle=0.0):
        """Seconds per call of the contender, timed in the worker: a sampler."""
        return self._ask(cmd="sample", settle=settle)["seconds"]

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


def _handle(state, request):
    cmd = request["cmd"]
    if cmd == "setup":
        module, _, name = request["target"].partition(":")
        run, info = getattr(importlib.import_module(module), name)(**request["kwargs"])
        state["run"], state["sampler"] = run, Sampler(run)
        return {"info": info}
    if cmd == "sample":
        return {"seconds": state["sampler"](request["settle"])}
    if cmd == "result":
        np.save(request["path"], np.asarray(state["run"]()))
        return {}
    raise PeerError(f"unknown request {cmd!r}")


def serve():
    """The worker: answer requests from stdin on stdout until stdin closes."""
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
