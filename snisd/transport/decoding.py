"""A stream's decoder on its own thread: released frames in, decoded pictures out, in order.

The event loop hands frames over through a bounded queue and never waits for the decoder; when
the queue is full the decoder has fallen behind, the queued frames are skipped and the caller
asks the sender for a keyframe to restart the prediction chain from.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ..codec.bitstream import EncodedFrame, SequenceHeader

log = logging.getLogger("snisd.transport.decoding")

DECODE_QUEUE = 32


class DecodeWorker:
    """Decodes one stream. `on_frame(frame, ef, t_released, tiers, decode_ms)` and
    `on_trouble(reason)` (a keyframe is needed) are called on the worker thread."""

    def __init__(
        self,
        label: str,
        seq: SequenceHeader,
        model: str | None,
        on_frame: Callable[[Any, EncodedFrame, float, int, float], None],
        on_trouble: Callable[[str], None],
        queue_size: int = DECODE_QUEUE,
    ) -> None:
        self.label = label
        self.seq = seq
        self.model = model
        self.on_frame = on_frame
        self.on_trouble = on_trouble
        self._q: queue.Queue = queue.Queue(queue_size)
        self._thread = threading.Thread(target=self._main, name=f"decode-{label}", daemon=True)
        self.decoded = 0
        self.errors = 0
        self.skipped = 0
        self.last_tiers = 0
        self.failed: str | None = None  # why the decoder could not start

    def start(self) -> None:
        self._thread.start()

    def put(self, ef: EncodedFrame, t_released: float) -> bool:
        """Queue a frame; False when the decoder was behind (the queue was flushed)."""
        try:
            self._q.put_nowait((ef, t_released))
            return True
        except queue.Full:
            self._flush()
            return False

    def _flush(self) -> None:
        while True:
            try:
                self._q.get_nowait()
                self.skipped += 1
            except queue.Empty:
                return

    def stop(self, timeout: float = 10.0) -> None:
        """Let the worker finish what is queued, then end it (blocking: run it in an executor)."""
        try:
            self._q.put(None, timeout=2.0)
        except queue.Full:
            self._flush()
            self._q.put_nowait(None)
        self._thread.join(timeout)

    def _main(self) -> None:
        from ..codec.decoder import Decoder, MissingReferenceError
        from ..errors import SnisError

        try:
            decoder = Decoder(self.seq, model=self.model)
        except Exception as exc:  # noqa: BLE001 - a missing model, say: log it with the cause
            self.failed = f"{type(exc).__name__}: {exc}"
            log.error("stream %s: cannot decode: %s", self.label, self.failed)
            return
        while True:
            item = self._q.get()
            if item is None:
                return
            ef, t_released = item
            t0 = time.perf_counter()
            try:
                frame = decoder.decode(ef)
            except MissingReferenceError as exc:
                self.skipped += 1
                self.on_trouble(str(exc))
                continue
            except SnisError as exc:
                self.errors += 1
                log.warning("stream %s: decode error: %s", self.label, exc)
                self.on_trouble(f"decode error: {exc}")
                continue
            self.decoded += 1
            self.last_tiers = decoder.last_tiers
            self.on_frame(frame, ef, t_released, decoder.last_tiers, (time.perf_counter() - t0) * 1e3)
