"""Scoring what a viewer saw, for tools/bench_link_quality.py: the playout rule, clock alignment,
latency, stalls and delivered VMAF. Pure functions on logs and pictures; no network.

The inputs are, per run:

* the *source timeline*: source frame n was captured at C(n) = epoch + n / fps on the sender's
  clock (ms). ``epoch`` is the sender-clock time of frame 0: the minimum over the frames of
  (capture time - n / fps), i.e. the pacing of the camera (a file played at its frame rate);
* the *shown pictures*: (source index, receiver-clock time it was shown, the picture), in the
  order the receiver showed them;
* *clock samples*: (offset, round trip) pairs from NTP-style pings over the control channel
  (snisd/transport/clocksync.py), offset = sender clock - receiver clock.

The playout rule (the same for every sender): the viewer's screen is sampled once per source
frame, at that frame's display deadline D(n) = C(n) + playout latency (sender clock; minus the
offset on the receiver's clock). At slot n the screen shows the newest picture the receiver had
shown by D(n) among those of source index <= n (a picture that came early waits for its slot). So
a picture that missed its deadline is replaced by the last one shown before it (repeated), and is
seen at a later slot only if nothing newer arrived by then. Before the first picture the screen is
blank (mid-grey).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BLANK = -1  # slot value: nothing shown yet


@dataclass(frozen=True)
class ClockSample:
    """One ping's result: offset = sender clock - receiver clock (ms), its round trip (ms)."""

    offset_ms: float
    rtt_ms: float


def best_clock_offset(samples: Iterable[ClockSample]) -> ClockSample:
    """The sample with the smallest round trip (its error is at most half of it), as NTP picks.
    Raises ValueError without any sample."""
    got = [s for s in samples if math.isfinite(s.offset_ms) and math.isfinite(s.rtt_ms) and s.rtt_ms >= 0]
    if not got:
        raise ValueError("no clock sample: the receiver got no pong over the control channel")
    return min(got, key=lambda s: (s.rtt_ms, abs(s.offset_ms)))


def capture_epoch(indices: Sequence[int], capture_ms: Sequence[float], fps: float) -> float:
    """Sender-clock time of source frame 0 from per-frame capture times: min(capture - n / fps),
    the frame that waited least (a camera releases frames on its own clock)."""
    if not indices:
        raise ValueError("no capture time")
    return min(t - n * 1000.0 / fps for n, t in zip(indices, capture_ms, strict=True))


@dataclass(frozen=True)
class Shown:
    """A picture the receiver showed: its source frame index and the receiver-clock time (ms)."""

    index: int
    t_ms: float


def playout(
    shown: Sequence[Shown], first: int, last: int, epoch_ms: float, fps: float, offset_ms: float, latency_ms: float
) -> list[int]:
    """Which shown picture (its position in `shown`, or BLANK) is on screen at each slot
    first..last (inclusive) under the playout rule of this module. `shown` is in display order."""
    out: list[int] = []
    order = sorted(range(len(shown)), key=lambda k: (shown[k].t_ms, k))
    j = 0  # pictures shown by the current deadline: order[:j]
    best = BLANK  # among them, the newest with index <= slot (the screen)
    pending: list[int] = []  # shown by the deadline but for a later slot (early)
    for n in range(first, last + 1):
        deadline = epoch_ms + n * 1000.0 / fps + latency_ms - offset_ms  # receiver clock
        while j < len(order) and shown[order[j]].t_ms <= deadline:
            pending.append(order[j])
            j += 1
        keep = []
        for k in pending:
            if shown[k].index <= n:
                if best == BLANK or shown[k].index >= shown[best].index:
                    best = k
            else:
                keep.append(k)
        pending = keep
        out.append(best)
    return out


def latencies_ms(
    shown: Sequence[Shown],
    epoch_ms: float,
    fps: float,
    offset_ms: float,
    first: int | None = None,
    last: int | None = None,
) -> list[float]:
    """Glass-to-glass latency of every shown picture (of source index first..last): shown time
    minus its capture time moved to the receiver's clock."""
    return [
        s.t_ms - (epoch_ms + s.index * 1000.0 / fps - offset_ms)
        for s in shown
        if (first is None or s.index >= first) and (last is None or s.index <= last)
    ]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear interpolation; None for no values."""
    if not len(values):
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


@dataclass(frozen=True)
class Stalls:
    count: int
    total_s: float
    longest_s: float
    fresh_share: float  # slots showing a picture not on screen at the slot before


def stalls(slots: Sequence[int], fps: float, threshold_s: float = 0.2) -> Stalls:
    """Freezes of the played-out sequence: a stretch with no new picture that lasts more than
    `threshold_s` beyond the one frame interval expected counts whole (its length minus the
    expected interval); blank slots at the start count as frozen."""
    period = 1.0 / fps
    count, total, longest = 0, 0.0, 0.0
    fresh = 0
    run = 0  # slots since the last new picture, beyond the first
    prev: int | None = None

    def close(r: int) -> None:
        nonlocal count, total, longest
        frozen = r * period  # time beyond the expected interval
        if frozen > threshold_s:
            count += 1
            total += frozen
            longest = max(longest, frozen)

    for k, v in enumerate(slots):
        new = v != BLANK and (prev is None or v != prev)
        if new:
            fresh += 1
            if k:
                close(run)
            run = 0
        elif k == 0:
            run = 1  # a blank first slot is frozen from the start
        else:
            run += 1
        prev = v
    close(run)
    return Stalls(count, round(total, 3), round(longest, 3), fresh / len(slots) if slots else 0.0)


# ---------------------------------------------------------------------------------------------
# Pictures: raw I420 files (one frame after the other) read through a memory map.


class RawVideo:
    """An I420 raw file of fixed-size frames, frame k at byte k * frame_bytes."""

    def __init__(self, path: str | os.PathLike, width: int, height: int) -> None:
        self.path, self.width, self.height = str(path), width, height
        self.frame_bytes = width * height * 3 // 2
        size = os.path.getsize(self.path)
        self.frames = size // self.frame_bytes
        self._mm = np.memmap(self.path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)

    def frame(self, k: int) -> np.ndarray:
        if not 0 <= k < self.frames:
            raise IndexError(f"frame {k} of {self.frames} in {self.path}")
        return self._mm[k * self.frame_bytes : (k + 1) * self.frame_bytes]

    def luma(self, k: int) -> np.ndarray:
        return self.frame(k)[: self.width * self.height].reshape(self.height, self.width)


def blank_frame(width: int, height: int) -> np.ndarray:
    return np.full(width * height * 3 // 2, 128, np.uint8)


def match_start(
    received: Callable[[int], np.ndarray],
    rel_slots: Sequence[int],
    source: Callable[[int], np.ndarray],
    n_source: int,
    max_start: int,
    samples: int = 16,
) -> tuple[int, float, float]:
    """For a receiver that knows only relative timestamps (aiortc maps its first RTP timestamp to
    0): the source index of relative slot 0, found by comparing pictures. `received(k)` is the luma
    of received picture k whose relative slot is `rel_slots[k]`; `source(n)` the luma of source
    frame n. Returns (start, mean abs luma difference at it, at the runner-up start); ties go to
    the smallest start."""
    if not rel_slots:
        raise ValueError("no received picture")
    ks = sorted({round(i * (len(rel_slots) - 1) / max(1, samples - 1)) for i in range(min(samples, len(rel_slots)))})

    def small(a: np.ndarray) -> np.ndarray:
        h, w = a.shape[0] // 4 * 4, a.shape[1] // 4 * 4
        return a[:h, :w].reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3))

    got = {k: small(np.asarray(received(k), dtype=np.float32)) for k in ks}
    cache: dict[int, np.ndarray] = {}
    scores = []
    for start in range(0, max_start + 1):
        diffs = []
        for k in ks:
            n = start + rel_slots[k]
            if not 0 <= n < n_source:
                break
            if n not in cache:
                cache[n] = small(np.asarray(source(n), dtype=np.float32))
            diffs.append(float(np.mean(np.abs(got[k] - cache[n]))))
        else:
            scores.append((sum(diffs) / len(diffs), start))
    if not scores:
        raise ValueError("no start index keeps every received picture inside the source")
    scores.sort(key=lambda s: (round(s[0], 6), s[1]))
    runner = scores[1][0] if len(scores) > 1 else math.inf
    return scores[0][1], scores[0][0], runner


# ---------------------------------------------------------------------------------------------
# VMAF of a played-out sequence against the source (ffmpeg's libvmaf, frames by pipe).


def vmaf_sequence(
    ffmpeg: str,
    width: int,
    height: int,
    fps: float,
    dist: Callable[[int], np.ndarray],
    ref: Callable[[int], np.ndarray],
    count: int,
    log_path: str | os.PathLike,
    threads: int = 2,
    model: str = "vmaf_v0.6.1",
) -> dict:
    """VMAF (mean over frames, and every frame's score) of `count` distorted frames dist(i)
    against ref(i), both I420 of width x height. The frames go to ffmpeg through two FIFOs, so
    nothing of the sequences is written to disk."""
    log_path = Path(log_path).resolve()
    if not all(c.isalnum() or c in "._-" for c in log_path.name):
        raise ValueError(f"unsupported VMAF log file name {log_path.name!r}")
    with tempfile.TemporaryDirectory(prefix="vmafpipe_") as td:
        fifos = [os.path.join(td, "dist.yuv"), os.path.join(td, "ref.yuv")]
        for f in fifos:
            os.mkfifo(f)
        raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-r", f"{fps:g}"]
        filt = (
            "[0:v]settb=1/100,setpts=N[d];[1:v]settb=1/100,setpts=N[r];"
            f"[d][r]libvmaf=model=version={model}:log_fmt=json:n_threads={int(threads)}:log_path={log_path.name}"
        )
        cmd = [
            ffmpeg,
            "-hide_banner",
            "-nostats",
            "-loglevel",
            "error",
            "-y",
            *raw,
            "-i",
            fifos[0],
            *raw,
            "-i",
            fifos[1],
            "-lavfi",
            filt,
            "-f",
            "null",
            "-",
        ]
        proc = subprocess.Popen(cmd, cwd=log_path.parent, stderr=subprocess.PIPE)
        errors: list[BaseException] = []

        def feed(path: str, get: Callable[[int], np.ndarray]) -> None:
            try:
                with open(path, "wb") as f:
                    for i in range(count):
                        f.write(np.ascontiguousarray(get(i)).tobytes())
            except BrokenPipeError:
                pass
            except BaseException as exc:  # noqa: BLE001 - reported after ffmpeg ends
                errors.append(exc)

        writers = [
            threading.Thread(target=feed, args=(fifos[0], dist), daemon=True),
            threading.Thread(target=feed, args=(fifos[1], ref), daemon=True),
        ]
        for w in writers:
            w.start()
        _, err = proc.communicate()
        for w in writers:
            w.join(5)
    if errors:
        raise errors[0]
    if proc.returncode != 0:
        raise RuntimeError(f"libvmaf failed ({proc.returncode}): {err.decode(errors='replace')[-800:]}")
    data = json.loads(log_path.read_text())
    per_frame = [float(f["metrics"]["vmaf"]) for f in data["frames"]]
    if len(per_frame) != count:
        raise RuntimeError(f"libvmaf scored {len(per_frame)} frames of {count}")
    return {
        "vmaf": float(np.mean(per_frame)) if per_frame else math.nan,
        "frames": per_frame,
        "model": model,
        "libvmaf_version": str(data.get("version", "?")),
    }
