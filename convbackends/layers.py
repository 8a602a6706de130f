"""The layer classes under their first name: an alias of :mod:`convbackends.nn`.

``convbackends.layers.Conv2d`` and ``from convbackends.layers import Conv2d`` give the very
classes of :mod:`convbackends.nn`.
"""

from .nn import *  # noqa: F401,F403
from .nn import __all__  # noqa: F401
