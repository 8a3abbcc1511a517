"""SerializedEngine: what Builder.build_serialized_network and Engine.serialize return."""

from __future__ import annotations


class SerializedEngine(bytes):
    """A serialized engine: bytes to write to a file or give to Runtime.deserialize_cuda_engine.

    Also usable in a `with` statement, like TensorRT's IHostMemory.
    """

    __slots__ = ()

    @property
    def nbytes(self) -> int:
        """Size in bytes."""
        return len(self)

    def __enter__(self) -> SerializedEngine:
        return self

    def __exit__(self, *exc_info: object) -> bool:
        return False


__all__ = ["SerializedEngine"]
