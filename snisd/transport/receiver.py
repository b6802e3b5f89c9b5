"""`snisd receive`: the command line and the serving loop of the receiver.

It builds the endpoint (endpoint.py) from the command line and an optional config file
(receiver_config.py), warms the codec up (warmup.py), and serves HTTP or HTTPS until SIGTERM or
SIGINT. Secure by default: with no token configured it listens on loopback only, and serving
without a token on another address needs ``--allow-open``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import ssl
import sys

from ..errors import ConfigError
from ..hostport import parse_host_port
from .auth import Access
from .endpoint import Receiver
from .errors import TransportError
from .ice import apply_environment, restrict_host_addresses
from .receiver_config import ReceiverConfig, load_receiver_config
from .recording import RecordingLimits
from .stream import StreamSettings
from .warmup import warm_up_codec

log = logging.getLogger("snisd.transport.receiver")

OPEN_LISTEN = "127.0.0.1:8080"  # default without a token
TOKEN_LISTEN = "0.0.0.0:8080"  # default with tokens


def add_receiver_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="receiver config (YAML): per-publisher and per-viewer tokens, forwarding, limits, TLS; "
        "command-line options override it",
    )
    parser.add_argument(
        "--listen",
        default=None,
        metavar="HOST:PORT",
        help=f"address of the WHIP endpoint; publishers POST to http(s)://HOST:PORT/whip "
        f"(default {TOKEN_LISTEN} with a token, {OPEN_LISTEN} without)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="require 'Authorization: Bearer TOKEN' for publishing and viewing (default: the "
        "config's tokens, else none: loopback only)",
    )
    parser.add_argument(
        "--allow-open",
        action="store_true",
        help="serve without any token on a non-loopback address (anyone who reaches it may "
        "publish, watch and fill the disk)",
    )
    parser.add_argument("--tls-cert", default=None, metavar="PEM", help="serve HTTPS with this certificate (chain)")
    parser.add_argument("--tls-key", default=None, metavar="PEM", help="private key of --tls-cert")
    parser.add_argument(
        "--record-dir",
        default=None,
        metavar="DIR",
        help="record every stream to DIR/<session id>.mp4 (default: do not record)",
    )
    parser.add_argument(
        "--max-recording-mb",
        type=float,
        default=None,
        help="stop recording a stream past this size, keep streaming (default: no limit)",
    )
    parser.add_argument(
        "--min-free-mb",
        type=float,
        default=None,
        help="stop recording when the disk has less free space than this, keep streaming (default: no floor)",
    )
    parser.add_argument("--no-decode", dest="decode", action="store_false", help="only record, do not decode")
    parser.add_argument("--model", default=None, help="synthesis weights (.npz) matching the sender's model")
    parser.add_argument(
        "--ice-server",
        dest="ice_servers",
        action="append",
        default=[],
        metavar="URL",
        help="STUN/TURN server URL (repeatable; default: none, host candidates only)",
    )
    parser.add_argument(
        "--ice-address",
        dest="ice_addresses",
        action="append",
        default=[],
        metavar="ADDR",
        help="offer only this local address as an ICE host candidate (repeatable; "
        "127.0.0.1 is allowed; default: every interface but loopback)",
    )
    parser.add_argument(
        "--hold-ms", type=float, default=60.0, help="how long a frame waits for its enhancement tiers (default 60)"
    )
    parser.add_argument(
        "--frame-log",
        default=None,
        metavar="FILE",
        help="append one JSON line per decoded frame (frame number, tiers, hash, times); "
        "with --no-decode, per received frame",
    )
    parser.add_argument("--stats-interval", type=float, default=5.0, help="seconds between stats log lines")
    parser.add_argument("--max-streams", type=int, default=None, help="concurrent publishers (default 16)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build(args: argparse.Namespace) -> tuple[Receiver, str, int, ssl.SSLContext | None]:
    """The endpoint, address and TLS context from the arguments (and --config). Raises
    TransportError or ConfigError naming what is wrong, before anything listens."""
    cfg = load_receiver_config(args.config) if getattr(args, "config", None) else ReceiverConfig()
    access = Access.single_token(args.token) if args.token else cfg.access()
    listen = args.listen or cfg.listen or (OPEN_LISTEN if access.open else TOKEN_LISTEN)
    try:
        host, port = parse_host_port(listen)
    except ValueError as exc:
        raise TransportError(f"--listen: {exc}") from None
    if access.open and not is_loopback(host) and not (args.allow_open or cfg.allow_open):
        raise TransportError(
            f"refusing to serve on {host}:{port} without a token: anyone reaching it could "
            f"publish, watch and fill the disk. Give --token or a --config with tokens, "
            f"listen on 127.0.0.1, or pass --allow-open"
        )
    cert, key = args.tls_cert or cfg.tls_cert, args.tls_key or cfg.tls_key
    tls = None
    if cert or key:
        if not (cert and key):
            raise TransportError("TLS needs both --tls-cert and --tls-key")
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"cannot load the TLS certificate {cert!r} / key {key!r}: {exc}") from None
    limits = RecordingLimits(
        int(args.max_recording_mb * 1e6) if args.max_recording_mb is not None else cfg.max_recording_bytes,
        int(args.min_free_mb * 1e6) if args.min_free_mb is not None else cfg.min_free_bytes,
    )
    settings = StreamSettings(
        record_dir=args.record_dir or cfg.record_dir,
        decode=args.decode,
        model=args.model,
        hold_ms=args.hold_ms,
        limits=limits,
        max_frame_bytes=cfg.max_frame_bytes,
    )
    rx = Receiver(
        access=access,
        settings=settings,
        ice_servers=args.ice_servers,
        frame_log=args.frame_log,
        stats_interval=args.stats_interval,
        max_streams=args.max_streams if args.max_streams is not None else cfg.max_streams,
        cors_origins=cfg.cors_origins,
        forwards=cfg.forwards,
    )
    return rx, host, port, tls


async def serve(args: argparse.Namespace, stop: asyncio.Event | None = None) -> int:
    from aiohttp import web

    rx, host, port, tls = build(args)
    if args.ice_addresses:
        restrict_host_addresses(args.ice_addresses)
    else:
        apply_environment()
    if args.decode:
        took = await asyncio.get_running_loop().run_in_executor(None, warm_up_codec, args.model)
        log.info("decoder ready (warm-up %.1f s)", took)
    runner = web.AppRunner(rx.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise TransportError(f"cannot listen on {host}:{port}: {exc}") from None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    stats = asyncio.ensure_future(rx.stats_loop())
    if rx.access.open:
        log.warning("no token configured: anyone who reaches %s:%d may publish and watch", host, port)
    print(f"snisd receive: WHIP endpoint at {'https' if tls else 'http'}://{host}:{port}/whip", flush=True)
    try:
        await stop.wait()
    finally:
        stats.cancel()
        await runner.cleanup()  # ends every stream (on_shutdown)
        rx.close()
    return 0


def run_receiver(args: argparse.Namespace) -> int:
    """Entry point of `snisd receive` (arguments from add_receiver_arguments)."""
    level = getattr(args, "log_level", "info") or "info"
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=getattr(logging, level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        return asyncio.run(serve(args))
    except (TransportError, ConfigError) as exc:
        print(f"snisd receive: error: {exc}", file=sys.stderr)
        return 1
