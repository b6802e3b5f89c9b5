"""A JSON-lines log of the frames a receiver released or decoded, and the picture hash it uses.

Tests and benchmarks compare it line by line with the sender's log of its own reconstruction:
equal hashes for the same frame number and tier count mean bit-exact decoding.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any


def frame_hash(frame) -> str:
    """Hash of a decoded picture (Y, U, V planes), the same on sender and receiver."""
    h = hashlib.sha1()
    for plane in (frame.y, frame.u, frame.v):
        h.update(plane.tobytes())
    return h.hexdigest()


class FrameLog:
    """JSON lines, one per frame; safe to write from several threads."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "a", buffering=1)
        self._lock = threading.Lock()

    def write(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self._f.write(json.dumps(rec) + "\n")

    def close(self) -> None:
        with self._lock:
            self._f.close()
