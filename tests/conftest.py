"""Shared fixtures: which backends the conformance suite holds to their claims, and the
random arrays the per-backend test files build their cases from."""

import os
import zlib

import numpy as np
import pytest

import convbackends as cb


def conformance_backends():
    """Every registered, available backend but ``auto``.

    Under Numba's CUDA simulator every thread is a Python thread, so ``cuda`` is held to the
    grid in ``tests/test_cuda_backend.py`` on small shapes instead.
    """
    names = [n for n in cb.available_backends() if n != "auto"]
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        names = [n for n in names if n != "cuda"]
    return names


BACKENDS = conformance_backends()


@pytest.fixture
def rng(request):
    # A fresh generator per test, seeded from the test's name, so failures reproduce.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def conv_arrays(rng, x_shape, w_shape, dtype, bias=True, bias_channels=None):
    """Random ``(x, weight, bias)`` of ``dtype``, standard normal; with ``bias=False`` the
    bias is ``None``.

    ``bias_channels`` defaults to ``w_shape[0]`` (a convolution's output channels); pass
    ``w_shape[1] * groups`` for a transposed convolution.
    """
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    channels = w_shape[0] if bias_channels is None else bias_channels
    b = rng.standard_normal(channels).astype(dtype) if bias else None
    return x, w, b
