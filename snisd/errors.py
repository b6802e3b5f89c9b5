"""Typed errors: every one names the offending value so a log line is enough to act on."""

from __future__ import annotations


class SnisError(Exception):
    """Base class of every error snisd raises on purpose."""


class InputError(SnisError):
    """An input file or frame cannot be used (unreadable, wrong format, odd size)."""

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(f"{path}: {message}" if path is not None else message)
        self.path = path


class BitstreamError(SnisError):
    """A SNIS bitstream is corrupt, truncated or of an unknown version."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(f"{message} (at byte {offset})" if offset is not None else message)
        self.offset = offset


class ModelError(SnisError):
    """The analysis/synthesis model is missing, unreadable or of the wrong shape."""


class ConfigError(SnisError):
    """A configuration key or value is wrong; carries the key path and the value found."""

    def __init__(self, key: str, expected: str, found: object) -> None:
        super().__init__(f"config key {key!r}: expected {expected}, found {found!r}")
        self.key = key
        self.expected = expected
        self.found = found


class ContainerError(SnisError):
    """An MP4 file or fragment is malformed; carries the byte offset and box type."""

    def __init__(self, message: str, offset: int | None = None, box: str | None = None) -> None:
        where = []
        if box is not None:
            where.append(f"box {box!r}")
        if offset is not None:
            where.append(f"offset {offset}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.offset = offset
        self.box = box
