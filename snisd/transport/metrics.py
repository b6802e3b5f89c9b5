"""The receiver's Prometheus metrics (GET /metrics, view scope): per stream frames, latency,
recording and forward state, written by prometheus_client like the daemon's (snisd/metrics.py)."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..metrics import render

FORWARD_STATES = ("new", "connecting", "connected", "waiting", "closed")
_STREAM = ["stream", "publisher"]


def receiver_metrics(rx) -> str:
    """The text exposition for an endpoint.Receiver `rx`."""
    streams = GaugeMetricFamily("snisd_receiver_streams", "Live publisher sessions")
    streams.add_metric([], len(rx.streams))
    rejected = CounterMetricFamily("snisd_receiver_rejected", "Requests refused for a bad or missing token")
    rejected.add_metric([], rx.rejected + (rx.liveview.rejected if rx.liveview is not None else 0))
    released = CounterMetricFamily("snisd_receiver_frames_released", "Frames released per stream", labels=_STREAM)
    decoded = CounterMetricFamily("snisd_receiver_frames_decoded", "Frames decoded live per stream", labels=_STREAM)
    recorded = CounterMetricFamily("snisd_receiver_frames_recorded", "Frames recorded per stream", labels=_STREAM)
    rec_stopped = GaugeMetricFamily(
        "snisd_receiver_recording_stopped",
        "1 when the stream's recording stopped at a limit (the stream goes on)",
        labels=_STREAM,
    )
    lat = GaugeMetricFamily(
        "snisd_receiver_e2e_latency_ms",
        "Capture-to-display latency over the recent frames (sender clock corrected by ping offset)",
        labels=["stream", "quantile"],
    )
    offset = GaugeMetricFamily("snisd_receiver_clock_offset_ms", "Sender clock minus receiver clock", labels=["stream"])
    fwd = GaugeMetricFamily(
        "snisd_receiver_forward_state", "Forward target state (1 for the current one)", labels=["stream", "state"]
    )
    fwd_sessions = CounterMetricFamily(
        "snisd_receiver_forward_sessions", "Forward sessions established", labels=["stream"]
    )
    fwd_failures = CounterMetricFamily(
        "snisd_receiver_forward_failures", "Forward attempts that failed", labels=["stream"]
    )
    for sid, s in list(rx.streams.items()):
        who = [sid, s.publisher]
        released.add_metric(who, s.frames_released)
        decoded.add_metric(who, s.frames_decoded)
        recorded.add_metric(who, s.frames_recorded)
        rec_stopped.add_metric(who, 1 if s.recording_stopped else 0)
        ls = s.latency_stats()
        for q in ("p50", "p95"):
            v = ls[f"e2e_latency_{q}_ms"]
            if v is not None:
                lat.add_metric([sid, q], v)
        if ls["clock_offset_ms"] is not None:
            offset.add_metric([sid], ls["clock_offset_ms"])
        st = rx.forward_state(sid)
        if st is not None:
            for name in FORWARD_STATES:
                fwd.add_metric([sid, name], 1 if st["state"] == name else 0)
            fwd_sessions.add_metric([sid], st["sessions"])
            fwd_failures.add_metric([sid], st["failures"])
    return render(
        [streams, rejected, released, decoded, recorded, rec_stopped, lat, offset, fwd, fwd_sessions, fwd_failures]
    )
