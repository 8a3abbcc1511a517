"""kiln's exceptions. Each carries kiln's message as str(e) and the ErrorCode as e.code.

They also derive from the matching built-in exception, so generic handlers work:
InvalidArgumentError and OutOfRangeError are ValueErrors, NotFoundError is a
LookupError, UnsupportedError a NotImplementedError, IoError an OSError and
OutOfMemoryError a MemoryError. All are KilnError, a RuntimeError.
"""

from __future__ import annotations

from typing import Any


class KilnError(RuntimeError):
    """Base of kiln's exceptions; `code` is the kiln.ErrorCode, str() the message."""

    code: Any = None


class InvalidArgumentError(KilnError, ValueError):
    """A malformed argument: shape, name or dtype."""


class NotFoundError(KilnError, LookupError):
    """A named tensor, input or file does not exist."""


class UnsupportedError(KilnError, NotImplementedError):
    """A valid request this kiln build cannot serve (an op, a dtype, CUDA memory)."""


class InvalidModelError(KilnError):
    """The model or engine file itself is malformed."""


class VersionMismatchError(KilnError):
    """The engine was built by another kiln or engine-format version."""


class DeviceMismatchError(KilnError):
    """The engine was built for another device."""


class OutOfRangeError(KilnError, ValueError):
    """A shape outside the engine's optimization profile."""


class OutOfMemoryError(KilnError, MemoryError):
    """An allocation failed."""


class IoError(KilnError, OSError):
    """Reading or writing a file failed."""


class InternalError(KilnError):
    """A bug in kiln."""


__all__ = [
    "KilnError",
    "InvalidArgumentError",
    "NotFoundError",
    "UnsupportedError",
    "InvalidModelError",
    "VersionMismatchError",
    "DeviceMismatchError",
    "OutOfRangeError",
    "OutOfMemoryError",
    "IoError",
    "InternalError",
]
