"""Offline jobs on files: encode a video to SNIS (.snis elementary stream or .mp4), decode to .y4m.

This is the file-shaped version of the live chain: capture/file.py reads, the codec encodes, the
container (or the elementary-stream format of codec/bitstream.py) stores. The decoder side mirrors it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

from .capture.file import iter_frames, probe
from .codec.bitstream import EncodedFrame, SequenceHeader, read_es, write_es_frame, write_es_header
from .codec.decoder import Decoder
from .codec.encoder import Encoder, EncoderConfig, synthesis_path_for
from .codec.presets import DEFAULT_PRESET, tuning_for
from .codec.ratecontrol import RateControlledEncoder, RatePolicy
from .errors import BitstreamError, ContainerError, InputError
from .y4m import Y4mWriter


@dataclass
class EncodeReport:
    """What `snisd encode` did; printed as one JSON line."""

    input: str
    output: str
    width: int
    height: int
    fps: float
    frames: int
    tiers: int
    qp: int | None  # the fixed qp; None when a target bit rate chose each frame's
    bytes_per_tier: list = field(default_factory=list)
    kbps_per_tier: list = field(default_factory=list)
    keyframes: int = 0
    seconds: float = 0.0
    ms_per_frame: float = 0.0
    target_kbps: float | None = None  # with a target bit rate: it, and the mean qp its frames got
    mean_qp: float | None = None

    def __str__(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class DecodeReport:
    input: str
    output: str
    frames: int
    tiers: int
    errors: list = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        return json.dumps(asdict(self))


def _is_mp4(path: str | Path) -> bool:
    return str(path).lower().endswith((".mp4", ".m4v", ".m4s"))


def encode_file(
    src: str,
    dst: str,
    *,
    qp: int = 28,
    tiers: int = 3,
    tier_ratio: int = 8,
    keyint: int | None = None,
    switch_int: int | None = None,
    key_tier_ratio: int | None = None,
    max_frames: int = 0,
    model: str | None = None,
    threads: int = 1,
    preset: str = DEFAULT_PRESET,
    tune: Sequence[str] = (),
    bitrate_kbps: float | None = None,
    frame_budget_ms: float = 300.0,
) -> EncodeReport:
    """Encode a video file; writes .mp4 when `dst` ends in .mp4, else a SNIS elementary stream.

    With `bitrate_kbps` the live sender's rate controller (codec/ratecontrol.py) chooses each frame's
    qp for that constant target, within its frame budget, instead of the fixed `qp`; unlike the live
    sender's tuning (`presets.LIVE`), a file's plans keyframes and key pictures finer by its key offsets.
    """
    policy = None
    if bitrate_kbps is not None:
        if not (bitrate_kbps > 0 and math.isfinite(bitrate_kbps)):
            raise InputError(f"target bit rate {bitrate_kbps!r} kbit/s must be a positive number")
        policy = RatePolicy(budget_ms=frame_budget_ms)  # checked before the input is opened
    width, height, fps = probe(src)
    fps = Fraction(fps).limit_denominator(1001)
    cfg = EncoderConfig(
        width,
        height,
        fps.numerator,
        fps.denominator,
        tiers=tiers,
        qp=qp,
        tier_ratio=tier_ratio,
        keyframe_interval=keyint,
        switch_interval=switch_int,
        key_tier_ratio=key_tier_ratio,
        model=model,
        threads=threads,
        tuning=tuning_for(preset, tune),
    )
    enc = Encoder(cfg)
    rc = None if bitrate_kbps is None else RateControlledEncoder(enc, 1e3 * bitrate_kbps, policy)
    report = EncodeReport(src, dst, width, height, float(fps), 0, tiers, qp if rc is None else None, [0] * tiers)
    qps: list[int] = []
    t0 = time.perf_counter()
    with _open_sink(dst, enc.sequence_header) as sink:
        for frame in iter_frames(src, max_frames):
            if rc is None:
                ef = enc.encode(frame)
            else:
                ef = rc.encode(frame)
                qps.append(rc.control.last_qp or 0)
            sink(ef)
            report.frames += 1
            report.keyframes += ef.keyframe
            for k, chunk in enumerate(ef.tiers):
                report.bytes_per_tier[k] += len(chunk)
    report.seconds = round(time.perf_counter() - t0, 3)
    report.ms_per_frame = round(1000 * sum(enc.times.per_frame) / max(len(enc.times.per_frame), 1), 2)
    duration = report.frames / float(fps)
    cum = 0
    for b in report.bytes_per_tier:
        cum += b
        report.kbps_per_tier.append(round(cum * 8 / duration / 1000, 2))
    if rc is not None:
        report.target_kbps = bitrate_kbps
        report.mean_qp = round(sum(qps) / max(len(qps), 1), 2)
    return report


class _open_sink:
    """Context manager giving a callable that stores one EncodedFrame (MP4 or elementary stream)."""

    def __init__(self, dst: str, seq: SequenceHeader) -> None:
        self.dst, self.seq = dst, seq

    def __enter__(self):
        if _is_mp4(self.dst):
            from .container import Fmp4Writer

            self._writer = Fmp4Writer(self.dst, self.seq)
            return self._writer.write
        try:
            self._f = open(self.dst, "wb")
        except OSError as exc:
            raise InputError(f"cannot write: {exc.strerror}", self.dst) from None
        write_es_header(self._f, self.seq)
        return lambda ef: write_es_frame(self._f, ef)

    def __exit__(self, *exc) -> None:
        if _is_mp4(self.dst):
            self._writer.close()
        else:
            self._f.close()


def read_stream(path: str) -> tuple[SequenceHeader, Iterator[EncodedFrame]]:
    """Sequence header and frames of a .snis or .mp4 file (frames lazily)."""
    if not Path(path).exists():
        raise InputError("no such file", path)
    if _is_mp4(path):
        from .container import open_fmp4

        reader = open_fmp4(path)
        if reader.sequence_header is None:
            raise ContainerError(f"{path}: no complete SNIS init segment (file cut before its first fragment?)")

        def frames() -> Iterator[EncodedFrame]:
            yield from reader
            if reader.truncated:
                raise ContainerError(
                    f"{path}: recording ends in an incomplete fragment (crash-cut); "
                    "every complete frame before it was read"
                )

        return reader.sequence_header, frames()
    f = open(path, "rb")
    return read_es(f)


def decode_file(src: str, dst: str, *, tiers: int | None = None, model: str | None = None) -> DecodeReport:
    """Decode every frame (tiers < `tiers`) to .y4m. A corrupt frame is reported and repeated
    from the last good picture so the output keeps its frame count; frames already decoded stay."""
    seq, frames = read_stream(src)
    dec = Decoder(seq, synthesis_path_for(model))
    report = DecodeReport(src, dst, 0, 0)
    t0 = time.perf_counter()
    with open(dst, "wb") as out:
        writer = Y4mWriter(out, seq.width, seq.height, Fraction(seq.fps_num, seq.fps_den))
        last = None
        try:
            for ef in frames:
                try:
                    last = dec.decode(ef, tiers)
                except BitstreamError as exc:
                    report.errors.append(f"frame {ef.index}: {exc}")
                    if last is None:
                        continue
                writer.write(last)
                report.frames += 1
                report.tiers = max(report.tiers, dec.last_tiers)
        except (BitstreamError, ContainerError) as exc:
            report.errors.append(f"stream ends early after {report.frames} frames: {exc}")
    report.seconds = round(time.perf_counter() - t0, 3)
    return report
