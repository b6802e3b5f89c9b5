"""A minimal read-only reader of .tflite flatbuffers (the TFLite schema), bounds-checked.

The analysis runtime needs two things from its model file that the interpreter API does not
give: a metadata entry (the per-channel dequantisation steps) and the byte position of one
constant tensor (a RESHAPE target it rewrites per frame size).  Reading them here keeps the
runtime free of the flatbuffers package and the generated schema module.
"""

from __future__ import annotations

import struct

from ..errors import ModelError


class TFLiteFile:
    """A minimal read-only view of a .tflite flatbuffer (TFLite schema): metadata entries and the
    byte span of a constant tensor's data, so the runtime needs nothing beyond the interpreter.

    Every lookup returns None when the flatbuffer does not have what is asked for; offsets or
    lengths outside the data raise ModelError.
    """

    # field indices of the TFLite schema tables used here
    _MODEL_SUBGRAPHS, _MODEL_BUFFERS, _MODEL_METADATA = 2, 4, 6
    _SUBGRAPH_TENSORS, _TENSOR_BUFFER, _TENSOR_NAME = 0, 2, 3
    _METADATA_NAME, _METADATA_BUFFER, _BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 0, 1, 2

    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.where = data, where
        self.root = self._u32(0)

    def _bad(self, pos: int) -> ModelError:
        return ModelError(f"{self.where}: truncated or malformed flatbuffer (offset {pos})")

    def _unpack(self, fmt: str, pos: int) -> int:
        if pos < 0 or pos + struct.calcsize(fmt) > len(self.data):
            raise self._bad(pos)
        return struct.unpack_from(fmt, self.data, pos)[0]

    def _u32(self, pos: int) -> int:
        return self._unpack("<I", pos)

    def _field(self, table: int, index: int) -> int | None:
        vtable = table - self._unpack("<i", table)
        vsize = self._unpack("<H", vtable)
        if 4 + 2 * index >= vsize:
            return None
        off = self._unpack("<H", vtable + 4 + 2 * index)
        return table + off if off else None

    def _vector(self, pos: int | None, item: int = 1) -> tuple[int, int]:  # (length, position of element 0)
        if pos is None:
            return 0, 0
        vec = pos + self._u32(pos)
        length = self._u32(vec)
        if vec + 4 + length * item > len(self.data):
            raise self._bad(vec)
        return length, vec + 4

    def _tables(self, pos: int | None) -> list[int]:
        count, first = self._vector(pos, 4)
        return [first + 4 * i + self._u32(first + 4 * i) for i in range(count)]

    def _string(self, pos: int | None) -> str | None:
        if pos is None:
            return None
        length, start = self._vector(pos)
        return self.data[start : start + length].decode("utf-8", "replace")

    def _buffer_span(self, index: int) -> tuple[int, int] | None:
        buffers = self._tables(self._field(self.root, self._MODEL_BUFFERS))
        if not 0 <= index < len(buffers):
            return None
        buf = buffers[index]
        data_pos = self._field(buf, self._BUFFER_DATA)
        if data_pos is not None:
            length, start = self._vector(data_pos)
            return start, length
        off_pos, size_pos = self._field(buf, self._BUFFER_OFFSET), self._field(buf, self._BUFFER_SIZE)
        if off_pos is None or size_pos is None:  # large models keep buffer data after the flatbuffer
            return None
        off, size = self._unpack("<Q", off_pos), self._unpack("<Q", size_pos)
        if off + size > len(self.data):
            raise self._bad(off)
        return off, size

    def metadata(self, name: str) -> bytes | None:
        """The bytes of metadata entry `name` (Model.metadata -> Model.buffers[...].data)."""
        for entry in self._tables(self._field(self.root, self._MODEL_METADATA)):
            if self._string(self._field(entry, self._METADATA_NAME)) == name:
                pos = self._field(entry, self._METADATA_BUFFER)
                span = self._buffer_span(self._u32(pos) if pos is not None else 0)
                return None if span is None else bytes(self.data[span[0] : span[0] + span[1]])
        return None

    def tensor_data_span(self, name: str) -> tuple[int, int] | None:
        """(start, length) in the file of the constant data of the first subgraph's tensor `name`."""
        subgraphs = self._tables(self._field(self.root, self._MODEL_SUBGRAPHS))
        if not subgraphs:
            return None
        for t in self._tables(self._field(subgraphs[0], self._SUBGRAPH_TENSORS)):
            if self._string(self._field(t, self._TENSOR_NAME)) == name:
                pos = self._field(t, self._TENSOR_BUFFER)
                return self._buffer_span(self._u32(pos)) if pos is not None else None
        return None
