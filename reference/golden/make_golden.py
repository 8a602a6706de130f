"""Regenerate the golden cases in ``reference/golden/cases/`` from PyTorch.

Run from the repository root with the project's venv (needs torch==2.13.0)::

    .venv/bin/python reference/golden/make_golden.py

Every case is one ``.npz`` file holding ``x``, ``weight`` (convolutions only), ``bias``
(when used), ``y`` (PyTorch's output) and ``params`` (a 0-d string array of JSON:
``{"func": ..., "kwargs": ..., "torch": ..., "dtype": ...}``). ``kwargs`` are the keyword
arguments exactly as the ``convbackends`` functional API takes them. The generator is
seeded and single-threaded, so rerunning it rewrites the same files.

Calls that PyTorch cannot make directly are computed from PyTorch operations as PyTorch's
own layers would: asymmetric ``(before, after)`` padding pads with ``F.pad`` (zeros,
``-inf`` for max pooling, the ``padding_mode`` for convolution) and calls with padding 0;
transposed convolution with asymmetric padding crops the unpadded output; average pooling
with ``count_include_pad=False`` and asymmetric padding divides the zero-padded average of
``x`` by that of a mask of ones; average pooling with dilation (an extension beyond
PyTorch) sums windows with a ones-kernel depthwise ``conv`` and divides by the counted taps.
Where PyTorch's ``ceil_mode`` rule after ``F.pad`` (the last window must start inside the
padded input) keeps one more window than the contract's rule (it must start inside the input
or the left padding), the extra output is dropped.

The parity cases (max pooling with indices, adaptive max pooling, max unpooling, average
pooling with ``divisor_override``, max pooling of NaN and infinite inputs) go to
``cases/parity/`` from a generator of their own; see ``build_parity``.
"""

import json
import pathlib
import shutil
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
torch.manual_seed(0)
# padding="same" with an even kernel warns that it copies the input; that is expected here.
warnings.filterwarnings("ignore", message="Using padding='same'")

if not torch.__version__.startswith("2.13.0"):
    sys.exit(f"make_golden.py needs torch 2.13.0, found {torch.__version__}")

HERE = pathlib.Path(__file__).resolve().parent
CASES = HERE / "cases"
rng = np.random.default_rng(20240611)

# --------------------------------------------------------------------------- helpers


def nd_of(func):
    return int(func.rstrip("d")[-1])


def tup(v, nd):
    if v is None:
        return None
    if isinstance(v, int):
        return (v,) * nd
    return tuple(int(a) for a in v)


def is_pairs(p):
    return isinstance(p, (list, tuple)) and any(isinstance(e, (list, tuple)) for e in p)


def pairs_of(padding, nd, kernel=None, dilation=None):
    """(before, after) pairs of any convbackends padding form (for sizes and F.pad)."""
    if padding == "valid":
        return ((0, 0),) * nd
    if padding == "same":
        out = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            out.append((total // 2, total - total // 2))
        return tuple(out)
    if isinstance(padding, int):
        return ((padding, padding),) * nd
    if is_pairs(padding):
        return tuple((int(b), int(a)) for b, a in padding)
    return tuple((int(p), int(p)) for p in padding)


def torch_pad_arg(pairs):
    """F.pad wants the last dim first."""
    out = []
    for b, a in reversed(pairs):
        out += [b, a]
    return out


def contract_pool_out(L, k, s, b, a, d, ceil_mode):
    num = L + b + a - d * (k - 1) - 1
    if not ceil_mode:
        return num // s + 1
    o = -(-num // s) + 1
    if (o - 1) * s >= L + b:
        o -= 1
    return o


def rand(shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def sizes(nd, lo=5, hi=13, need=None):
    """Random odd-ish spatial sizes in [lo, hi], at least ``need`` per dim."""
    need = need or (0,) * nd
    return tuple(int(rng.integers(max(lo, n), max(hi, n) + 1)) for n in need)


# --------------------------------------------------------------------------- torch references


def t_conv(func, kw, x, w, b):
    nd = nd_of(func)
    stride = tup(kw.get("stride", 1), nd)
    dilation = tup(kw.get("dilation", 1), nd)
    groups = kw.get("groups", 1)
    padding = kw.get("padding", 0)
    mode = kw.get("padding_mode", "zeros")
    if is_pairs(padding):
        pairs = pairs_of(padding, nd)
        xp = F.pad(x, torch_pad_arg(pairs), mode="constant" if mode == "zeros" else mode)
        fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
        return fn(xp, w, b, stride, 0, dilation, groups), "F.pad(x, mode) + F.conv(padding=0)"
    cls = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[nd]
    pad = padding if isinstance(padding, (int, str)) else tuple(padding)
    m = cls(
        x.shape[1], w.shape[0], tuple(w.shape[2:]), stride=stride, padding=pad, dilation=dilation,
        groups=groups, bias=b is not None, padding_mode=mode, dtype=x.dtype,
    )
    with torch.no_grad():
        m.weight.copy_(w)
        if b is not None:
            m.bias.copy_(b)
        return m(x), f"torch.nn.{cls.__name__}"


def t_conv_transpose(func, kw, x, w, b):
    nd = nd_of(func)
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    stride = tup(kw.get("stride", 1), nd)
    dilation = tup(kw.get("dilation", 1), nd)
    op = tup(kw.get("output_padding", 0), nd)
    groups = kw.get("groups", 1)
    padding = kw.get("padding", 0)
    if is_pairs(padding) or padding == "valid":
        pairs = pairs_of(padding, nd)
        y = fn(x, w, b, stride, 0, op, groups, dilation)
        crop = tuple(slice(bb, y.shape[2 + i] - aa) for i, (bb, aa) in enumerate(pairs))
        return y[(slice(None), slice(None)) + crop], "F.conv_transpose(padding=0) then crop"
    pad = padding if isinstance(padding, int) else tuple(padding)
    return fn(x, w, b, stride, pad, op, groups, dilation), f"F.{fn.__name__}"


def trim(y, out):
    assert all(a >= o for a, o in zip(y.shape[2:], out)), (y.shape, out)
    return y[(slice(None), slice(None)) + tuple(slice(0, o) for o in out)]


def pool_geometry(func, kw, x):
    nd = nd_of(func)
    k = tup(kw["kernel_size"], nd)
    s = tup(kw.get("stride"), nd) or k
    d = tup(kw.get("dilation", 1), nd)
    pairs = pairs_of(kw.get("padding", 0), nd)
    ceil = kw.get("ceil_mode", False)
    out = tuple(
        contract_pool_out(L, kk, ss, b, a, dd, ceil)
        for L, kk, ss, (b, a), dd in zip(x.shape[2:], k, s, pairs, d)
    )
    return nd, k, s, d, pairs, ceil, out


def t_max_pool(func, kw, x):
    nd, k, s, d, pairs, ceil, out = pool_geometry(func, kw, x)
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
    padding = kw.get("padding", 0)
    if is_pairs(padding):
        xp = F.pad(x, torch_pad_arg(pairs), value=-float("inf"))
        y = fn(xp, k, s, 0, d, ceil)
        return trim(y, out), "F.pad(x, -inf) + F.max_pool(padding=0)"
    pad = 0 if padding == "valid" else padding if isinstance(padding, int) else tuple(padding)
    y = fn(x, k, kw.get("stride"), pad, d, ceil)
    assert tuple(y.shape[2:]) == out, (y.shape, out)
    return y, f"F.{fn.__name__}"


def avg_via_conv(x, k, s, d, pairs, out, count_include_pad):
    """Average pooling from depthwise ones-kernel convolutions (sum / counted taps)."""
    nd = len(k)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    n, c = x.shape[:2]
    extra = tuple(
        max(0, (o - 1) * ss + dd * (kk - 1) + 1 - (L + b + a))
        for o, ss, dd, kk, L, (b, a) in zip(out, s, d, k, x.shape[2:], pairs)
    )
    padded = tuple((b, a + e) for (b, a), e in zip(pairs, extra))
    ones_k = torch.ones((1, 1) + k, dtype=x.dtype)
    xs = F.pad(x.reshape((n * c, 1) + tuple(x.shape[2:])), torch_pad_arg(padded))
    sums = fn(xs, ones_k, None, s, 0, d)
    mask = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype)
    if count_include_pad:
        mask = F.pad(mask, torch_pad_arg(pairs), value=1.0)
        mask = F.pad(mask, torch_pad_arg(tuple((0, e) for e in extra)), value=0.0)
    else:
        mask = F.pad(mask, torch_pad_arg(padded), value=0.0)
    counts = fn(mask, ones_k, None, s, 0, d)
    y = trim(sums, out) / trim(counts, out)
    return y.reshape((n, c) + out)


def t_avg_pool(func, kw, x):
    nd, k, s, d, pairs, ceil, out = pool_geometry(func, kw, x)
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    cip = kw.get("count_include_pad", True)
    padding = kw.get("padding", 0)
    if any(dd != 1 for dd in d):
        return avg_via_conv(x, k, s, d, pairs, out, cip), "depthwise ones-kernel F.conv sums / counted taps"
    if is_pairs(padding):
        xp = F.pad(x, torch_pad_arg(pairs))
        y = fn(xp, k, s, 0, ceil, True)
        how = "F.pad(x, 0) + F.avg_pool(padding=0, count_include_pad=True)"
        if not cip:
            mask = F.pad(torch.ones_like(x[:1, :1]), torch_pad_arg(pairs))
            y = y / fn(mask, k, s, 0, ceil, True)
            how = "F.avg_pool of F.pad(x, 0) / F.avg_pool of F.pad(ones, 0)"
        return trim(y, out), how
    pad = 0 if padding == "valid" else padding if isinstance(padding, int) else tuple(padding)
    y = fn(x, k, kw.get("stride"), pad, ceil, cip)
    assert tuple(y.shape[2:]) == out, (y.shape, out)
    return y, f"F.{fn.__name__}"


def t_adaptive(func, kw, x):
    return F.adaptive_avg_pool2d(x, kw["output_size"]), "F.adaptive_avg_pool2d"


def self_check_avg_via_conv():
    """The ones-kernel path agrees with F.avg_pool where PyTorch can do both."""
    for L, k, s, p, ceil, cip in [
        (11, 3, 2, 1, True, True), (11, 3, 2, 1, True, False), (10, 4, 3, 2, True, False),
        (9, 2, 2, 1, False, True), (13, 5, 2, 2, True, True), (12, 3, 1, 0, False, False),
    ]:
        x = torch.from_numpy(rand((2, 3, L), np.float64))
        out = (contract_pool_out(L, k, s, p, p, 1, ceil),)
        a = F.avg_pool1d(x, k, s, p, ceil, cip)
        b = avg_via_conv(x, (k,), (s,), (1,), ((p, p),), out, cip)
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-14, atol=1e-14), (L, k, s, p, ceil, cip)


# --------------------------------------------------------------------------- the cases

cases = []  # (name, func, kwargs, arrays)


def add(func, tag, kwargs, x_shape, w_shape=None, bias=False, f32=False, unbatched=False):
    dtype = np.float32 if f32 else np.float64
    arrays = {"x": rand(x_shape, dtype)}
    if w_shape is not None:
        arrays["weight"] = rand(w_shape, dtype)
    if bias:
        arrays["bias"] = rand((w_shape[0] if func.startswith("conv") and "transpose" not in func
                               else w_shape[1] * kwargs.get("groups", 1),), dtype)
    xt = torch.from_numpy(arrays["x"])
    if unbatched:
        xt = xt[None]
    wt = torch.from_numpy(arrays["weight"]) if "weight" in arrays else None
    bt = torch.from_numpy(arrays["bias"]) if "bias" in arrays else None
    with torch.no_grad():
        if func.startswith("conv_transpose"):
            y, how = t_conv_transpose(func, kwargs, xt, wt, bt)
        elif func.startswith("conv"):
            y, how = t_conv(func, kwargs, xt, wt, bt)
        elif func.startswith("max_pool"):
            y, how = t_max_pool(func, kwargs, xt)
        elif func.startswith("avg_pool"):
            y, how = t_avg_pool(func, kwargs, xt)
        else:
            y, how = t_adaptive(func, kwargs, xt)
    if unbatched:
        y = y[0]
    y = y.contiguous().numpy()
    assert y.dtype == dtype, (func, tag, y.dtype)
    assert y.size > 0, (func, tag, y.shape)
    arrays["y"] = y
    name = f"{func}_{tag}{'_unbatched' if unbatched else ''}_{'f32' if f32 else 'f64'}_{len(cases):03d}"
    params = {"func": func, "kwargs": kwargs, "torch": how, "dtype": "float32" if f32 else "float64"}
    cases.append((name, arrays, params))


def conv_case(nd, tag, *, cin=None, cout=None, k=3, n=None, bias=None, f32=False, unbatched=False,
              transpose=False, **kw):
    """Add a (transposed) convolution case with random sizes that fit its geometry."""
    cin = cin or int(rng.integers(1, 5))
    groups = kw.get("groups", 1)
    cout = cout or groups * int(rng.integers(1, 4))
    if cin % groups:
        cin = groups * max(1, cin // groups)
    n = n or int(rng.integers(1, 3))
    bias = bool(rng.integers(0, 2)) if bias is None else bias
    kk = tup(k, nd)
    hi = 13 if nd < 3 else 7
    if transpose:
        spatial = sizes(nd, 3, min(hi, 8))
        w_shape = (cin, cout // groups) + kk
        func = f"conv_transpose{nd}d"
    else:
        d = tup(kw.get("dilation", 1), nd)
        pairs = pairs_of(kw.get("padding", 0), nd, kk, d)
        need = tuple(dd * (k_ - 1) + 1 - b - a for dd, k_, (b, a) in zip(d, kk, pairs))
        if kw.get("padding_mode", "zeros") in ("reflect", "circular"):
            need = tuple(max(nn, max(b, a) + 1) for nn, (b, a) in zip(need, pairs))
        spatial = sizes(nd, 5, hi, need)
        w_shape = (cout, cin // groups) + kk
        func = f"conv{nd}d"
    x_shape = ((cin,) if unbatched else (n, cin)) + spatial
    tag = tag + ("_bias" if bias else "")
    add(func, tag, kw, x_shape, w_shape, bias=bias, f32=f32, unbatched=unbatched)


def pool_case(kind, nd, tag, *, c=None, n=None, f32=False, unbatched=False, spatial=None, **kw):
    c = c or int(rng.integers(1, 7))
    n = n or int(rng.integers(1, 3))
    hi = 13 if nd < 3 else 8
    if spatial is None:
        k = tup(kw.get("kernel_size", 1), nd)
        d = tup(kw.get("dilation", 1), nd)
        pairs = pairs_of(kw.get("padding", 0), nd)
        need = tuple(dd * (k_ - 1) + 1 - b - a for dd, k_, (b, a) in zip(d, k, pairs))
        spatial = sizes(nd, 5, hi, need)
    x_shape = ((c,) if unbatched else (n, c)) + tuple(spatial)
    add(f"{kind}{nd}d", tag, kw, x_shape, f32=f32, unbatched=unbatched)


def build():
    # ---------------- conv2d
    for k in (1, 2, 3, 4, 5):
        conv_case(2, f"k{k}", k=k)
    conv_case(2, "k3_pad1", k=3, padding=1, bias=True)
    conv_case(2, "k5_pad2", k=5, padding=2, bias=False)
    conv_case(2, "k3_stride2", k=3, stride=2)
    conv_case(2, "k3_stride3_pad1", k=3, stride=3, padding=1)
    conv_case(2, "k3_stride_perdim", k=3, stride=[1, 2])
    conv_case(2, "k2x3_stride_perdim", k=(2, 3), stride=[3, 2], padding=[1, 0])
    conv_case(2, "k3_dil2", k=3, dilation=2)
    conv_case(2, "k3_dil_perdim_pad", k=3, dilation=[1, 2], padding=[1, 2])
    conv_case(2, "k2_dil3_stride2", k=2, dilation=3, stride=2, padding=1)
    conv_case(2, "k3_dil2_stride2_pad3", k=3, dilation=[2, 3], stride=[2, 1], padding=3)
    conv_case(2, "nonsquare_k3x1", k=(3, 1), padding=[1, 0])
    conv_case(2, "nonsquare_k1x5", k=(1, 5), padding=[0, 2])
    conv_case(2, "pointwise_1x1", k=1, cin=6, cout=5)
    conv_case(2, "groups2", k=3, cin=4, cout=6, groups=2, padding=1)
    conv_case(2, "groups3_stride2", k=3, cin=6, cout=3, groups=3, stride=2)
    conv_case(2, "groups2_dil2", k=2, cin=4, cout=4, groups=2, dilation=2)
    conv_case(2, "depthwise", k=3, cin=4, cout=4, groups=4, padding=1, bias=True)
    conv_case(2, "depthwise_mult2", k=3, cin=3, cout=6, groups=3, stride=2, padding=1)
    conv_case(2, "depthwise_k5_dil2", k=5, cin=5, cout=5, groups=5, dilation=2, padding=4)
    conv_case(2, "pad_perdim", k=3, padding=[0, 2])
    conv_case(2, "pad_asym", k=3, padding=[[0, 1], [2, 1]])
    conv_case(2, "pad_asym_tf_same", k=4, stride=2, padding=[[1, 2], [1, 2]])
    conv_case(2, "stride2_pad_asym_groups2", k=3, cin=4, cout=4, groups=2, stride=2, padding=[[1, 0], [0, 2]])
    conv_case(2, "pad_asym_dil2", k=3, dilation=2, padding=[[3, 0], [0, 1]])
    conv_case(2, "pad_valid", k=3, padding="valid")
    conv_case(2, "pad_valid_stride2", k=2, padding="valid", stride=2)
    conv_case(2, "pad_same_k3", k=3, padding="same")
    conv_case(2, "pad_same_k4_even", k=4, padding="same", bias=True)
    conv_case(2, "pad_same_k2x5", k=(2, 5), padding="same")
    conv_case(2, "pad_same_k3_dil2", k=3, padding="same", dilation=2)
    conv_case(2, "pad_same_k4_dil3_even", k=(4, 2), padding="same", dilation=[3, 1])
    conv_case(2, "pad_same_groups2", k=4, cin=4, cout=2, groups=2, padding="same")
    for mode in ("reflect", "replicate", "circular"):
        conv_case(2, f"mode_{mode}_pad1", k=3, padding=1, padding_mode=mode)
        conv_case(2, f"mode_{mode}_pad_perdim_stride2", k=3, padding=[2, 1], stride=2, padding_mode=mode)
        conv_case(2, f"mode_{mode}_same_k4", k=4, padding="same", padding_mode=mode)
        conv_case(2, f"mode_{mode}_pad_asym", k=3, padding=[[2, 0], [1, 3]], padding_mode=mode)
        conv_case(2, f"mode_{mode}_groups2_dil2", k=3, cin=4, cout=2, groups=2, dilation=2, padding=2,
                  padding_mode=mode)
    conv_case(2, "mode_zeros_explicit", k=3, padding=1, padding_mode="zeros")
    conv_case(2, "k3_pad1", k=3, padding=1, unbatched=True)
    conv_case(2, "k3_stride2_groups2", k=3, cin=4, cout=4, groups=2, stride=2, unbatched=True)
    conv_case(2, "mode_reflect_pad1", k=3, padding=1, padding_mode="reflect", unbatched=True)
    add("conv2d", "kernel_equals_padded_input", {"padding": 1}, (2, 3, 5, 6), (2, 3, 7, 8))
    for tag, kw in [("k3_pad1", dict(k=3, padding=1)), ("stride2_groups2", dict(k=3, cin=4, cout=4, groups=2, stride=2)),
                    ("dil2_pad_asym", dict(k=3, dilation=2, padding=[[2, 1], [0, 3]])),
                    ("same_k4", dict(k=4, padding="same")), ("mode_circular", dict(k=3, padding=1, padding_mode="circular")),
                    ("depthwise", dict(k=3, cin=4, cout=8, groups=4, padding=1))]:
        conv_case(2, tag, f32=True, **kw)

    # ---------------- conv1d
    for k in (1, 2, 3, 5):
        conv_case(1, f"k{k}", k=k)
    conv_case(1, "k3_pad1", k=3, padding=1, bias=True)
    conv_case(1, "k3_pad_list", k=3, padding=[2])
    conv_case(1, "k4_stride3", k=4, stride=3, padding=1)
    conv_case(1, "k3_dil3", k=3, dilation=3, padding=2)
    conv_case(1, "k3_stride_list_dil_list", k=3, stride=[2], dilation=[2])
    conv_case(1, "groups2", k=3, cin=4, cout=6, groups=2)
    conv_case(1, "depthwise", k=5, cin=3, cout=3, groups=3, padding=2)
    conv_case(1, "pad_asym", k=3, padding=[[2, 0]])
    conv_case(1, "pad_asym_stride2", k=4, padding=[[0, 3]], stride=2)
    conv_case(1, "pad_valid", k=3, padding="valid")
    conv_case(1, "pad_same_k3", k=3, padding="same")
    conv_case(1, "pad_same_k6_even", k=6, padding="same")
    conv_case(1, "pad_same_k2_dil3", k=2, padding="same", dilation=3)
    for mode in ("reflect", "replicate", "circular"):
        conv_case(1, f"mode_{mode}_pad2", k=3, padding=2, padding_mode=mode)
        conv_case(1, f"mode_{mode}_same_k4", k=4, padding="same", padding_mode=mode)
    conv_case(1, "k3_pad1", k=3, padding=1, unbatched=True)
    conv_case(1, "k3_pad1", k=3, padding=1, f32=True)
    conv_case(1, "mode_replicate_pad_asym", k=3, padding=[[1, 3]], padding_mode="replicate", f32=True)

    # ---------------- conv3d
    conv_case(3, "k3", k=3)
    conv_case(3, "k2", k=2)
    conv_case(3, "k3_pad1", k=3, padding=1, bias=True)
    conv_case(3, "k3_stride2_pad1", k=3, stride=2, padding=1)
    conv_case(3, "k_mixed_stride_perdim", k=(1, 3, 2), stride=[1, 2, 3], padding=[0, 1, 1])
    conv_case(3, "k2_dil2", k=2, dilation=[2, 1, 2], padding=1)
    conv_case(3, "groups2", k=3, cin=4, cout=4, groups=2, padding=1)
    conv_case(3, "depthwise", k=3, cin=3, cout=3, groups=3, padding=1)
    conv_case(3, "pad_asym", k=3, padding=[[1, 0], [0, 2], [2, 1]])
    conv_case(3, "pad_valid", k=2, padding="valid")
    conv_case(3, "pad_same_k3", k=3, padding="same")
    conv_case(3, "pad_same_k2_even", k=2, padding="same")
    for mode in ("reflect", "replicate", "circular"):
        conv_case(3, f"mode_{mode}_pad1", k=3, padding=1, padding_mode=mode)
    conv_case(3, "k3_pad1", k=3, padding=1, unbatched=True)
    conv_case(3, "k3_pad1", k=3, padding=1, f32=True)

    # ---------------- conv_transpose2d
    T = dict(transpose=True)
    conv_case(2, "k3", k=3, **T)
    conv_case(2, "k2_stride2", k=2, stride=2, **T)
    conv_case(2, "k3_stride2_pad1", k=3, stride=2, padding=1, **T)
    conv_case(2, "k3_stride2_pad1_outpad1", k=3, stride=2, padding=1, output_padding=1, bias=True, **T)
    conv_case(2, "k4_stride_perdim_outpad_perdim", k=4, stride=[2, 3], padding=[1, 0], output_padding=[1, 2], **T)
    conv_case(2, "k3_stride3_outpad2", k=3, stride=3, output_padding=2, **T)
    conv_case(2, "k3_dil2", k=3, dilation=2, **T)
    conv_case(2, "k3_dil2_outpad1", k=3, dilation=2, output_padding=1, padding=1, **T)
    conv_case(2, "k2_dil_perdim_stride2", k=(2, 3), dilation=[3, 1], stride=2, output_padding=[2, 1], **T)
    conv_case(2, "groups2", k=3, cin=4, cout=6, groups=2, stride=2, **T)
    conv_case(2, "groups3_pad1", k=3, cin=6, cout=3, groups=3, padding=1, **T)
    conv_case(2, "depthwise", k=3, cin=4, cout=4, groups=4, stride=2, padding=1, output_padding=1, **T)
    conv_case(2, "depthwise_mult2", k=2, cin=3, cout=6, groups=3, stride=2, **T)
    conv_case(2, "pad_perdim", k=5, padding=[2, 1], **T)
    conv_case(2, "pad_asym", k=3, stride=2, padding=[[1, 0], [0, 2]], **T)
    conv_case(2, "pad_asym_outpad1", k=4, stride=2, padding=[[1, 2], [2, 1]], output_padding=1, **T)
    conv_case(2, "pad_asym_groups2_dil2", k=3, cin=4, cout=4, groups=2, dilation=2, padding=[[0, 3], [2, 2]], **T)
    conv_case(2, "pad_valid", k=3, stride=2, padding="valid", **T)
    conv_case(2, "k1_stride2", k=1, stride=2, output_padding=1, **T)
    conv_case(2, "k3_stride2_pad1", k=3, stride=2, padding=1, unbatched=True, **T)
    conv_case(2, "k3_stride2_pad1_outpad1", k=3, stride=2, padding=1, output_padding=1, f32=True, **T)
    conv_case(2, "groups2_dil2", k=3, cin=4, cout=4, groups=2, dilation=2, f32=True, **T)
    conv_case(2, "pad_asym", k=3, stride=2, padding=[[2, 0], [1, 1]], f32=True, **T)

    # ---------------- conv_transpose1d
    conv_case(1, "k3", k=3, **T)
    conv_case(1, "k4_stride2_pad1", k=4, stride=2, padding=1, bias=True, **T)
    conv_case(1, "k3_stride3_outpad2", k=3, stride=3, output_padding=[2], padding=[1], **T)
    conv_case(1, "k3_dil2_outpad1", k=3, dilation=2, output_padding=1, **T)
    conv_case(1, "groups2", k=3, cin=4, cout=2, groups=2, stride=2, **T)
    conv_case(1, "depthwise", k=3, cin=3, cout=3, groups=3, **T)
    conv_case(1, "pad_asym", k=5, stride=2, padding=[[3, 1]], **T)
    conv_case(1, "pad_valid", k=2, padding="valid", **T)
    conv_case(1, "k3_stride2", k=3, stride=2, unbatched=True, **T)
    conv_case(1, "k3_stride2", k=3, stride=2, padding=1, f32=True, **T)

    # ---------------- conv_transpose3d
    conv_case(3, "k2_stride2", k=2, stride=2, **T)
    conv_case(3, "k3_stride2_pad1_outpad1", k=3, stride=2, padding=1, output_padding=1, bias=True, **T)
    conv_case(3, "k_mixed_stride_perdim", k=(2, 3, 1), stride=[1, 2, 3], padding=[0, 1, 0], output_padding=[0, 1, 2], **T)
    conv_case(3, "dil2_groups2", k=2, cin=4, cout=4, groups=2, dilation=2, **T)
    conv_case(3, "pad_asym", k=3, stride=2, padding=[[1, 0], [0, 1], [2, 2]], **T)
    conv_case(3, "k2_stride2", k=2, stride=2, unbatched=True, **T)
    conv_case(3, "k3_stride2_pad1", k=3, stride=2, padding=1, f32=True, **T)

    # ---------------- max_pool2d
    mp = "max_pool"
    pool_case(mp, 2, "k2", kernel_size=2)
    pool_case(mp, 2, "k3_stride_none_explicit", kernel_size=3, stride=None)
    pool_case(mp, 2, "k3_stride2", kernel_size=3, stride=2)
    pool_case(mp, 2, "k3_stride1_pad1", kernel_size=3, stride=1, padding=1)
    pool_case(mp, 2, "k2x3_stride_perdim", kernel_size=[2, 3], stride=[1, 2])
    pool_case(mp, 2, "k3_stride2_pad_perdim", kernel_size=3, stride=2, padding=[1, 0])
    pool_case(mp, 2, "k3_dil2", kernel_size=3, stride=1, dilation=2)
    pool_case(mp, 2, "k2_dil_perdim_pad1", kernel_size=2, stride=2, dilation=[2, 3], padding=1)
    pool_case(mp, 2, "k3_stride2_ceil", kernel_size=3, stride=2, ceil_mode=True)
    pool_case(mp, 2, "k2_ceil", kernel_size=2, ceil_mode=True, spatial=(7, 9))
    pool_case(mp, 2, "k3_stride2_pad1_ceil", kernel_size=3, stride=2, padding=1, ceil_mode=True, spatial=(8, 10))
    pool_case(mp, 2, "k2_stride3_ceil_rule", kernel_size=2, stride=3, padding=1, ceil_mode=True, spatial=(8, 11))
    pool_case(mp, 2, "k3_dil2_stride2_ceil", kernel_size=3, stride=2, dilation=2, padding=1, ceil_mode=True)
    pool_case(mp, 2, "k4_stride3_pad2_ceil", kernel_size=4, stride=3, padding=2, ceil_mode=True, spatial=(9, 12))
    pool_case(mp, 2, "pad_asym", kernel_size=3, stride=2, padding=[[0, 1], [2, 1]])
    pool_case(mp, 2, "pad_asym_tf_same", kernel_size=2, stride=2, padding=[[0, 1], [0, 1]], spatial=(7, 9))
    pool_case(mp, 2, "pad_asym_wholly_in_pad_ninf", kernel_size=2, stride=2, padding=[[4, 0], [0, 3]], spatial=(6, 7))
    pool_case(mp, 2, "pad_asym_dil2_ninf", kernel_size=2, stride=1, dilation=2, padding=[[3, 0], [1, 2]])
    pool_case(mp, 2, "pad_asym_ceil", kernel_size=3, stride=2, padding=[[1, 0], [0, 1]], ceil_mode=True, spatial=(8, 9))
    pool_case(mp, 2, "pad_asym_ceil_dropped_window", kernel_size=2, stride=2, padding=[[0, 2], [1, 2]], ceil_mode=True,
              spatial=(7, 8))
    pool_case(mp, 2, "pad_valid", kernel_size=3, stride=2, padding="valid")
    pool_case(mp, 2, "kernel_equals_input", kernel_size=[5, 6], spatial=(5, 6))
    pool_case(mp, 2, "k2", kernel_size=2, unbatched=True)
    pool_case(mp, 2, "k3_stride2_pad1_ceil", kernel_size=3, stride=2, padding=1, ceil_mode=True, unbatched=True,
              spatial=(10, 8))
    for tag, kw in [("k2", dict(kernel_size=2)), ("k3_stride2_pad1_ceil", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
                    ("k3_dil2", dict(kernel_size=3, stride=2, dilation=2)),
                    ("pad_asym_ninf", dict(kernel_size=2, stride=2, padding=[[3, 0], [0, 1]]))]:
        pool_case(mp, 2, tag, f32=True, **kw)

    # ---------------- max_pool1d / 3d
    pool_case(mp, 1, "k2", kernel_size=2)
    pool_case(mp, 1, "k3_stride1_pad1", kernel_size=3, stride=1, padding=1)
    pool_case(mp, 1, "k3_stride2_list", kernel_size=[3], stride=[2], padding=[1])
    pool_case(mp, 1, "k2_dil3", kernel_size=2, stride=1, dilation=3)
    pool_case(mp, 1, "k3_stride2_ceil", kernel_size=3, stride=2, ceil_mode=True, spatial=(10,))
    pool_case(mp, 1, "k2_stride2_pad1_ceil", kernel_size=2, stride=2, padding=1, ceil_mode=True, spatial=(9,))
    pool_case(mp, 1, "pad_asym_ninf", kernel_size=2, stride=2, padding=[[3, 1]])
    pool_case(mp, 1, "pad_valid", kernel_size=4, padding="valid")
    pool_case(mp, 1, "k3", kernel_size=3, unbatched=True)
    pool_case(mp, 1, "k3_stride2_pad1", kernel_size=3, stride=2, padding=1, f32=True)
    pool_case(mp, 3, "k2", kernel_size=2)
    pool_case(mp, 3, "k3_stride2_pad1", kernel_size=3, stride=2, padding=1)
    pool_case(mp, 3, "k_perdim_stride_perdim", kernel_size=[1, 2, 3], stride=[1, 2, 2], padding=[0, 1, 1])
    pool_case(mp, 3, "k2_dil2", kernel_size=2, stride=1, dilation=[2, 1, 2])
    pool_case(mp, 3, "k3_stride2_ceil", kernel_size=3, stride=2, padding=1, ceil_mode=True, spatial=(6, 7, 8))
    pool_case(mp, 3, "pad_asym", kernel_size=2, stride=2, padding=[[1, 0], [0, 1], [1, 1]])
    pool_case(mp, 3, "k2", kernel_size=2, unbatched=True)
    pool_case(mp, 3, "k2_stride2_ceil", kernel_size=2, ceil_mode=True, f32=True, spatial=(5, 6, 7))

    # ---------------- avg_pool2d
    ap = "avg_pool"
    pool_case(ap, 2, "k2", kernel_size=2)
    pool_case(ap, 2, "k3_stride_none_explicit", kernel_size=3, stride=None)
    pool_case(ap, 2, "k3_stride2", kernel_size=3, stride=2)
    pool_case(ap, 2, "k2x3_stride_perdim", kernel_size=[2, 3], stride=[2, 1])
    for cip in (True, False):
        c = "cip" if cip else "nocip"
        pool_case(ap, 2, f"k3_stride1_pad1_{c}", kernel_size=3, stride=1, padding=1, count_include_pad=cip)
        pool_case(ap, 2, f"k3_stride2_pad_perdim_{c}", kernel_size=3, stride=2, padding=[1, 0], count_include_pad=cip)
        pool_case(ap, 2, f"k3_stride2_ceil_{c}", kernel_size=3, stride=2, ceil_mode=True, count_include_pad=cip,
                  spatial=(8, 10))
        pool_case(ap, 2, f"k3_stride2_pad1_ceil_{c}", kernel_size=3, stride=2, padding=1, ceil_mode=True,
                  count_include_pad=cip, spatial=(8, 9))
        pool_case(ap, 2, f"k4_stride3_pad2_ceil_{c}", kernel_size=4, stride=3, padding=2, ceil_mode=True,
                  count_include_pad=cip, spatial=(9, 11))
        pool_case(ap, 2, f"k2_stride3_pad1_ceil_rule_{c}", kernel_size=2, stride=3, padding=1, ceil_mode=True,
                  count_include_pad=cip, spatial=(8, 11))
        pool_case(ap, 2, f"pad_asym_{c}", kernel_size=3, stride=2, padding=[[0, 1], [2, 1]], count_include_pad=cip)
        pool_case(ap, 2, f"pad_asym_tf_same_{c}", kernel_size=2, stride=2, padding=[[0, 1], [0, 1]],
                  count_include_pad=cip, spatial=(7, 9))
        pool_case(ap, 2, f"pad_asym_ceil_{c}", kernel_size=3, stride=2, padding=[[1, 0], [0, 1]], ceil_mode=True,
                  count_include_pad=cip, spatial=(8, 9))
        pool_case(ap, 2, f"pad_asym_ceil_dropped_window_{c}", kernel_size=2, stride=2, padding=[[0, 2], [1, 2]],
                  ceil_mode=True, count_include_pad=cip, spatial=(7, 8))
        pool_case(ap, 2, f"dil2_ext_{c}", kernel_size=3, stride=1, dilation=2, padding=1, count_include_pad=cip)
        pool_case(ap, 2, f"dil_perdim_ceil_ext_{c}", kernel_size=2, stride=2, dilation=[2, 3], padding=1,
                  ceil_mode=True, count_include_pad=cip, spatial=(9, 10))
        pool_case(ap, 2, f"dil2_pad_asym_ext_{c}", kernel_size=2, stride=2, dilation=2, padding=[[1, 0], [0, 2]],
                  count_include_pad=cip)
    pool_case(ap, 2, "pad_valid", kernel_size=3, stride=2, padding="valid")
    pool_case(ap, 2, "kernel_equals_input", kernel_size=[5, 6], spatial=(5, 6))
    pool_case(ap, 2, "k2", kernel_size=2, unbatched=True)
    pool_case(ap, 2, "k3_stride2_pad1_ceil_nocip", kernel_size=3, stride=2, padding=1, ceil_mode=True,
              count_include_pad=False, unbatched=True, spatial=(10, 8))
    for tag, kw in [("k2", dict(kernel_size=2)),
                    ("k3_stride2_pad1_ceil_nocip", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                                        count_include_pad=False)),
                    ("k3_stride2_pad1_cip", dict(kernel_size=3, stride=2, padding=1)),
                    ("pad_asym_nocip", dict(kernel_size=3, stride=2, padding=[[2, 0], [0, 1]], count_include_pad=False))]:
        pool_case(ap, 2, tag, f32=True, **kw)

    # ---------------- avg_pool1d / 3d
    pool_case(ap, 1, "k2", kernel_size=2)
    pool_case(ap, 1, "k3_stride1_pad1_cip", kernel_size=3, stride=1, padding=1)
    pool_case(ap, 1, "k3_stride1_pad1_nocip", kernel_size=[3], stride=[1], padding=[1], count_include_pad=False)
    pool_case(ap, 1, "k3_stride2_pad1_ceil_cip", kernel_size=3, stride=2, padding=1, ceil_mode=True, spatial=(10,))
    pool_case(ap, 1, "k3_stride2_pad1_ceil_nocip", kernel_size=3, stride=2, padding=1, ceil_mode=True,
              count_include_pad=False, spatial=(10,))
    pool_case(ap, 1, "pad_asym_nocip", kernel_size=3, stride=2, padding=[[2, 1]], count_include_pad=False)
    pool_case(ap, 1, "dil3_ext_cip", kernel_size=2, stride=1, dilation=3, padding=1)
    pool_case(ap, 1, "pad_valid", kernel_size=4, padding="valid")
    pool_case(ap, 1, "k3", kernel_size=3, unbatched=True)
    pool_case(ap, 1, "k3_stride2_pad1_nocip", kernel_size=3, stride=2, padding=1, count_include_pad=False, f32=True)
    pool_case(ap, 3, "k2", kernel_size=2)
    pool_case(ap, 3, "k3_stride2_pad1_cip", kernel_size=3, stride=2, padding=1)
    pool_case(ap, 3, "k3_stride2_pad1_nocip", kernel_size=3, stride=2, padding=1, count_include_pad=False)
    pool_case(ap, 3, "k_perdim_stride_perdim", kernel_size=[1, 2, 3], stride=[1, 2, 2], padding=[0, 1, 1],
              count_include_pad=False)
    pool_case(ap, 3, "k3_stride2_pad1_ceil_nocip", kernel_size=3, stride=2, padding=1, ceil_mode=True,
              count_include_pad=False, spatial=(6, 7, 8))
    pool_case(ap, 3, "pad_asym_cip", kernel_size=2, stride=2, padding=[[1, 0], [0, 1], [1, 1]])
    pool_case(ap, 3, "dil2_ext_nocip", kernel_size=2, stride=1, dilation=2, padding=1, count_include_pad=False)
    pool_case(ap, 3, "k2", kernel_size=2, unbatched=True)
    pool_case(ap, 3, "k2_ceil_cip", kernel_size=2, ceil_mode=True, f32=True, spatial=(5, 6, 7))

    # ---------------- adaptive_avg_pool2d
    for out, spatial in [(1, (7, 9)), (3, (9, 9)), ([2, 3], (7, 10)), ([4, 5], (9, 13)), ([5, 3], (11, 6)),
                         ([7, 7], (7, 7)), ([6, 4], (8, 13)), ([3, 2], (5, 5)), ([8, 9], (8, 12))]:
        tag = "out" + "x".join(str(o) for o in (out if isinstance(out, list) else [out]))
        pool_case("adaptive_avg_pool", 2, tag, output_size=out, spatial=spatial)
    pool_case("adaptive_avg_pool", 2, "out_none_4", output_size=[None, 4], spatial=(7, 10))
    pool_case("adaptive_avg_pool", 2, "out3x4", output_size=[3, 4], spatial=(10, 9), unbatched=True)
    pool_case("adaptive_avg_pool", 2, "out3x5", output_size=[3, 5], spatial=(11, 12), f32=True)
    pool_case("adaptive_avg_pool", 2, "out2", output_size=2, spatial=(7, 5), f32=True)


# --------------------------------------------------------------------------- parity cases
#
# Max pooling with indices, adaptive max pooling, max unpooling, average pooling with
# divisor_override, and max pooling of NaN / +-inf inputs. They live in ``cases/parity/``
# (``load_cases(PARITY_DIR)``): besides ``x`` and ``y`` they hold ``y_indices`` (the indices
# a ``return_indices=True`` call returns) or ``indices`` (max_unpool's second argument), and
# their outputs may hold NaN. A generator of their own keeps the main cases byte-identical.

PARITY = CASES / "parity"
prng = np.random.default_rng(20250214)
parity_cases = []  # (name, arrays, params)


def parity_x(shape, dtype, fill):
    """``normal``: standard normal; ``ties``: integers in [-2, 2] (equal maxima everywhere);
    ``special``: ties with NaN, +inf and -inf sprinkled in (a few percent each)."""
    if fill == "normal":
        return prng.standard_normal(shape).astype(dtype)
    x = prng.integers(-2, 3, shape).astype(dtype)
    if fill == "special":
        u = prng.random(shape)
        x[u < 0.06] = np.nan
        x[(u >= 0.06) & (u < 0.10)] = np.inf
        x[(u >= 0.10) & (u < 0.16)] = -np.inf
    return x


def parity_add(func, tag, kwargs, arrays, outputs, how, f32, unbatched):
    dtype = np.float32 if f32 else np.float64
    assert arrays["x"].dtype == dtype and outputs["y"].dtype == dtype, (func, tag)
    for key, value in outputs.items():
        assert value.size > 0, (func, tag, key)
    if "y_indices" in outputs:
        assert outputs["y_indices"].dtype == np.int64 and outputs["y_indices"].shape == outputs["y"].shape
    number = len(cases) + len(parity_cases)
    name = f"{func}_{tag}{'_unbatched' if unbatched else ''}_{'f32' if f32 else 'f64'}_{number:03d}"
    params = {"func": func, "kwargs": kwargs, "torch": how, "dtype": "float32" if f32 else "float64"}
    parity_cases.append((name, {**arrays, **outputs}, params))


def unbatch(t, unbatched):
    return t[0] if unbatched else t


def remap_indices(idx, values, padded_shape, pairs, spatial):
    """Indices into an ``F.pad``-ed plane -> indices into the unpadded plane (-1 in padding).

    Only sound where a window's maximum is not ``-inf`` or lies wholly in padding (PyTorch
    starts at the padded window's first tap, the contract at its first tap inside the input);
    the caller keeps ``-inf`` out of such inputs and this asserts it.
    """
    coords = np.unravel_index(idx, padded_shape)
    coords = [c - b for c, (b, _) in zip(coords, pairs)]
    inside = np.ones(idx.shape, dtype=bool)
    for c, L in zip(coords, spatial):
        inside &= (c >= 0) & (c < L)
    flat = np.ravel_multi_index(tuple(np.where(inside, c, 0) for c in coords), spatial)
    assert np.all(inside | np.isneginf(values)), "a maximum in padding that is not -inf"
    return np.where(inside, flat, -1).astype(np.int64)


def max_indices_case(nd, tag, *, spatial, c=2, n=2, fill="ties", f32=False, unbatched=False,
                     return_indices=True, **kw):
    """``max_pool{nd}d`` through F.max_pool (return_indices=True); pairs through F.pad(-inf)."""
    func = f"max_pool{nd}d"
    dtype = np.float32 if f32 else np.float64
    x = parity_x((n, c) + tuple(spatial), dtype, fill)
    kwargs = dict(kw, return_indices=return_indices)
    k, s = tup(kw["kernel_size"], nd), tup(kw.get("stride"), nd)
    d = tup(kw.get("dilation", 1), nd)
    padding = kw.get("padding", 0)
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
    xt = torch.from_numpy(x)
    with torch.no_grad():
        if is_pairs(padding):
            assert not kw.get("ceil_mode", False), "the contract's ceil rule differs after F.pad"
            pairs = pairs_of(padding, nd)
            xp = F.pad(xt, torch_pad_arg(pairs), value=-float("inf"))
            y, idx = fn(xp, k, s or k, 0, d, False, return_indices=True)
            y, idx = y.numpy(), remap_indices(idx.numpy(), y.numpy(), tuple(xp.shape[2:]), pairs, spatial)
            how = "F.pad(x, -inf) + F.max_pool(padding=0, return_indices=True), indices mapped back"
        else:
            y, idx = fn(xt, k, s, padding, d, kw.get("ceil_mode", False), return_indices=True)
            y, idx = y.numpy(), idx.numpy()
            how = f"F.{fn.__name__}(return_indices=True)"
    outputs = {"y": np.ascontiguousarray(unbatch(y, unbatched))}
    if return_indices:
        outputs["y_indices"] = np.ascontiguousarray(unbatch(idx, unbatched))
    else:
        how = how.replace("return_indices=True", "return_indices=False")
    parity_add(func, tag, kwargs, {"x": unbatch(x, unbatched)}, outputs, how, f32, unbatched)


def adaptive_max_case(nd, tag, *, spatial, output_size, c=2, n=2, fill="ties", f32=False,
                      unbatched=False, return_indices=True):
    func = f"adaptive_max_pool{nd}d"
    dtype = np.float32 if f32 else np.float64
    x = parity_x((n, c) + tuple(spatial), dtype, fill)
    fn = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}[nd]
    with torch.no_grad():
        y, idx = fn(torch.from_numpy(x), output_size, return_indices=True)
    outputs = {"y": np.ascontiguousarray(unbatch(y.numpy(), unbatched))}
    if return_indices:
        outputs["y_indices"] = np.ascontiguousarray(unbatch(idx.numpy(), unbatched))
    kwargs = {"output_size": output_size, "return_indices": return_indices}
    parity_add(func, tag, kwargs, {"x": unbatch(x, unbatched)}, outputs,
               f"F.{fn.__name__}(return_indices=True)", f32, unbatched)


def unpool_case(nd, tag, *, spatial, c=2, n=2, f32=False, unbatched=False, random_indices=False,
                output_size=None, **kw):
    """``max_unpool{nd}d`` of the indices F.max_pool returns (or random in-range indices),
    with fresh random values, so that duplicate indices carry different values.

    ``output_size``: None, ``"input"`` (the pooled input's spatial size) or ``"input_nc"``
    (its whole shape, N and C leading), or an explicit list.
    """
    func = f"max_unpool{nd}d"
    dtype = np.float32 if f32 else np.float64
    k, s = tup(kw["kernel_size"], nd), tup(kw.get("stride"), nd)
    p = kw.get("padding", 0)
    src = torch.from_numpy(parity_x((n, c) + tuple(spatial), dtype, "ties"))
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
    unpool = {1: F.max_unpool1d, 2: F.max_unpool2d, 3: F.max_unpool3d}[nd]
    with torch.no_grad():
        _, idx = pool(src, k, s, p, 1, False, return_indices=True)
    if output_size == "input":
        output_size = list(spatial)
    elif output_size == "input_nc":  # PyTorch drops two leading entries, batched or not
        output_size = [n, c] + list(spatial)
    if random_indices:
        sizes = output_size[-nd:] if output_size is not None else [
            (L - 1) * ss - 2 * pp + kk for L, ss, pp, kk in zip(idx.shape[2:], s or k, tup(p, nd), k)]
        idx = torch.from_numpy(prng.integers(0, int(np.prod(sizes)), tuple(idx.shape)))
    x = torch.from_numpy(prng.standard_normal(tuple(idx.shape)).astype(dtype))
    with torch.no_grad():
        y = unpool(x, idx, k, s, p, output_size)
    kwargs = dict(kw, output_size=output_size)
    arrays = {"x": unbatch(x.numpy(), unbatched), "indices": unbatch(idx.numpy(), unbatched)}
    how = f"F.{unpool.__name__}" + (" of random indices" if random_indices else " of F.max_pool's indices")
    parity_add(func, tag, kwargs, arrays, {"y": np.ascontiguousarray(unbatch(y.numpy(), unbatched))},
               how, f32, unbatched)


def divisor_case(nd, tag, *, spatial, divisor_override, c=2, n=2, f32=False, unbatched=False, **kw):
    """``avg_pool{nd}d`` with ``divisor_override``: F.avg_pool, pairs through F.pad(0), dilation
    through ones-kernel depthwise F.conv sums divided by the override."""
    func = f"avg_pool{nd}d"
    dtype = np.float32 if f32 else np.float64
    x = parity_x((n, c) + tuple(spatial), dtype, "normal")
    xt = torch.from_numpy(x)
    kw = dict(kw, divisor_override=divisor_override)
    k, s = tup(kw["kernel_size"], nd), tup(kw.get("stride"), nd)
    d = tup(kw.get("dilation", 1), nd)
    padding = kw.get("padding", 0)
    ceil = kw.get("ceil_mode", False)
    fn = {2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    with torch.no_grad():
        if any(dd != 1 for dd in d):
            _, _, _, _, pairs, _, out = pool_geometry(func, kw, xt)
            conv = {2: F.conv2d, 3: F.conv3d}[nd]
            extra = tuple(max(0, (o - 1) * ss + dd * (kk - 1) + 1 - (L + b + a))
                          for o, ss, dd, kk, L, (b, a) in zip(out, s or k, d, k, spatial, pairs))
            padded = tuple((b, a + e) for (b, a), e in zip(pairs, extra))
            xs = F.pad(xt.reshape((n * c, 1) + tuple(spatial)), torch_pad_arg(padded))
            sums = conv(xs, torch.ones((1, 1) + k, dtype=xt.dtype), None, s or k, 0, d)
            y = (trim(sums, out) / divisor_override).reshape((n, c) + out)
            how = "depthwise ones-kernel F.conv sums / divisor_override"
        elif is_pairs(padding):
            assert not ceil, "the contract's ceil rule differs after F.pad"
            pairs = pairs_of(padding, nd)
            y = fn(F.pad(xt, torch_pad_arg(pairs)), k, s, 0, False, True, divisor_override)
            how = "F.pad(x, 0) + F.avg_pool(padding=0, divisor_override)"
        else:
            y = fn(xt, k, s, padding, ceil, kw.get("count_include_pad", True), divisor_override)
            how = f"F.{fn.__name__}(divisor_override)"
    parity_add(func, tag, kw, {"x": unbatch(x, unbatched)},
               {"y": np.ascontiguousarray(unbatch(y.numpy(), unbatched))}, how, f32, unbatched)


def build_parity():
    # ---------------- max pooling with indices
    mi = max_indices_case
    for fill in ("ties", "special"):
        mi(1, f"k3_stride2_{fill}", kernel_size=3, stride=2, spatial=(11,), fill=fill)
        mi(1, f"k4_stride1_pad2_dil2_{fill}", kernel_size=4, stride=1, padding=2, dilation=2, spatial=(10,), fill=fill)
        mi(1, f"k3_stride2_pad1_ceil_{fill}", kernel_size=3, stride=2, padding=1, ceil_mode=True, spatial=(10,),
           fill=fill)
        mi(2, f"k2_{fill}", kernel_size=2, spatial=(6, 8), fill=fill)
        mi(2, f"k3_stride1_pad1_{fill}", kernel_size=3, stride=1, padding=1, spatial=(7, 6), fill=fill)
        mi(2, f"k3_stride2_dil2_{fill}", kernel_size=3, stride=2, dilation=2, spatial=(9, 11), fill=fill)
        mi(2, f"k2x3_stride_perdim_pad_perdim_{fill}", kernel_size=[2, 3], stride=[1, 2], padding=[1, 1],
           spatial=(7, 9), fill=fill)
        mi(2, f"k3_stride2_pad1_ceil_{fill}", kernel_size=3, stride=2, padding=1, ceil_mode=True, spatial=(8, 9),
           fill=fill)
        mi(2, f"k2_dil_perdim_stride3_ceil_{fill}", kernel_size=2, stride=3, dilation=[2, 3], padding=1,
           ceil_mode=True, spatial=(9, 10), fill=fill)
        mi(3, f"k2_{fill}", kernel_size=2, spatial=(4, 5, 6), fill=fill)
        mi(3, f"k3_stride2_pad1_ceil_{fill}", kernel_size=3, stride=2, padding=1, ceil_mode=True, spatial=(5, 6, 7),
           fill=fill)
        mi(3, f"k_perdim_dil_perdim_{fill}", kernel_size=[1, 2, 3], stride=[1, 2, 1], dilation=[1, 2, 2],
           padding=[0, 1, 1], spatial=(3, 6, 7), fill=fill)
    mi(2, "all_nan_and_ninf_planes_special", kernel_size=3, stride=1, padding=1, spatial=(5, 5), fill="special")
    mi(2, "k3_stride2_normal", kernel_size=3, stride=2, spatial=(9, 8), fill="normal")
    mi(2, "pad_asym_ninf_window", kernel_size=2, stride=2, padding=[[3, 0], [0, 2]], spatial=(6, 7), fill="normal")
    mi(1, "pad_asym_wholly_in_pad", kernel_size=2, stride=2, padding=[[4, 1]], spatial=(7,), fill="ties")
    mi(3, "pad_asym", kernel_size=2, stride=2, padding=[[1, 0], [0, 1], [2, 1]], spatial=(4, 5, 4), fill="ties")
    mi(2, "k3_stride2_pad1_ceil_ties", kernel_size=3, stride=2, padding=1, ceil_mode=True, spatial=(7, 9),
       unbatched=True)
    mi(1, "k2_special", kernel_size=2, spatial=(9,), fill="special", unbatched=True)
    mi(3, "k2_ties", kernel_size=2, spatial=(4, 4, 5), unbatched=True)
    mi(1, "k3_stride2_pad1_special", kernel_size=3, stride=2, padding=1, spatial=(11,), fill="special", f32=True)
    mi(2, "k3_stride2_dil2_special", kernel_size=3, stride=2, dilation=2, spatial=(9, 10), fill="special", f32=True)
    mi(2, "k2_ceil_ties", kernel_size=2, ceil_mode=True, spatial=(7, 9), f32=True)
    mi(3, "k2_stride1_pad1_special", kernel_size=2, stride=1, padding=1, spatial=(4, 4, 5), fill="special",
       f32=True)
    # the NaN rule without indices (the values of max_pool itself)
    mi(1, "k3_stride2_special", kernel_size=3, stride=2, spatial=(12,), fill="special", return_indices=False)
    mi(2, "k3_stride1_pad1_special", kernel_size=3, stride=1, padding=1, spatial=(7, 6), fill="special",
       return_indices=False)
    mi(3, "k2_special", kernel_size=2, spatial=(4, 5, 6), fill="special", return_indices=False)
    mi(2, "k2_special", kernel_size=2, spatial=(6, 8), fill="special", f32=True, return_indices=False)

    # ---------------- adaptive max pooling
    am = adaptive_max_case
    for fill in ("ties", "special"):
        am(1, f"7to3_{fill}", spatial=(7,), output_size=3, fill=fill)
        am(1, f"5to4_{fill}", spatial=(5,), output_size=[4], fill=fill)
        am(1, f"10to3_{fill}", spatial=(10,), output_size=3, fill=fill)
        am(2, f"7x5to3x4_{fill}", spatial=(7, 5), output_size=[3, 4], fill=fill)
        am(2, f"10x7to3x3_{fill}", spatial=(10, 7), output_size=3, fill=fill)
        am(2, f"5x9to4x9_{fill}", spatial=(5, 9), output_size=[4, None], fill=fill)
        am(3, f"7x5x10to3x4x3_{fill}", spatial=(7, 5, 10), output_size=[3, 4, 3], fill=fill)
    am(1, "3to5_upsample_ties", spatial=(3,), output_size=5)
    am(2, "6x4to1_global_special", spatial=(6, 4), output_size=1, fill="special")
    am(2, "4x4to7x6_upsample_ties", spatial=(4, 4), output_size=[7, 6])
    am(3, "5x5x5to2_normal", spatial=(5, 5, 5), output_size=2, fill="normal")
    am(2, "7x5to3x4_ties", spatial=(7, 5), output_size=[3, 4], return_indices=False)
    am(2, "10x7to3_special", spatial=(10, 7), output_size=3, fill="special", unbatched=True)
    am(1, "10to3_ties", spatial=(10,), output_size=3, unbatched=True)
    am(3, "5x4x7to4x3x3_ties", spatial=(5, 4, 7), output_size=[4, 3, 3], unbatched=True)
    am(1, "7to3_special", spatial=(7,), output_size=3, fill="special", f32=True)
    am(2, "7x10to3x4_special", spatial=(7, 10), output_size=[3, 4], fill="special", f32=True)
    am(3, "5x7x6to4x3x5_ties", spatial=(5, 7, 6), output_size=[4, 3, 5], f32=True)

    # ---------------- max unpooling
    un = unpool_case
    un(1, "k2", kernel_size=2, spatial=(10,))
    un(1, "k3_stride2_pad1_output_size", kernel_size=3, stride=2, padding=1, spatial=(10,), output_size="input")
    un(1, "k3_stride1_overlap", kernel_size=3, stride=1, spatial=(9,))
    un(1, "k2_random_indices", kernel_size=2, spatial=(8,), random_indices=True)
    un(2, "k2", kernel_size=2, spatial=(6, 8))
    un(2, "k3_stride2", kernel_size=3, stride=2, spatial=(9, 7))
    un(2, "k3_stride1_pad1_overlap", kernel_size=3, stride=1, padding=1, spatial=(6, 7))
    un(2, "k3_stride2_pad1_output_size", kernel_size=3, stride=2, padding=1, spatial=(8, 9), output_size="input")
    un(2, "k2_output_size_nc", kernel_size=2, spatial=(7, 9), output_size="input_nc")
    un(2, "k2x3_stride_perdim_pad_perdim_output_size", kernel_size=[2, 3], stride=[2, 1], padding=[1, 1],
       spatial=(7, 8), output_size="input")
    un(2, "k2_larger_output_size", kernel_size=2, spatial=(6, 6), output_size=[7, 7])
    un(2, "k2_random_indices", kernel_size=2, spatial=(6, 6), random_indices=True, output_size=[7, 6])
    un(3, "k2", kernel_size=2, spatial=(4, 6, 4))
    un(3, "k3_stride2_pad1_output_size_nc", kernel_size=3, stride=2, padding=1, spatial=(5, 6, 7),
       output_size="input_nc")
    un(3, "k2_stride1_overlap_random_indices", kernel_size=2, stride=1, spatial=(3, 4, 4), random_indices=True)
    un(2, "k2", kernel_size=2, spatial=(6, 6), unbatched=True)
    un(1, "k3_stride2_output_size", kernel_size=3, stride=2, spatial=(9,), output_size="input", unbatched=True)
    un(3, "k2", kernel_size=2, spatial=(4, 4, 4), unbatched=True)
    un(2, "k3_stride2_pad1_output_size", kernel_size=3, stride=2, padding=1, spatial=(8, 9), output_size="input",
       f32=True)
    un(1, "k2_random_indices", kernel_size=2, spatial=(8,), random_indices=True, f32=True)
    un(3, "k2", kernel_size=2, spatial=(4, 4, 6), f32=True)

    # ---------------- average pooling with divisor_override
    dv = divisor_case
    dv(2, "k2_div3", kernel_size=2, divisor_override=3, spatial=(6, 8))
    dv(2, "k3_stride2_pad1_div5", kernel_size=3, stride=2, padding=1, divisor_override=5, spatial=(9, 8))
    dv(2, "k3_stride2_pad1_ceil_nocip_div4", kernel_size=3, stride=2, padding=1, ceil_mode=True,
       count_include_pad=False, divisor_override=4, spatial=(8, 10))
    dv(2, "k3_stride2_ceil_div7", kernel_size=3, stride=2, ceil_mode=True, divisor_override=7, spatial=(8, 9))
    dv(2, "k2x3_stride_perdim_pad_perdim_nocip_div2", kernel_size=[2, 3], stride=[2, 1], padding=[1, 0],
       count_include_pad=False, divisor_override=2, spatial=(7, 6))
    dv(2, "k2_negative_div", kernel_size=2, divisor_override=-2, spatial=(5, 6))
    dv(2, "pad_asym_div6", kernel_size=3, stride=2, padding=[[0, 1], [2, 1]], divisor_override=6, spatial=(8, 9))
    dv(2, "dil2_ext_div9", kernel_size=3, stride=1, dilation=2, padding=1, divisor_override=9, spatial=(8, 9))
    dv(3, "k2_div3", kernel_size=2, divisor_override=3, spatial=(4, 5, 6))
    dv(3, "k3_stride2_pad1_ceil_nocip_div10", kernel_size=3, stride=2, padding=1, ceil_mode=True,
       count_include_pad=False, divisor_override=10, spatial=(5, 6, 7))
    dv(3, "k_perdim_stride_perdim_div4", kernel_size=[1, 2, 3], stride=[1, 2, 2], padding=[0, 1, 1],
       divisor_override=4, spatial=(3, 6, 7))
    dv(3, "pad_asym_div5", kernel_size=2, stride=2, padding=[[1, 0], [0, 1], [1, 1]], divisor_override=5,
       spatial=(4, 5, 4))
    dv(2, "k3_stride2_pad1_div4", kernel_size=3, stride=2, padding=1, divisor_override=4, spatial=(7, 8),
       unbatched=True)
    dv(3, "k2_div3", kernel_size=2, divisor_override=3, spatial=(4, 4, 4), unbatched=True)
    dv(2, "k3_stride2_pad1_ceil_nocip_div4", kernel_size=3, stride=2, padding=1, ceil_mode=True,
       count_include_pad=False, divisor_override=4, spatial=(8, 10), f32=True)
    dv(3, "k2_div3", kernel_size=2, divisor_override=3, spatial=(4, 5, 6), f32=True)


def write(directory, entries):
    """Write ``entries`` into a fresh ``directory``; return the count per function."""
    directory.mkdir()
    counts = {}
    for name, arrays, params in entries:
        counts[params["func"]] = counts.get(params["func"], 0) + 1
        np.savez_compressed(directory / f"{name}.npz", params=np.array(json.dumps(params)), **arrays)
    return counts


def main():
    self_check_avg_via_conv()
    build()
    build_parity()
    names = [name for name, _, _ in cases + parity_cases]
    assert len(names) == len(set(names)), "duplicate case names"
    if CASES.exists():
        shutil.rmtree(CASES)
    for directory, entries in ((CASES, cases), (PARITY, parity_cases)):
        counts = write(directory, entries)
        total = sum(f.stat().st_size for f in directory.glob("*.npz"))
        print(f"wrote {len(entries)} cases ({total / 1e6:.2f} MB) to {directory}")
        for func in sorted(counts):
            print(f"  {func:22s} {counts[func]}")


if __name__ == "__main__":
    main()
