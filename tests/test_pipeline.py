"""The real-time pipeline: drop-oldest queues, stage counters and rates, slow stages dropping
frames instead of adding latency, stage failures, and the recording sink."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from doubles import DoubleEncoder

from snisd.capture.synthetic import SyntheticSource
from snisd.codec.bitstream import EncodedFrame, SequenceHeader
from snisd.container import read_fmp4
from snisd.frame import Frame
from snisd.pipeline import Closed, LatestQueue, Pipeline, RateMeter, RecordSink

# -- queue and counters -------------------------------------------------------------------------


def test_latest_queue_drops_oldest():
    q: LatestQueue[int] = LatestQueue(2)
    assert q.put(1) == 0 and q.put(2) == 0
    assert q.put(3) == 1  # 1 is evicted: the latest frame wins
    assert q.dropped == 1 and len(q) == 2
    assert q.get() == 2 and q.get() == 3
    with pytest.raises(TimeoutError):
        q.get(timeout=0.01)
    q.put(4)
    q.close()
    assert q.get() == 4  # what was queued is still delivered
    with pytest.raises(Closed):
        q.get()
    with pytest.raises(Closed):
        q.put(5)


def test_latest_queue_wakes_a_waiting_consumer():
    q: LatestQueue[int] = LatestQueue(1)
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=2)))
    t.start()
    time.sleep(0.05)
    q.put(7)
    t.join(2)
    assert got == [7]


def test_rate_meter():
    m = RateMeter(seconds=10)
    for i in range(31):
        m.add((1000, 500), now=i / 30)
    fps, bps = m.rates(now=1.0)
    assert fps == pytest.approx(30)
    assert bps == [pytest.approx(240000), pytest.approx(120000)]
    assert m.rates(now=100.0) == (0.0, [0.0, 0.0])  # stalled
    slow = RateMeter(seconds=2)
    for t in (0.0, 3.0, 6.0):  # one frame every 3 s: slower than the window
        slow.add((3000,), now=t)
    assert slow.rates(now=7.0) == (pytest.approx(1 / 3), [pytest.approx(8000)])
    assert slow.rates(now=13.0)[0] == 0.0


class ListSink:
    name = "list"

    def __init__(self, delay: float = 0.0) -> None:
        self.frames: list[EncodedFrame] = []
        self.closed = False
        self.delay = delay

    def write(self, frame: EncodedFrame) -> None:
        time.sleep(self.delay)
        self.frames.append(frame)

    def close(self) -> None:
        self.closed = True


def test_pipeline_runs_and_counts():
    src = SyntheticSource(64, 48, fps=200)
    src.open()
    sink = ListSink()
    p = Pipeline(src, DoubleEncoder(64, 48), [sink], max_frames=40).start()
    assert p.done.wait(10)
    assert p.join(1)
    snap = p.snapshot()
    st = snap["stages"]
    assert st["capture"]["out"] == 40
    assert st["encode"]["in"] == st["encode"]["out"] == 40 - st["encode"]["dropped"]
    assert st["output"]["out"] == len(sink.frames) == st["encode"]["out"] - st["output"]["dropped"]
    assert sink.closed and not p.errors
    assert [f.index for f in sink.frames] == sorted(f.index for f in sink.frames)
    assert snap["fps"] > 0 and len(snap["tier_bitrate_bps"]) == 3 and snap["tiers"] == 3
    assert st["encode"]["p95_ms"] >= st["encode"]["p50_ms"] >= 0


def test_sinks_get_each_frames_capture_time():
    """Pipeline.capture_ms(pts): when the frame left the camera, on the sender's clock (monotonic
    ms), before the sink saw it; only recent frames are kept."""
    from snisd.pipeline import CAPTURE_TIMES

    seen: list[tuple[float | None, float]] = []

    class TimingSink(ListSink):
        def write(self, frame: EncodedFrame) -> None:
            seen.append((p.capture_ms(frame.pts_us), time.monotonic() * 1000.0))
            super().write(frame)

    src = SyntheticSource(64, 48, fps=200)
    src.open()
    start = time.monotonic() * 1000.0
    p = Pipeline(src, DoubleEncoder(64, 48), [TimingSink()], max_frames=CAPTURE_TIMES + 40, queue_size=512)
    p.start()
    assert p.done.wait(20) and p.join(1)
    assert len(seen) == CAPTURE_TIMES + 40
    assert all(c is not None and start <= c <= at for c, at in seen)
    assert p.capture_ms(0) is None  # the oldest frames were forgotten
    assert p.capture_ms(123456789) is None


def test_slow_encoder_drops_oldest_frames_not_latency():
    src = SyntheticSource(64, 48, fps=100)
    src.open()
    enc = DoubleEncoder(64, 48, delay=0.05)  # 20 fps encoder behind a 100 fps camera
    sink = ListSink()
    p = Pipeline(src, enc, [sink], queue_size=2).start()
    time.sleep(1.0)
    p.stop()
    assert p.join(2)
    st = p.snapshot()["stages"]
    assert st["encode"]["dropped"] > 40  # most camera frames never reach the encoder
    assert st["encode"]["out"] < 30
    # the newest frames were coded: the last frame encoded is one of the last captured
    assert sink.frames[-1].pts_us >= (st["capture"]["out"] - 3) * 10000
    assert sink.closed


def test_slow_output_drops_and_asks_for_a_keyframe():
    src = SyntheticSource(64, 48, fps=200)
    src.open()
    enc = DoubleEncoder(64, 48)
    sink = ListSink(delay=0.03)
    p = Pipeline(src, enc, [sink], queue_size=1).start()
    time.sleep(0.8)
    p.stop()
    assert p.join(2)
    assert p.output.dropped > 0
    assert enc.forced, "a dropped fragment must be followed by a keyframe"


def test_stage_failure_stops_the_pipeline():
    class Broken(DoubleEncoder):
        def encode(self, frame, force_keyframe=False):
            if self.i == 5:
                raise RuntimeError("boom")
            return super().encode(frame, force_keyframe)

    src = SyntheticSource(64, 48, fps=200)
    src.open()
    sink = ListSink()
    p = Pipeline(src, Broken(64, 48), [sink]).start()
    assert p.done.wait(5)
    assert any("boom" in e for e in p.errors)
    assert sink.closed


def test_record_sink_writes_a_readable_file(tmp_path):
    path = str(tmp_path / "r.mp4")
    src = SyntheticSource(64, 48, fps=300)
    src.open()
    enc = DoubleEncoder(64, 48)
    sink = RecordSink(path, enc.sequence_header)
    p = Pipeline(src, enc, [sink], max_frames=20, queue_size=64).start()
    assert p.done.wait(10)
    seq, frames, truncated = read_fmp4(path)
    assert seq == enc.sequence_header and len(frames) == 20 and not truncated
    # a second run continues the same recording
    sink2 = RecordSink(path, enc.sequence_header)
    enc2 = DoubleEncoder(64, 48)
    for i in range(3):
        sink2.write(enc2.encode(Frame(*(np.zeros(s, np.uint8) for s in ((48, 64), (24, 32), (24, 32))), i * 33333)))
    sink2.close()
    assert len(read_fmp4(path)[1]) == 23
    # another stream format moves the old file aside
    other = RecordSink(path, SequenceHeader(32, 32, 30, 1, 3))
    other.close()
    assert other.moved_aside and os.path.exists(other.moved_aside)
