"""How shapes and sizes are written in error messages (PyTorch's way)."""

__all__ = ["shape_str", "size_str"]


def shape_str(shape):
    """``[1, 3, 28, 28]``, as PyTorch prints a size in its messages."""
    return "[" + ", ".join(str(s) for s in shape) + "]"


def size_str(values):
    """``(3 x 28 x 28)``, as PyTorch prints per-channel sizes."""
    return "(" + " x ".join(str(v) for v in values) + ")"
