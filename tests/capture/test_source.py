"""The source interface around every camera: the pacer, and reconnecting with backoff."""

from __future__ import annotations

import logging
import time
from itertools import pairwise

import numpy as np
import pytest

from snisd.capture.source import Pacer, ReconnectingSource, Source, SourceError, SourceTimeout
from snisd.frame import Frame


def test_pacer_jumps_when_late():
    now = [0.0]
    p = Pacer(10, clock=lambda: now[0])
    assert p.next() == 0
    now[0] = 0.55
    assert p.next() == 5 and p.dropped == 4
    assert p.pts_us(5) == 500000


class FlakySource(Source):
    """Fails reads and opens on a script: a camera unplugged and plugged back in."""

    name = "flaky"
    width, height, fps = 32, 32, 30.0
    opens_failing = 0
    instances: list[FlakySource] = []

    def __init__(self, fail_after: int, stall: bool = False) -> None:
        self.fail_after = fail_after
        self.stall = stall
        self.reads = 0
        self.closed = False
        FlakySource.instances.append(self)

    def open(self) -> None:
        if FlakySource.opens_failing > 0:
            FlakySource.opens_failing -= 1
            raise SourceError("no such device")

    def read(self, timeout: float = 2.0) -> Frame:
        self.reads += 1
        if self.reads > self.fail_after:
            if self.stall:
                raise SourceTimeout(f"no frame for {timeout} s")
            raise OSError(19, "No such device")
        y = np.full((32, 32), self.reads, np.uint8)
        c = np.full((16, 16), 128, np.uint8)
        return Frame(y, c, c.copy(), pts_us=self.reads * 33333)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("stall", [False, True])
def test_reconnect_with_backoff(stall, caplog):
    caplog.set_level(logging.INFO, "snisd.capture")
    FlakySource.instances = []
    FlakySource.opens_failing = 0
    src = ReconnectingSource(lambda: FlakySource(3, stall), backoff_min=0.01, backoff_max=0.04)
    src.open()
    pts = [src.read().pts_us for _ in range(3)]
    FlakySource.opens_failing = 3  # the device is gone for three attempts
    t = time.monotonic()
    pts += [src.read().pts_us for _ in range(3)]
    elapsed = time.monotonic() - t
    assert elapsed >= 0.01 + 0.02 + 0.04 + 0.04 - 0.005  # backoff doubled, capped at 0.04
    assert src.status.reopens == 1 and src.status.failures == 1 and src.status.attempts == 4
    assert src.status.state == "open"
    assert all(b > a for a, b in pairwise(pts)), pts  # timestamps stay monotonic across reopen
    assert FlakySource.instances[0].closed
    assert "reopening" in caplog.text and "reopened" in caplog.text
    src.close()
    assert src.status.state == "closed"


def test_reconnect_gives_up_after_max_failures_and_stop_interrupts():
    FlakySource.opens_failing = 0
    src = ReconnectingSource(lambda: FlakySource(0), backoff_min=0.01, backoff_max=0.01, max_failures=2)
    src.open()
    FlakySource.opens_failing = 100
    with pytest.raises(SourceError, match="did not come back"):
        src.read()
    assert src.status.state == "failed"
    FlakySource.opens_failing = 0
    src2 = ReconnectingSource(lambda: FlakySource(0), backoff_min=5, backoff_max=5)
    src2.open()
    src2.stop()
    t = time.monotonic()
    with pytest.raises(SourceError):
        src2.read()
    assert time.monotonic() - t < 1
