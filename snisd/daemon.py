"""The daemon: camera -> SNIS encoder -> recording (and, later, WebRTC), supervised by systemd.

``snisd --camera 0 --record live.mp4 --peer http://host:8080/whip`` runs until SIGTERM/SIGINT. Startup order:
configuration (file, then flags; any error stops here), camera, encoder, sinks, pipeline threads;
``READY=1`` goes to systemd once the first frame is encoded. While running it logs a status line and
sends ``STATUS=`` every ``pipeline.status_interval_s``, pings the watchdog while frames flow and
serves metrics when enabled. SIGHUP re-reads the configuration file: log level and metrics change
in place; camera, codec or recording changes rebuild the pipeline. SIGTERM finishes the frames in
flight, closes the recording and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from .config import DEFAULT_PATH, LOG_LEVELS, Config, load_config
from .errors import SnisError
from .systemd import Notifier, Watchdog, watchdog_interval

if TYPE_CHECKING:
    from .metrics import MetricsServer
    from .pipeline import Pipeline

log = logging.getLogger("snisd")

STOP_BUDGET_S = 1.5  # SIGTERM -> exit; systemd's TimeoutStopSec is much longer, tests ask for 2 s
READY_TIMEOUT_S = 60.0  # first frame (model load)
PEER_UNAVAILABLE = (
    "the WebRTC transport (--peer / transport.peer) is not available in this "
    "installation (pip install aiortc aiohttp); nothing is streamed. Use --record PATH "
    "to keep the video."
)


def add_daemon_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the daemon-mode options to the top-level parser (all default to None = 'from config')."""
    g = parser.add_argument_group(
        "daemon mode (no subcommand)",
        f"Capture, encode and record/stream until stopped. Settings come from the YAML file "
        f"({DEFAULT_PATH} if it exists, or --config), every key documented in config.yaml; these "
        f"flags override it. SIGHUP reloads the file, SIGTERM stops cleanly.",
    )
    g.add_argument(
        "--camera",
        dest="daemon_camera",
        metavar="SPEC",
        help="camera: N (Pi camera N if present, else /dev/videoN), picamera:N, /dev/videoN, "
        "file:PATH (looped) or synthetic (config: camera.source, default 0)",
    )
    g.add_argument(
        "--peer",
        dest="daemon_peer",
        metavar="URL",
        help="stream over WebRTC to this WHIP endpoint, e.g. http://host:8080/whip "
        "(config: transport.peer; needs aiortc and aiohttp)",
    )
    g.add_argument(
        "--token",
        dest="daemon_token",
        metavar="TOKEN",
        help="bearer token for the WHIP endpoint (config: transport.token)",
    )
    g.add_argument(
        "--ca-file",
        dest="daemon_ca_file",
        metavar="PEM",
        help="CA certificates that sign an https:// WHIP endpoint's certificate, when not a public CA "
        "(config: transport.ca_file)",
    )
    g.add_argument(
        "--config",
        dest="daemon_config",
        metavar="PATH",
        help=f"YAML configuration file (default: {DEFAULT_PATH} if it exists)",
    )
    g.add_argument(
        "--record",
        dest="daemon_record",
        metavar="PATH",
        help="record to this fragmented MP4 (config: record.path); continued if it holds the same stream",
    )
    g.add_argument(
        "--width", dest="daemon_width", type=int, metavar="W", help="picture width (config: camera.width, default 1280)"
    )
    g.add_argument(
        "--height",
        dest="daemon_height",
        type=int,
        metavar="H",
        help="picture height (config: camera.height, default 720)",
    )
    g.add_argument(
        "--fps", dest="daemon_fps", type=float, metavar="FPS", help="frame rate (config: camera.fps, default 30)"
    )
    g.add_argument(
        "--qp",
        dest="daemon_qp",
        type=int,
        metavar="QP",
        help="quantizer of the top tier 0..63 (config: codec.qp, default 28)",
    )
    g.add_argument(
        "--tiers",
        dest="daemon_tiers",
        type=int,
        metavar="K",
        help="number of tiers 1..8 (config: codec.tiers, default 3)",
    )
    g.add_argument(
        "--metrics",
        dest="daemon_metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (config: metrics.*; off by default)",
    )
    g.add_argument(
        "--log-level", dest="daemon_log_level", choices=LOG_LEVELS, help="log level (config: log_level, default info)"
    )
    g.add_argument(
        "--max-frames",
        dest="daemon_max_frames",
        type=int,
        default=0,
        metavar="N",
        help="stop after N frames (testing and benchmarks; default 0: run until stopped)",
    )
    g.add_argument(
        "--check-config",
        dest="daemon_check_config",
        action="store_true",
        help="validate the configuration, print the effective settings and exit",
    )


def wants_daemon(args: argparse.Namespace) -> bool:
    """True when any daemon-mode option was given (the CLI runs the daemon then)."""
    return any(getattr(args, k) not in (None, False, 0) for k in vars(args) if k.startswith("daemon_"))


def effective_config(args: argparse.Namespace) -> Config:
    """The configuration file (if any) with the command-line flags applied. Raises ConfigError."""
    cfg = load_config(getattr(args, "daemon_config", None))
    overrides: dict[str, Any] = {
        "camera.source": args.daemon_camera,
        "camera.width": args.daemon_width,
        "camera.height": args.daemon_height,
        "camera.fps": args.daemon_fps,
        "codec.qp": args.daemon_qp,
        "codec.tiers": args.daemon_tiers,
        "record.path": args.daemon_record,
        "transport.peer": args.daemon_peer,
        "transport.token": args.daemon_token,
        "transport.ca_file": args.daemon_ca_file,
        "log_level": args.daemon_log_level,
    }
    if args.daemon_metrics:
        overrides["metrics.enabled"] = True
        overrides["metrics.listen"] = args.daemon_metrics
    return cfg.override(overrides)


def setup_logging(level: str) -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_snisd", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        # journald adds its own timestamps; a terminal wants them
        fmt = (
            "%(levelname)s %(name)s: %(message)s"
            if os.environ.get("JOURNAL_STREAM")
            else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        handler.setFormatter(logging.Formatter(fmt))
        handler._snisd = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    for noisy in ("aioice", "aiortc"):  # per-candidate ICE chatter unless debugging
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


class Daemon:
    """Owns the running pipeline and everything around it (systemd, metrics, reloads)."""

    def __init__(self, args: argparse.Namespace, cfg: Config) -> None:
        self.args = args
        self.cfg = cfg
        self.notifier = Notifier()
        self.pipeline: Pipeline | None = None
        self.generation = 0
        self.metrics: MetricsServer | None = None
        self._wake = threading.Event()
        self._stop_requested = False
        self._reload_requested = False
        self._progress_lock = threading.Lock()

    # -- building blocks -----------------------------------------------------------------------

    def _build_pipeline(self, cfg: Config):
        from .capture import open_source
        from .codec.encoder import Encoder, EncoderConfig
        from .codec.presets import tuning_for
        from .pipeline import Pipeline, RecordSink

        cam = cfg.camera
        source = open_source(
            cam.source, cam.width, cam.height, cam.fps, pixel_format=cam.pixel_format, read_timeout=cam.read_timeout_s
        )
        sinks: list = []
        rc = None  # the encoder under rate control, when streaming with it
        try:
            rate = fps_fraction(source.fps)
            fps = float(rate)
            c = cfg.codec
            key = max(1, round(c.keyframe_interval_s * fps)) if c.keyframe_interval_s > 0 else 0
            switch = max(1, round(c.switch_interval_s * fps)) if c.switch_interval_s > 0 else 0
            encoder = Encoder(
                EncoderConfig(
                    width=source.width,
                    height=source.height,
                    fps_num=rate.numerator,
                    fps_den=rate.denominator,
                    tiers=c.tiers,
                    qp=c.qp,
                    # rate control driving a live sender: the base at about a third of the target
                    tier_ratio=c.live_tier_ratio if cfg.transport.peer and c.rate_control else c.tier_ratio,
                    keyframe_interval=key,
                    switch_interval=switch,
                    model=c.model,
                    threads=c.threads,
                    # a stream the network may thin keeps its key pictures' base light (presets.LIVE)
                    tuning=tuning_for(c.preset, live=bool(cfg.transport.peer)),
                )
            )
            if cfg.record.path:
                sinks.append(RecordSink(cfg.record.path, encoder.sequence_header, cfg.record.fsync))
            sender = self._start_sender(cfg, encoder.sequence_header)
            if sender is not None:
                sinks.append(sender)
                if c.rate_control:
                    # the sender's target bit rate drives the encoder's qp (docs/TRANSPORT.md, "Rate")
                    from .codec.ratecontrol import RateControlledEncoder, RatePolicy

                    rc = RateControlledEncoder(
                        encoder,
                        cfg.transport.start_kbps * 1e3,
                        RatePolicy(budget_ms=c.frame_budget_ms, min_qp=c.min_qp, max_qp=c.max_qp),
                    )
                    sender.on_target = rc.set_target
        except BaseException:
            for sink in sinks:
                sink.close()
            source.close()
            raise
        pipeline = Pipeline(
            source,
            rc if rc is not None else encoder,
            sinks,
            queue_size=cfg.pipeline.queue_size,
            max_frames=self.args.daemon_max_frames,
            read_timeout=cam.read_timeout_s,
        )
        if sender is not None:
            sender.request_keyframe = pipeline.request_keyframe
            sender.capture_ms = pipeline.capture_ms  # latency figures from capture, not from the sink
        log.info(
            "camera %s, %d tiers at %s, %s%s",
            source.describe(),
            c.tiers,
            "the sender's target rate" if sender is not None and c.rate_control else f"qp {c.qp}",
            f"recording to {cfg.record.path}" if cfg.record.path else "not recording",
            f", streaming to {cfg.transport.peer}" if sender is not None else "",
        )
        return pipeline

    @staticmethod
    def _start_sender(cfg: Config, seq):
        """The WebRTC sink for ``transport.peer``, or None (no peer, or aiortc missing: logged)."""
        if not cfg.transport.peer:
            return None
        import importlib.util

        missing = [m for m in ("aiortc", "aiohttp") if importlib.util.find_spec(m) is None]
        if missing:  # the transport imports them lazily, on its own thread: check here
            log.error("%s Missing: %s.", PEER_UNAVAILABLE, ", ".join(missing))
            return None
        from .transport.estimator import EstimatorPolicy
        from .transport.sender import SenderPolicy, run_sender

        t = cfg.transport
        estimate = EstimatorPolicy(start_bps=t.start_kbps * 1e3, min_bps=t.min_kbps * 1e3, max_bps=t.max_kbps * 1e3)
        # connecting happens on the sender's own thread; failures are retried and reported there
        return run_sender(t, seq, policy=SenderPolicy(estimator=estimate))

    def _start_metrics(self, cfg: Config) -> None:
        from .metrics import MetricsServer, snapshot_registry

        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if cfg.metrics.enabled:

            def snapshot() -> dict | None:
                p = self.pipeline
                return p.snapshot() if p is not None else None

            try:
                self.metrics = MetricsServer(cfg.metrics.listen, snapshot_registry(snapshot)).start()
            except OSError as exc:
                log.error("metrics: cannot listen on %s: %s", cfg.metrics.listen, exc)

    def progress(self) -> tuple[int, int, int]:
        p = self.pipeline
        if p is None:
            return (self.generation, 0, 0)
        status = getattr(p.source, "status", None)
        return (self.generation, p.progress, status.attempts if status is not None else 0)

    def _stop_pipeline(self) -> bool:
        p = self.pipeline
        if p is None:
            return True
        p.stop()
        finished = p.join(STOP_BUDGET_S)
        if not finished:
            log.error("pipeline did not stop within %.1f s", STOP_BUDGET_S)
        try:
            p.source.close()
        except Exception as exc:
            log.debug("closing camera: %s", exc)
        return finished and not p.errors

    # -- signals -------------------------------------------------------------------------------

    def _on_stop(self, signum: int, _frame: Any) -> None:
        self._stop_requested = True
        self._wake.set()

    def _on_reload(self, signum: int, _frame: Any) -> None:
        self._reload_requested = True
        self._wake.set()

    def reload(self) -> None:
        self.notifier.reloading()
        try:
            new = effective_config(self.args)
        except SnisError as exc:
            log.error("reload rejected, keeping the running configuration: %s", exc)
            self.notifier.ready(self._status())
            return
        old = self.cfg
        setup_logging(new.log_level)
        if new.metrics != old.metrics:
            self._start_metrics(new)
        if (new.camera, new.codec, new.record, new.transport, new.pipeline.queue_size) != (
            old.camera,
            old.codec,
            old.record,
            old.transport,
            old.pipeline.queue_size,
        ):
            log.info("reload: camera/codec/recording/transport changed; restarting the pipeline")
            self._stop_pipeline()
            self.pipeline = None
            self.generation += 1
            try:
                self.pipeline = self._build_pipeline(new).start()
            except SnisError as exc:
                log.error("reload: new configuration failed (%s); back to the previous one", exc)
                self.pipeline = self._build_pipeline(old).start()
                new = old
        self.cfg = new
        log.info("configuration reloaded")
        self.notifier.ready(self._status())

    def _status(self) -> str:
        return self.pipeline.status_line() if self.pipeline is not None else "starting"

    # -- main loop -----------------------------------------------------------------------------

    def run(self) -> int:
        cfg = self.cfg
        if not cfg.record.path and not cfg.transport.peer:
            log.warning("neither --record nor --peer given: frames are encoded and discarded")
        old_handlers = {
            s: signal.signal(s, h)
            for s, h in (
                (signal.SIGTERM, self._on_stop),
                (signal.SIGINT, self._on_stop),
                (signal.SIGHUP, self._on_reload),
            )
        }
        watchdog = None
        try:
            self.pipeline = self._build_pipeline(cfg).start()
            self._start_metrics(cfg)
            deadline = time.monotonic() + READY_TIMEOUT_S
            while self.pipeline.progress == 0 and not self.pipeline.done.is_set() and not self._stop_requested:
                if time.monotonic() > deadline:
                    log.error("no frame encoded within %.0f s", READY_TIMEOUT_S)
                    self._stop_pipeline()
                    return 1
                time.sleep(0.05)  # a signal only sets a flag; the loop condition sees it
            if self.pipeline.progress > 0:  # not when it failed or was stopped before the first frame
                interval = watchdog_interval()
                if interval:
                    watchdog = Watchdog(self.notifier, self.progress, interval)
                    watchdog.start()
                self.notifier.ready(self._status())
                log.info("running")
            next_status = time.monotonic()
            while True:
                if self._stop_requested:
                    break
                if self._reload_requested:
                    self._reload_requested = False
                    self.reload()
                if self.pipeline.done.is_set():  # ended by itself: --max-frames, or a stage failed
                    break
                now = time.monotonic()
                if now >= next_status:
                    line = self._status()
                    self.notifier.status(line)
                    log.info("%s", line)
                    next_status = now + self.cfg.pipeline.status_interval_s
                self._wake.wait(min(0.25, max(0.0, next_status - now)))
                self._wake.clear()
            self.notifier.stopping()
            log.info("stopping: %s", self._status())
            errors = list(self.pipeline.errors)
            ok = self._stop_pipeline()
            for e in errors:
                log.error("pipeline error: %s", e)
            return 0 if ok else 1
        finally:
            if watchdog is not None:
                watchdog.stop()
            if self.metrics is not None:
                self.metrics.close()
            for s, h in old_handlers.items():
                signal.signal(s, h)
            self.notifier.close()


def run_daemon(args: argparse.Namespace) -> int:
    """Run the daemon with parsed arguments; returns the process exit code."""
    try:
        cfg = effective_config(args)
    except SnisError as exc:
        print(f"snisd: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.daemon_check_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    setup_logging(cfg.log_level)
    try:
        return Daemon(args, cfg).run()
    except SnisError as exc:
        log.error("%s", exc)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="snisd", description=__doc__.splitlines()[0])
    add_daemon_arguments(parser)
    return run_daemon(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
