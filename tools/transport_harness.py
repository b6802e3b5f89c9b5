"""Transport harness for tests and benchmarks, without the daemon:

    python tools/transport_harness.py send --peer http://127.0.0.1:8080/whip --size 320x240 --fps 10 --frames 100

(the other end is `snisd receive`, i.e. `python -m snisd receive`).

`send` runs the real pipeline (paced synthetic camera -> encoder -> WhipSender) and can write one
JSON line per encoded frame with the capture time and the hash of the encoder's own
reconstruction for every tier count (--frame-log), to compare with the receiver's --frame-log.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time

from snisd.transport.framelog import frame_hash


class _TimedSource:
    """Wraps a frame source and remembers the wall-clock capture time of each frame (by pts)."""

    def __init__(self, source) -> None:
        self.source = source
        self.name, self.width, self.height, self.fps = source.name, source.width, source.height, source.fps
        self.captured: dict[int, float] = {}
        self._mono: dict[int, float] = {}

    @property
    def dropped(self) -> int:
        return getattr(self.source, "dropped", 0)

    def read(self, timeout: float = 2.0):
        f = self.source.read(timeout)
        self.captured[f.pts_us] = time.time()
        self._mono[f.pts_us] = time.monotonic()
        while len(self._mono) > 256:
            self._mono.pop(next(iter(self._mono)))
        return f

    def capture_ms(self, pts_us: int, clock) -> float | None:
        """The capture time of frame `pts_us` on the sender's `clock` (ms)."""
        t = self._mono.get(pts_us)
        if t is None:
            return None
        return clock() - (time.monotonic() - t) * 1000.0

    def close(self) -> None:
        self.source.close()


class _LoggingEncoder:
    """Wraps an Encoder: after each frame, hashes its reconstruction for 1..K tiers."""

    def __init__(self, encoder, source: _TimedSource, path: str | None) -> None:
        self.encoder = encoder
        self.sequence_header = encoder.sequence_header
        self.source = source
        self._f = open(path, "w", buffering=1) if path else None
        self._lock = threading.Lock()

    def encode(self, frame, force_keyframe: bool = False):
        ef = self.encoder.encode(frame, force_keyframe=force_keyframe)
        if self._f is not None:
            k = self.sequence_header.tiers
            hashes = [frame_hash(self.encoder.reconstruction(t)) for t in range(1, k + 1)]
            rec = {
                "index": ef.index,
                "frame_no": ef.index & 0xFFFF,
                "keyframe": ef.keyframe,
                "key_picture": ef.keyframe or ef.switch_point,
                "t_capture": self.source.captured.pop(frame.pts_us, None),
                "t_encoded": time.time(),
                "sizes": [len(c) for c in ef.tiers],
                "hashes": hashes,
            }
            self._f.write(json.dumps(rec) + "\n")
        return ef

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def _offset_clock(offset_ms: float):
    """The sender's clock: monotonic ms, shifted by `offset_ms` (tests give it a foreign clock)."""

    def clock() -> float:
        return time.monotonic() * 1000.0 + offset_ms

    return clock


def _cmd_send(args: argparse.Namespace) -> int:
    from snisd.capture.synthetic import SyntheticSource
    from snisd.codec.encoder import Encoder, EncoderConfig
    from snisd.codec.presets import tuning_for
    from snisd.pipeline import Pipeline
    from snisd.transport.ice import restrict_host_addresses
    from snisd.transport.sender import WhipSender
    from snisd.transport.warmup import warm_up_codec

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.ice_addresses:
        restrict_host_addresses(args.ice_addresses)
    w, h = (int(v) for v in args.size.lower().split("x"))
    source = _TimedSource(SyntheticSource(w, h, args.fps, seed=args.seed, paced=True))
    fps_num, fps_den = (int(round(args.fps * 1000)), 1000)
    enc = Encoder(
        EncoderConfig(
            w,
            h,
            fps_num,
            fps_den,
            tiers=args.tiers,
            qp=args.qp,
            keyframe_interval=args.keyint,
            model=args.model,
            tuning=tuning_for(live=True),
        )
    )  # the daemon's with a peer
    # compile the codec kernels before the camera starts (numba's cache may be cold or stale)
    warm_up_codec(
        args.model, tiers=args.tiers, qp=args.qp, decode=False, analysis=enc.analysis, synthesis=enc.synthesis
    )
    encoder = _LoggingEncoder(enc, source, args.frame_log)
    clock = _offset_clock(args.clock_offset_ms)
    sender = WhipSender(
        args.peer,
        enc.sequence_header,
        token=args.token,
        ice_servers=args.ice_servers,
        stream_name="synthetic",
        ca_file=args.ca_file,
        clock=clock,
        capture_ms=lambda pts: source.capture_ms(pts, clock),
    ).start()
    pipe = Pipeline(source, encoder, [sender], queue_size=2, max_frames=args.frames)
    sender.request_keyframe = pipe.request_keyframe
    # wait for the session before the camera starts, so the run measures streaming, not connecting
    deadline = time.monotonic() + args.connect_wait
    while sender.state != "connected" and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    pipe.start()
    try:
        while not pipe.done.wait(0.5):
            if args.duration and time.monotonic() - t0 > args.duration:
                pipe.stop()
    except KeyboardInterrupt:
        pipe.stop()
    pipe.join(10.0)
    encoder.close()
    out = {
        "sender": sender.stats(),
        "encode_p50_ms": pipe.encode.percentiles()[0],
        "frames_encoded": pipe.encode.frames_out,
        "errors": pipe.errors,
        "seconds": round(time.monotonic() - t0, 2),
    }
    print(json.dumps(out), flush=True)
    return 0 if not pipe.errors else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/transport_harness.py")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("send", help="stream the synthetic camera to a WHIP endpoint")
    s.add_argument("--peer", required=True)
    s.add_argument("--token", default=None)
    s.add_argument("--ca-file", default=None, help="CA certificates for an https:// peer")
    s.add_argument(
        "--clock-offset-ms",
        type=float,
        default=0.0,
        help="shift the sender's clock by this much (tests of the receiver's clock sync)",
    )
    s.add_argument("--size", default="320x240")
    s.add_argument("--fps", type=float, default=10.0)
    s.add_argument("--frames", type=int, default=0, help="stop after N captured frames (0: --duration)")
    s.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0: --frames)")
    s.add_argument("--tiers", type=int, default=3)
    s.add_argument("--qp", type=int, default=28)
    s.add_argument("--keyint", type=int, default=0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--model", default=None)
    s.add_argument("--frame-log", default=None)
    s.add_argument("--connect-wait", type=float, default=15.0)
    s.add_argument("--ice-server", dest="ice_servers", action="append", default=[])
    s.add_argument("--ice-address", dest="ice_addresses", action="append", default=[])
    s.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    s.set_defaults(func=_cmd_send)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
