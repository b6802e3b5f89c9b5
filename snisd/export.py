"""`snisd export`: decode a SNIS recording and write it as H.264 in an ordinary MP4.

The output is what any player opens: libx264 (PyAV), yuv420p, the recording's frame rate, and
timestamps taken from the recording (a live recording with dropped frames keeps its gaps), with
the index (`moov`) at the front of the file (`+faststart`). A crash-cut recording exports every
frame of its complete fragments and says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

from .errors import BitstreamError, ContainerError, InputError


@dataclass
class ExportReport:
    input: str
    output: str
    width: int = 0
    height: int = 0
    fps: float = 0.0
    frames: int = 0
    tiers: int = 0
    truncated: bool = False
    errors: list = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        return json.dumps(asdict(self))


def _frame_ticks(pts_us: int, first_us: int, rate: Fraction) -> int:
    """Recording timestamp (µs) in frame periods from the first frame."""
    return round((pts_us - first_us) * rate / 1_000_000)


def export_file(
    src: str, dst: str, *, tiers: int | None = None, model: str | None = None, crf: int = 20, preset: str = "veryfast"
) -> ExportReport:
    """Decode `src` (a SNIS .mp4 recording or .snis stream) and encode it to H.264 MP4 `dst`."""
    import av
    import numpy as np

    from .codec.decoder import Decoder
    from .codec.encoder import synthesis_path_for

    if not Path(src).exists():
        raise InputError("no such file", src)
    if Path(src).resolve() == Path(dst).resolve():
        raise InputError("output would overwrite the input", dst)
    reader = None
    full_range = False
    if str(src).lower().endswith((".mp4", ".m4v", ".m4s")):
        from .container import open_fmp4

        reader = open_fmp4(src)
        if reader.sequence_header is None:
            raise ContainerError(f"{src}: no complete SNIS init segment (file cut before its first fragment?)")
        seq = reader.sequence_header
        full_range = bool(getattr(reader.init, "full_range", False))
        frames = iter(reader)
    else:
        from .files import read_stream

        seq, frames = read_stream(src)
    rate = Fraction(seq.fps_num, seq.fps_den)
    dec = Decoder(seq, synthesis_path_for(model))
    report = ExportReport(src, dst, seq.width, seq.height, round(float(rate), 3))
    t0 = time.perf_counter()
    try:
        out = av.open(dst, "w", format="mp4", options={"movflags": "+faststart"})
    except (OSError, av.FFmpegError) as exc:
        raise InputError(f"cannot write: {exc}", dst) from None
    try:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = seq.width, seq.height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / rate
        stream.options = {"crf": str(crf), "preset": preset}
        if full_range:
            try:
                stream.codec_context.color_range = 2  # AVCOL_RANGE_JPEG
            except (AttributeError, TypeError, ValueError):
                pass
        vf = av.VideoFrame(seq.width, seq.height, "yuv420p")
        first_us: int | None = None
        last_pts = -1
        last = None

        def put(picture, pts: int) -> None:
            nonlocal last_pts
            for plane, arr in zip(vf.planes, (picture.y, picture.u, picture.v), strict=True):
                h, w = arr.shape
                view = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)  # type: ignore[call-overload]  # PyAV planes are buffers
                view[:h, :w] = arr
            pts = max(pts, last_pts + 1)
            vf.pts = pts
            vf.time_base = stream.codec_context.time_base
            for pkt in stream.encode(vf):
                out.mux(pkt)
            last_pts = pts

        try:
            for ef in frames:
                if first_us is None:
                    first_us = ef.pts_us
                try:
                    last = dec.decode(ef, tiers)
                except BitstreamError as exc:
                    report.errors.append(f"frame {ef.index}: {exc}")
                    if last is None:
                        continue  # nothing to show until the first decodable frame
                put(last, _frame_ticks(ef.pts_us, first_us, rate))
                report.frames += 1
                report.tiers = max(report.tiers, dec.last_tiers)
        except (BitstreamError, ContainerError) as exc:
            report.errors.append(f"stream ends early after {report.frames} frames: {exc}")
            report.truncated = True
        for pkt in stream.encode(None):
            out.mux(pkt)
    finally:
        out.close()
    if reader is not None and reader.truncated:
        report.truncated = True
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


# ---------------------------------------------------------------------------------------------
# Command line.


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="SNIS recording (.mp4) or elementary stream (.snis)")
    parser.add_argument("-o", "--output", required=True, help="output H.264 .mp4")
    parser.add_argument("--tiers", type=int, default=0, help="decode tiers < K only (default: all present)")
    parser.add_argument("--crf", type=int, default=20, help="x264 quality, lower is better (default 20)")
    parser.add_argument("--preset", default="veryfast", help="x264 preset (default veryfast)")
    parser.add_argument("--model", default=None, help="synthesis weights (.npz) matching the encoder's model")


def run_export(args: argparse.Namespace) -> int:
    """Entry point of `snisd export` (arguments from add_export_arguments); prints a JSON report."""
    if args.tiers < 0:
        raise InputError(f"--tiers must be at least 1 (or 0 for all), got {args.tiers}")
    report = export_file(
        args.input, args.output, tiers=args.tiers or None, model=args.model, crf=args.crf, preset=args.preset
    )
    if report.truncated:
        print(
            f"snisd export: {args.input} is cut short (crash-cut recording?): exported the {report.frames} "
            "frames of its complete fragments",
            file=sys.stderr,
        )
    if report.frames == 0:
        print(f"snisd export: error: no decodable frame in {args.input}", file=sys.stderr)
        print(report)
        return 1
    print(report)
    return 0
