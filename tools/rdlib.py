"""Helpers for the rate-distortion benchmark: ffmpeg invocation, Y4M reading, PSNR-Y, VMAF.

Used by tools/rd_benchmark.py; importable on its own (``from rdlib import psnr_y``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class StepFailed(RuntimeError):
    """An external command (encoder, decoder, metric) failed; message is human-readable."""


def ffmpeg_exe() -> str:
    """The ffmpeg shipped with imageio-ffmpeg (it has libvmaf, libx264, libx265, libvpx)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_cmd(*args: str) -> list[str]:
    """That ffmpeg with `args`, quiet but for errors, overwriting its outputs."""
    return [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", "-y", *args]


@dataclass
class RunResult:
    wall: float  # seconds
    cpu: float  # user + system CPU seconds of the child process (robust to machine load)
    stdout: str


def run(
    cmd: Sequence[str],
    what: str,
    timeout: float | None = None,
    cwd: str | os.PathLike | None = None,
    env: dict | None = None,
) -> RunResult:
    """Run a command to completion; raise StepFailed (with the stderr tail) if it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, cwd=cwd, env=env)
        except OSError as exc:
            raise StepFailed(f"{what}: cannot start {cmd[0]!r}: {exc}") from None
        timer = None
        timed_out = threading.Event()
        if timeout:

            def _kill() -> None:
                timed_out.set()
                proc.kill()

            timer = threading.Timer(timeout, _kill)
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            if timer:
                timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if timed_out.is_set():
        raise StepFailed(f"{what}: timed out after {timeout:.0f} s")
    if proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-6:])
        raise StepFailed(f"{what}: exit status {proc.returncode}\n    " + tail.replace("\n", "\n    "))
    return RunResult(wall, usage.ru_utime + usage.ru_stime, stdout)


# ----------------------------------------------------------------------------- Y4M


@dataclass
class Y4MInfo:
    width: int
    height: int
    fps: float
    fps_ratio: tuple[int, int]
    chroma: str
    header_len: int

    @property
    def frame_bytes(self) -> int:
        cw, ch = (self.width + 1) // 2, (self.height + 1) // 2
        return self.width * self.height + 2 * cw * ch


def y4m_info(path: str | os.PathLike) -> Y4MInfo:
    with open(path, "rb") as f:
        line = f.readline(4096)
    if not line.startswith(b"YUV4MPEG2"):
        raise StepFailed(f"{path}: not a YUV4MPEG2 file")
    w = h = 0
    fr = (0, 1)
    chroma = "420jpeg"
    for tok in line.decode("ascii", "replace").split()[1:]:
        if tok[0] == "W":
            w = int(tok[1:])
        elif tok[0] == "H":
            h = int(tok[1:])
        elif tok[0] == "F":
            n, d = tok[1:].split(":")
            fr = (int(n), int(d))
        elif tok[0] == "C":
            chroma = tok[1:]
    if not chroma.startswith("420"):
        raise StepFailed(f"{path}: chroma format {chroma} is not 4:2:0 (need I420)")
    fps = fr[0] / fr[1] if fr[1] else 0.0
    return Y4MInfo(w, h, fps, fr, chroma, len(line))


def y4m_luma_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield the Y plane of every frame (uint8, H x W) of an 8-bit 4:2:0 Y4M file."""
    info = y4m_info(path)
    fb = info.frame_bytes
    ysize = info.width * info.height
    with open(path, "rb") as f:
        f.seek(info.header_len)
        while True:
            tag = f.readline(1024)
            if not tag:
                return
            if not tag.startswith(b"FRAME"):
                raise StepFailed(f"{path}: corrupt frame header {tag[:16]!r}")
            buf = f.read(fb)
            if len(buf) < fb:
                return  # truncated last frame: ignore
            yield np.frombuffer(buf, dtype=np.uint8, count=ysize).reshape(info.height, info.width)


def y4m_frame_count(path: str | os.PathLike) -> int:
    info = y4m_info(path)
    size = os.path.getsize(path) - info.header_len
    # frame headers are normally exactly "FRAME\n"; fall back to scanning otherwise
    if size % (info.frame_bytes + 6) == 0:
        return size // (info.frame_bytes + 6)
    return sum(1 for _ in y4m_luma_frames(path))


def psnr_y(ref: str | os.PathLike, dist: str | os.PathLike, max_frames: int = 0) -> tuple[float, int]:
    """Mean over frames of the per-frame luma PSNR, 10*log10(255^2 / MSE_Y), in dB.

    A frame with MSE 0 counts as 100 dB.  Frames are compared in order; the count
    compared is the smaller of the two files' (the caller checks that they agree).
    Returns (psnr, frames compared).
    """
    ri, di = y4m_info(ref), y4m_info(dist)
    if (ri.width, ri.height) != (di.width, di.height):
        raise StepFailed(f"size mismatch: reference {ri.width}x{ri.height}, decoded {di.width}x{di.height}")
    total = 0.0
    n = 0
    for a, b in zip(y4m_luma_frames(ref), y4m_luma_frames(dist), strict=False):
        diff = a.astype(np.int32) - b.astype(np.int32)
        mse = float(np.mean(diff * diff))
        total += 100.0 if mse == 0 else min(100.0, 10.0 * math.log10(255.0 * 255.0 / mse))
        n += 1
        if max_frames and n >= max_frames:
            break
    if n == 0:
        raise StepFailed(f"no frames to compare in {dist}")
    return total / n, n


VMAF_MODEL = "vmaf_v0.6.1"


def vmaf(
    ref: str | os.PathLike,
    dist: str | os.PathLike,
    log_path: str | os.PathLike,
    threads: int = 2,
    model: str = VMAF_MODEL,
) -> dict:
    """VMAF of dist against ref via ffmpeg's libvmaf filter.

    Returns {"vmaf": mean over frames, "vmaf_hmean": harmonic mean, "frames": n,
    "libvmaf_version": str, "model": model}.
    """
    log_path = Path(log_path).resolve()
    # libvmaf's first input is the distorted video, the second the reference.  The log is
    # written from the log's directory under a plain name so no filtergraph escaping is needed.
    if not all(c.isalnum() or c in "._-" for c in log_path.name):
        raise StepFailed(f"VMAF: unsupported log file name {log_path.name!r}")
    # Frames are paired by index: both inputs get timestamps 0, 1, 2, ... in the same time base,
    # so a decoder that writes a different frame rate into its Y4M header cannot shift the pairing.
    filt = (
        "[0:v]settb=1/100,setpts=N[dist];[1:v]settb=1/100,setpts=N[ref];"
        f"[dist][ref]libvmaf=model=version={model}:log_fmt=json:n_threads={int(threads)}"
        f":log_path={log_path.name}"
    )
    cmd = ffmpeg_cmd("-i", str(Path(dist).resolve()), "-i", str(Path(ref).resolve()), "-lavfi", filt, "-f", "null", "-")
    run(cmd, "VMAF", cwd=log_path.parent)
    try:
        data = json.loads(log_path.read_text())
        pooled = data["pooled_metrics"]["vmaf"]
    except (OSError, ValueError, KeyError) as exc:
        raise StepFailed(f"VMAF: cannot read libvmaf log {log_path.name}: {exc}") from None
    return {
        "vmaf": float(pooled["mean"]),
        "vmaf_hmean": float(pooled.get("harmonic_mean", math.nan)),
        "frames": len(data.get("frames", [])),
        "libvmaf_version": str(data.get("version", "?")),
        "model": model,
    }


def make_reference(src: str | os.PathLike, dst: str | os.PathLike, frames: int = 0) -> Y4MInfo:
    """Decode `src` once to an 8-bit I420 Y4M reference (optionally only the first `frames`)."""
    cmd = ffmpeg_cmd("-i", str(src), "-map", "0:v:0", "-an")
    if frames:
        cmd += ["-frames:v", str(frames)]
    cmd += ["-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", str(dst)]
    run(cmd, f"reference decode of {Path(src).name}")
    return y4m_info(dst)


def file_size(path: str | os.PathLike) -> int:
    return os.path.getsize(path)


def ivf_payload_bytes(path: str | os.PathLike) -> tuple[int, int]:
    """(payload bytes, frames) of an IVF file: file size minus the 32-byte file header
    and the 12-byte header of every frame."""
    with open(path, "rb") as f:
        head = f.read(32)
        if head[:4] != b"DKIF":
            raise StepFailed(f"{path}: not an IVF file")
        hdr_len = int.from_bytes(head[6:8], "little") or 32
        f.seek(hdr_len)
        payload = 0
        frames = 0
        while True:
            fh = f.read(12)
            if len(fh) < 12:
                break
            n = int.from_bytes(fh[:4], "little")
            f.seek(n, os.SEEK_CUR)
            payload += n
            frames += 1
    return payload, frames
