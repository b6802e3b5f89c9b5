"""Prometheus text-format metrics over HTTP (stdlib only), served from a background thread.

Off by default (``metrics.enabled``); listens on localhost. ``GET /metrics`` renders a fresh
snapshot of the pipeline's counters on every request; anything else is 404.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable

from .hostport import parse_host_port

log = logging.getLogger("snisd.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, object]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


class MetricFamily:
    """One metric name with HELP, TYPE and any number of labelled samples."""

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name, self.kind, self.help = name, kind, help_text
        self.samples: list[tuple[dict[str, object], float]] = []

    def add(self, value: float, **labels: object) -> "MetricFamily":
        self.samples.append((labels, float(value)))
        return self

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in self.samples:
            if not math.isfinite(value):
                text = "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
            elif value == int(value) and abs(value) < 1e15:
                text = str(int(value))
            else:
                text = repr(value)
            lines.append(f"{self.name}{_labels(labels)} {text}")
        return "\n".join(lines) + "\n"


def render(families: Iterable[MetricFamily]) -> str:
    return "".join(f.render() for f in families)


def families_from_snapshot(snap: dict[str, Any]) -> list[MetricFamily]:
    """Turn a :meth:`snisd.pipeline.Pipeline.snapshot` into metric families."""
    fams = {
        "in": MetricFamily("snisd_stage_frames_in_total", "counter", "Frames that entered a pipeline stage."),
        "out": MetricFamily("snisd_stage_frames_out_total", "counter", "Frames a pipeline stage passed on."),
        "dropped": MetricFamily("snisd_stage_frames_dropped_total", "counter",
                                "Frames dropped in front of a stage because it fell behind (oldest first)."),
        "p50": MetricFamily("snisd_stage_ms_p50", "gauge", "Median processing time per frame, milliseconds."),
        "p95": MetricFamily("snisd_stage_ms_p95", "gauge", "95th-percentile processing time per frame, milliseconds."),
    }
    for stage, st in snap.get("stages", {}).items():
        fams["in"].add(st["in"], stage=stage)
        fams["out"].add(st["out"], stage=stage)
        fams["dropped"].add(st["dropped"], stage=stage)
        fams["p50"].add(st["p50_ms"], stage=stage)
        fams["p95"].add(st["p95_ms"], stage=stage)
    out = list(fams.values())
    rate = MetricFamily("snisd_tier_bitrate_bps", "gauge", "Bit rate of each tier over the last seconds.")
    for tier, bps in enumerate(snap.get("tier_bitrate_bps", [])):
        rate.add(bps, tier=tier)
    out.append(rate)
    out.append(MetricFamily("snisd_fps", "gauge", "Frames per second leaving the encoder.").add(snap.get("fps", 0.0)))
    out.append(MetricFamily("snisd_tiers", "gauge", "Tiers being coded.").add(snap.get("tiers", 0)))
    cam = snap.get("camera", {})
    if cam:
        out.append(MetricFamily("snisd_camera_up", "gauge", "1 while the camera delivers frames.")
                   .add(1 if cam.get("state") == "open" else 0, state=cam.get("state", "")))
        out.append(MetricFamily("snisd_camera_reopens_total", "counter", "Times the camera was reopened.")
                   .add(cam.get("reopens", 0)))
        out.append(MetricFamily("snisd_camera_failures_total", "counter", "Camera failures (vanished or stalled).")
                   .add(cam.get("failures", 0)))
    out.append(MetricFamily("snisd_uptime_seconds", "gauge", "Seconds since the pipeline started.")
               .add(snap.get("uptime_s", 0.0)))
    if "rss_bytes" in snap:
        out.append(MetricFamily("snisd_resident_memory_bytes", "gauge", "Resident set size of the daemon.")
                   .add(snap["rss_bytes"]))
    tr = snap.get("transport")
    if tr:
        out.append(MetricFamily("snisd_transport_connected", "gauge", "1 while a WebRTC session to the peer is up.")
                   .add(1 if tr.get("state") == "connected" else 0, state=tr.get("state") or ""))
        out.append(MetricFamily("snisd_transport_sessions_total", "counter", "WebRTC sessions opened.")
                   .add(tr.get("sessions") or 0))
        out.append(MetricFamily("snisd_transport_frames_sent_total", "counter", "Frames sent to the peer.")
                   .add(tr.get("frames_sent") or 0))
        sent = MetricFamily("snisd_transport_bytes_sent_total", "counter", "Bytes sent to the peer per tier.")
        for tier, b in enumerate(tr.get("bytes_sent") or []):
            sent.add(b, tier=tier)
        out.append(sent)
    if "recorded_frames" in snap:
        out.append(MetricFamily("snisd_recorded_frames_total", "counter", "Frames written to the recording.")
                   .add(snap["recorded_frames"]))
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """HTTP server thread answering ``GET /metrics`` with ``text()``'s output."""

    def __init__(self, listen: str, text: Callable[[], str]) -> None:
        self.text = text
        host, port = parse_host_port(listen, default_host="127.0.0.1")
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served")
                    return
                try:
                    body = server_self.text().encode("utf-8")
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

    def start(self) -> "MetricsServer":
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", *self.address)
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
