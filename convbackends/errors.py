"""The exceptions of convbackends.

Every error the library raises on purpose is a :class:`ConvError`, and each subclass also
derives from the builtin exception a Python user would catch for that cause, so
``except ValueError`` keeps working for code that does not know this library.
"""

__all__ = [
    "ConvError",
    "ShapeError",
    "DTypeError",
    "UnsupportedError",
    "BackendUnavailableError",
    "UnknownBackendError",
    "RegistrationError",
    "ArgumentTypeError",
]


class ConvError(Exception):
    """Base class of every error raised by convbackends."""


class ShapeError(ConvError, ValueError):
    """Shapes or parameters are inconsistent (channels, kernel vs input, stride, padding...)."""


class DTypeError(ConvError, TypeError):
    """An input or weight has a dtype no backend computes in, or the two dtypes differ."""


class UnsupportedError(ConvError, NotImplementedError):
    """A backend named explicitly cannot run this call; the message says why and who can."""


class BackendUnavailableError(ConvError, RuntimeError):
    """A backend named explicitly cannot run on this machine; the message says what is missing."""


class UnknownBackendError(ConvError, KeyError):
    """No backend is registered under that name; the message lists the registered names."""

    def __str__(self):
        # KeyError.__str__ would wrap the message in quotes.
        return str(self.args[0]) if self.args else ""


class RegistrationError(ConvError, TypeError, ValueError):
    """A backend cannot be registered: it lacks the protocol, or its name is taken.

    A ``TypeError`` for an object that is no backend and a ``ValueError`` for a taken name,
    as code written before this class catches either.
    """


class ArgumentTypeError(ConvError, TypeError):
    """An argument is not of the kind the call takes (a ``Sequential`` child that is not a
    layer); dtype problems are :class:`DTypeError`."""
