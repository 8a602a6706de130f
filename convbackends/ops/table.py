"""The op table: what each op is, independent of any backend.

One :class:`Op` per op: its operands and results, how its spec is built from a call's
shapes and parameters, the oracle function that defines it (in the repository's float64
``reference/oracle.py``), and the lowerings that rewrite it into other ops
(:mod:`convbackends.ops.lowerings`). Dispatch, ``explain()``, the functional API and the
conformance tests all read this table, so a new op is one entry here, one lowering or
kernel, and one oracle function.
"""

from dataclasses import dataclass

from ..errors import ShapeError
from ..spec import adaptive_pool_spec, conv_spec, pool_spec, unpool_spec
from ..spec.layout import CHANNELS_FIRST
from .gradients import conv_grad_builder, pool_grad_builder

__all__ = ["Op", "OPS", "OP_NAMES", "get_op"]


def _conv_builder(op):
    def build(func, nd, shapes, dtype, *, stride=1, padding=0, dilation=1, groups=1,
              output_padding=0, data_format=CHANNELS_FIRST):
        x_shape, w_shape, bias_shape = shapes
        return conv_spec(func, x_shape, w_shape, bias_shape, op=op, stride=stride,
                         padding=padding, dilation=dilation, groups=groups,
                         output_padding=output_padding, dtype=dtype, data_format=data_format)
    return build


def _pool_builder(op):
    def build(func, nd, shapes, dtype, *, kernel_size, stride=None, padding=0, dilation=1,
              ceil_mode=False, count_include_pad=True, divisor_override=None,
              data_format=CHANNELS_FIRST):
        return pool_spec(func, op, shapes[0], nd, kernel_size, stride, padding, dilation,
                         ceil_mode, count_include_pad, dtype, divisor_override, data_format)
    return build


def _adaptive_builder(op):
    def build(func, nd, shapes, dtype, *, output_size, data_format=CHANNELS_FIRST):
        return adaptive_pool_spec(func, shapes[0], nd, output_size, dtype, op=op,
                                  data_format=data_format)
    return build


def _unpool_build(func, nd, shapes, dtype, *, kernel_size, stride=None, padding=0,
                  output_size=None, data_format=CHANNELS_FIRST):
    return unpool_spec(func, shapes[0], shapes[1], nd, kernel_size, stride, padding,
                       output_size, dtype, data_format)


@dataclass(frozen=True)
class Op:
    """One op of the table.

    Attributes
    ----------
    name : str
        The op's name, and the name of the backend method that runs it natively.
    operands : tuple of str
        The arrays a backend method takes before the spec (``("x", "weight", "bias")``).
    results : tuple of str
        What it returns: ``("y",)`` or ``("values", "indices")``.
    build_spec : callable
        ``build_spec(func, nd, shapes, dtype, **params) -> (spec, batched)``: validates a
        call (``func`` names the public function in messages; ``shapes`` are the operands'
        shapes, ``None`` for an absent bias).
    oracle : str
        The function of the float64 oracle that defines the op.
    summary : str
        One line for ``explain()`` and the API reference.
    result_shape : callable
        ``result_shape(spec)``: the first result's shape (batched). Default: the spec's
        ``output_shape``; a gradient's is its operand's shape.
    """

    name: str
    operands: tuple
    results: tuple
    build_spec: object
    oracle: str
    summary: str
    result_shape: object = lambda spec: spec.output_shape

    @property
    def lowerings(self):
        """The rewrites of this op into others, in the order dispatch tries them."""
        from .lowerings import lowerings_from
        return lowerings_from(self.name)


OPS = {op.name: op for op in (
    Op("conv", ("x", "weight", "bias"), ("y",), _conv_builder("conv"), "conv",
       "convolution (cross-correlation)"),
    Op("conv_transpose", ("x", "weight", "bias"), ("y",), _conv_builder("conv_transpose"),
       "conv_transpose", "transposed convolution, the adjoint of conv"),
    Op("max_pool", ("x",), ("y",), _pool_builder("max_pool"), "max_pool", "max pooling"),
    Op("max_pool_with_indices", ("x",), ("values", "indices"),
       _pool_builder("max_pool_with_indices"), "max_pool_with_indices",
       "max pooling with int64 flat indices of the maxima into each input plane"),
    Op("avg_pool", ("x",), ("y",), _pool_builder("avg_pool"), "avg_pool", "average pooling"),
    Op("adaptive_avg_pool", ("x",), ("y",), _adaptive_builder("adaptive_avg_pool"),
       "adaptive_avg_pool", "average over adaptive windows [floor(iL/out), ceil((i+1)L/out))"),
    Op("adaptive_max_pool", ("x",), ("values", "indices"),
       _adaptive_builder("adaptive_max_pool"), "adaptive_max_pool",
       "maximum over adaptive windows, with int64 flat indices"),
    Op("max_unpool", ("x", "indices"), ("y",), _unpool_build, "max_unpool",
       "scatter of pooled values back to their indices, zeros elsewhere"),
    Op("conv_input_grad", ("weight", "grad_output"), ("grad_input",),
       conv_grad_builder("conv", "input"), "conv_input_grad",
       "gradient of conv with respect to its input", lambda spec: spec.input_shape),
    Op("conv_weight_grad", ("x", "grad_output"), ("grad_weight",),
       conv_grad_builder("conv", "weight"), "conv_weight_grad",
       "gradient of conv with respect to its weight", lambda spec: spec.weight_shape),
    Op("conv_transpose_input_grad", ("weight", "grad_output"), ("grad_input",),
       conv_grad_builder("conv_transpose", "input"), "conv_transpose_input_grad",
       "gradient of conv_transpose with respect to its input", lambda spec: spec.input_shape),
    Op("conv_transpose_weight_grad", ("x", "grad_output"), ("grad_weight",),
       conv_grad_builder("conv_transpose", "weight"), "conv_transpose_weight_grad",
       "gradient of conv_transpose with respect to its weight",
       lambda spec: spec.weight_shape),
    Op("max_pool_input_grad", ("x", "grad_output"), ("grad_input",),
       pool_grad_builder("max_pool"), "max_pool_input_grad",
       "gradient of max pooling: each window's gradient to its maximum",
       lambda spec: spec.input_shape),
    Op("avg_pool_input_grad", ("grad_output",), ("grad_input",),
       pool_grad_builder("avg_pool"), "avg_pool_input_grad",
       "gradient of average pooling: each window's gradient over its divisor, spread",
       lambda spec: spec.input_shape),
)}

OP_NAMES = tuple(OPS)


def get_op(name):
    """The table entry of ``name``; an unknown name is a :class:`ShapeError` listing them."""
    try:
        return OPS[name]
    except KeyError:
        raise ShapeError(f"unknown op {name!r}; ops: {', '.join(OP_NAMES)}") from None
