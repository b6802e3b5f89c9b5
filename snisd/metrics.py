"""Prometheus metrics over HTTP, rendered by prometheus_client, served from a background thread.

Off by default (``metrics.enabled``); listens on localhost. ``GET /metrics`` renders a fresh
snapshot of the pipeline's counters on every request; anything else is 404. Each server has its
own registry (nothing is registered in prometheus_client's global one), holding one collector that
turns the pipeline snapshot into metric families when scraped.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .hostport import parse_host_port

log = logging.getLogger("snisd.metrics")

#: The classic text exposition format, which generate_latest writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _counter(name: str, help_text: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, labels=list(labels))


def _gauge(name: str, help_text: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, labels=list(labels))


def families_from_snapshot(snap: dict[str, Any]) -> list[Metric]:
    """Turn a :meth:`snisd.pipeline.Pipeline.snapshot` into metric families."""
    stages = snap.get("stages", {})
    per_stage: list[tuple[CounterMetricFamily | GaugeMetricFamily, str]] = [
        (_counter("snisd_stage_frames_in_total", "Frames that entered a pipeline stage.", ["stage"]), "in"),
        (_counter("snisd_stage_frames_out_total", "Frames a pipeline stage passed on.", ["stage"]), "out"),
        (
            _counter(
                "snisd_stage_frames_dropped_total",
                "Frames dropped in front of a stage because it fell behind (oldest first).",
                ["stage"],
            ),
            "dropped",
        ),
        (_gauge("snisd_stage_ms_p50", "Median processing time per frame, milliseconds.", ["stage"]), "p50_ms"),
        (_gauge("snisd_stage_ms_p95", "95th-percentile processing time per frame, milliseconds.", ["stage"]), "p95_ms"),
    ]
    out: list[Metric] = []
    for family, key in per_stage:
        for stage, st in stages.items():
            family.add_metric([str(stage)], st[key])
        out.append(family)
    rate = _gauge("snisd_tier_bitrate_bps", "Bit rate of each tier over the last seconds.", ["tier"])
    for tier, bps in enumerate(snap.get("tier_bitrate_bps", [])):
        rate.add_metric([str(tier)], bps)
    out.append(rate)
    out.append(GaugeMetricFamily("snisd_fps", "Frames per second leaving the encoder.", value=snap.get("fps", 0.0)))
    out.append(GaugeMetricFamily("snisd_tiers", "Tiers being coded.", value=snap.get("tiers", 0)))
    cam = snap.get("camera", {})
    if cam:
        up = _gauge("snisd_camera_up", "1 while the camera delivers frames.", ["state"])
        up.add_metric([str(cam.get("state", ""))], 1 if cam.get("state") == "open" else 0)
        out.append(up)
        out.append(
            CounterMetricFamily(
                "snisd_camera_reopens_total", "Times the camera was reopened.", value=cam.get("reopens", 0)
            )
        )
        out.append(
            CounterMetricFamily(
                "snisd_camera_failures_total", "Camera failures (vanished or stalled).", value=cam.get("failures", 0)
            )
        )
    out.append(
        GaugeMetricFamily(
            "snisd_uptime_seconds", "Seconds since the pipeline started.", value=snap.get("uptime_s", 0.0)
        )
    )
    if "rss_bytes" in snap:
        out.append(
            GaugeMetricFamily(
                "snisd_resident_memory_bytes", "Resident set size of the daemon.", value=snap["rss_bytes"]
            )
        )
    tr = snap.get("transport")
    if tr:
        connected = _gauge("snisd_transport_connected", "1 while a WebRTC session to the peer is up.", ["state"])
        connected.add_metric([str(tr.get("state") or "")], 1 if tr.get("state") == "connected" else 0)
        out.append(connected)
        out.append(
            CounterMetricFamily(
                "snisd_transport_sessions_total", "WebRTC sessions opened.", value=tr.get("sessions") or 0
            )
        )
        out.append(
            CounterMetricFamily(
                "snisd_transport_frames_sent_total", "Frames sent to the peer.", value=tr.get("frames_sent") or 0
            )
        )
        est = tr.get("estimate") or {}
        if est.get("estimate_kbps") is not None:
            out.append(
                GaugeMetricFamily(
                    "snisd_transport_estimate_bps",
                    "The sender's estimate of the path's capacity.",
                    value=1e3 * est["estimate_kbps"],
                )
            )
        if tr.get("target_kbps") is not None:
            out.append(
                GaugeMetricFamily(
                    "snisd_transport_target_bps",
                    "The bit rate the encoder is asked for.",
                    value=1e3 * tr["target_kbps"],
                )
            )
        if tr.get("max_tiers") is not None:
            out.append(GaugeMetricFamily("snisd_transport_tiers_sent", "Tiers being sent.", value=tr["max_tiers"]))
        sent = _counter("snisd_transport_bytes_sent_total", "Bytes sent to the peer per tier.", ["tier"])
        for tier, b in enumerate(tr.get("bytes_sent") or []):
            sent.add_metric([str(tier)], b)
        out.append(sent)
    rc = snap.get("rate_control")
    if rc and rc.get("qp") is not None:
        out.append(GaugeMetricFamily("snisd_encoder_qp", "qp of the last frame (rate control).", value=rc["qp"]))
        out.append(
            GaugeMetricFamily(
                "snisd_encoder_target_bps", "Rate control's target bit rate.", value=1e3 * rc["target_kbps"]
            )
        )
    if "recorded_frames" in snap:
        out.append(
            CounterMetricFamily(
                "snisd_recorded_frames_total", "Frames written to the recording.", value=snap["recorded_frames"]
            )
        )
    return out


class SnapshotCollector(Collector):
    """Collects the metric families of ``snapshot()`` at scrape time (nothing while it returns None)."""

    def __init__(self, snapshot: Callable[[], dict[str, Any] | None]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        if snap is not None:
            yield from families_from_snapshot(snap)


def snapshot_registry(snapshot: Callable[[], dict[str, Any] | None]) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one) holding a SnapshotCollector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return registry


def render(families: Iterable[Metric]) -> str:
    """The text exposition of `families`, as the endpoint serves it."""
    return generate_latest(_Families(list(families))).decode("utf-8")


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """HTTP server thread answering ``GET /metrics`` with the text exposition of ``registry``."""

    def __init__(self, listen: str, registry: Collector) -> None:
        self.registry = registry
        host, port = parse_host_port(listen, default_host="127.0.0.1")
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served")
                    return
                try:
                    body = generate_latest(server_self.registry)
                except Exception as exc:  # never let a metrics bug kill the thread
                    log.exception("rendering metrics failed")
                    self.send_error(500, str(exc))
                    return
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("metrics %s - %s", self.address_string(), format % args)

        self.httpd = (_Server6 if ":" in host else _Server)((host, port), Handler)
        self.address = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="snisd-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", *self.address)
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
