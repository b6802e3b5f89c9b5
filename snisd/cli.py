"""Command line: argument parsing only. Each subcommand calls into the package that does the work."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .errors import InputError, SnisError


def _add_encode(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="encode a video file (.y4m or anything PyAV reads) to SNIS")
    p.add_argument("input", help="input video: .y4m, or any file PyAV can read")
    p.add_argument("-o", "--output", required=True, help="output: .snis elementary stream or .mp4")
    p.add_argument(
        "--qp", type=int, default=28, help="quantizer of the top tier, 0..63 (default 28; +6 halves the rate roughly)"
    )
    p.add_argument(
        "--bitrate",
        type=float,
        default=None,
        metavar="KBPS",
        help="target bit rate of all tiers in kbit/s: the live sender's rate control chooses each frame's qp "
        "(instead of --qp), within --frame-budget-ms",
    )
    p.add_argument(
        "--frame-budget-ms",
        type=float,
        default=300.0,
        help="with --bitrate: no frame takes longer than this to cross a link of that rate (default 300)",
    )
    p.add_argument("--tiers", type=int, default=3, help="number of tiers: base + enhancements (default 3)")
    p.add_argument(
        "--tier-ratio",
        type=int,
        default=8,
        help="step ratio between tiers in 1/8 octaves (default 8: each tier halves the step)",
    )
    p.add_argument(
        "--key-tier-ratio",
        type=int,
        default=None,
        help="step ratio between tiers at keyframes and key pictures (default 0: the base tier carries "
        "them at full quality; see docs/CODEC.md)",
    )
    p.add_argument(
        "--keyint",
        type=int,
        default=None,
        help="frames between keyframes (default: 10 s worth; 0: only the first frame)",
    )
    p.add_argument(
        "--switch-int",
        type=int,
        default=None,
        help="frames between key pictures, where tiers may be added (default: 1 s worth; 0: keyframes only)",
    )
    p.add_argument("--frames", type=int, default=0, help="encode at most this many frames (0: all)")
    p.add_argument("--model", default=None, help="analysis model (.tflite); default: the shipped SNIS-896")
    p.add_argument("--threads", type=int, default=1, help="codec threads (the bitstream does not depend on it)")
    p.add_argument(
        "--preset",
        default="realtime",
        help="speed/compression trade-off: realtime (default, live), fast, medium (recordings); "
        "the stream syntax is the same",
    )
    p.add_argument(
        "--tune",
        action="append",
        default=[],
        metavar="NAME=INT",
        help="set one encoder-only tuning value (repeatable; names in snisd.codec.encoder.Tuning), e.g. for ablations",
    )
    p.set_defaults(func=_cmd_encode)


def _add_decode(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decode", help="decode a SNIS stream (.snis or .mp4) to .y4m")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="output .y4m")
    p.add_argument("--tiers", type=int, default=0, help="decode tiers < K only (default: all present)")
    p.add_argument("--model", default=None, help="synthesis weights (.npz) matching the encoder's model")
    p.set_defaults(func=_cmd_decode)


def _add_extract(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="keep tiers < K of a SNIS .mp4 recording (no re-encoding)")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="output .mp4")
    p.add_argument("--tiers", type=int, required=True, help="number of tiers to keep (>= 1)")
    p.set_defaults(func=_cmd_extract)


def _add_receive(sub: argparse._SubParsersAction) -> None:
    from .transport.receiver import add_receiver_arguments

    p = sub.add_parser("receive", help="WHIP endpoint: accept SNIS streams over WebRTC, record and decode them")
    add_receiver_arguments(p)
    p.set_defaults(func=_cmd_receive)


def _cmd_receive(args: argparse.Namespace) -> int:
    from .transport.receiver import run_receiver

    return run_receiver(args)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from .demo import add_demo_arguments

    p = sub.add_parser(
        "demo", help="receiver + daemon on the synthetic camera over loopback, then decode the recording"
    )
    add_demo_arguments(p)
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def _add_export(sub: argparse._SubParsersAction) -> None:
    from .export import add_export_arguments

    p = sub.add_parser("export", help="decode a SNIS recording to H.264 MP4 that any player opens")
    add_export_arguments(p)
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import run_export

    return run_export(args)


def _cmd_extract(args: argparse.Namespace) -> int:
    from .container import extract_tiers

    if args.tiers < 1:
        raise InputError(f"--tiers must be at least 1, got {args.tiers}")
    n = extract_tiers(args.input, args.output, args.tiers)
    print(json.dumps({"input": args.input, "output": args.output, "tiers": args.tiers, "frames": n}))
    return 0


def _cmd_encode(args: argparse.Namespace) -> int:
    from .files import encode_file

    report = encode_file(
        args.input,
        args.output,
        qp=args.qp,
        tiers=args.tiers,
        tier_ratio=args.tier_ratio,
        keyint=args.keyint,
        switch_int=args.switch_int,
        key_tier_ratio=args.key_tier_ratio,
        max_frames=args.frames,
        model=args.model,
        threads=args.threads,
        preset=args.preset,
        tune=args.tune,
        bitrate_kbps=args.bitrate,
        frame_budget_ms=args.frame_budget_ms,
    )
    print(report)
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from .files import decode_file

    report = decode_file(args.input, args.output, tiers=args.tiers or None, model=args.model)
    print(report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .daemon import add_daemon_arguments

    parser = argparse.ArgumentParser(
        prog="snisd",
        description="Live video for poor links with the SNIS-896 progressive codec. Without a "
        "subcommand, snisd runs the daemon (capture, encode, record/stream).",
    )
    add_daemon_arguments(parser)
    sub = parser.add_subparsers(dest="command", title="subcommands")
    _add_encode(sub)
    _add_decode(sub)
    _add_extract(sub)
    _add_export(sub)
    _add_receive(sub)
    _add_demo(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        from .daemon import run_daemon, wants_daemon

        if wants_daemon(args):
            return run_daemon(args)
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SnisError as exc:
        print(f"snisd {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
