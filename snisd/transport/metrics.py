"""The receiver's Prometheus metrics (GET /metrics, view scope): per stream frames, latency,
recording and forward state, in the same text format as the daemon's (snisd/metrics.py)."""

from __future__ import annotations

from ..metrics import MetricFamily, render

FORWARD_STATES = ("new", "connecting", "connected", "waiting", "closed")


def receiver_metrics(rx) -> str:
    """The text exposition for an endpoint.Receiver `rx`."""
    streams = MetricFamily("snisd_receiver_streams", "gauge", "Live publisher sessions")
    streams.add(len(rx.streams))
    rejected = MetricFamily("snisd_receiver_rejected_total", "counter", "Requests refused for a bad or missing token")
    rejected.add(rx.rejected + (rx.liveview.rejected if rx.liveview is not None else 0))
    released = MetricFamily("snisd_receiver_frames_released_total", "counter", "Frames released per stream")
    decoded = MetricFamily("snisd_receiver_frames_decoded_total", "counter", "Frames decoded live per stream")
    recorded = MetricFamily("snisd_receiver_frames_recorded_total", "counter", "Frames recorded per stream")
    rec_stopped = MetricFamily("snisd_receiver_recording_stopped", "gauge",
                               "1 when the stream's recording stopped at a limit (the stream goes on)")
    lat = MetricFamily("snisd_receiver_e2e_latency_ms", "gauge",
                       "Capture-to-display latency over the recent frames (sender clock corrected by ping offset)")
    offset = MetricFamily("snisd_receiver_clock_offset_ms", "gauge", "Sender clock minus receiver clock")
    fwd = MetricFamily("snisd_receiver_forward_state", "gauge", "Forward target state (1 for the current one)")
    fwd_sessions = MetricFamily("snisd_receiver_forward_sessions_total", "counter", "Forward sessions established")
    fwd_failures = MetricFamily("snisd_receiver_forward_failures_total", "counter", "Forward attempts that failed")
    for sid, s in list(rx.streams.items()):
        released.add(s.frames_released, stream=sid, publisher=s.publisher)
        decoded.add(s.frames_decoded, stream=sid, publisher=s.publisher)
        recorded.add(s.frames_recorded, stream=sid, publisher=s.publisher)
        rec_stopped.add(1 if s.recording_stopped else 0, stream=sid, publisher=s.publisher)
        ls = s.latency_stats()
        for q in ("p50", "p95"):
            v = ls[f"e2e_latency_{q}_ms"]
            if v is not None:
                lat.add(v, stream=sid, quantile=q)
        if ls["clock_offset_ms"] is not None:
            offset.add(ls["clock_offset_ms"], stream=sid)
        st = rx.forward_state(sid)
        if st is not None:
            for name in FORWARD_STATES:
                fwd.add(1 if st["state"] == name else 0, stream=sid, state=name)
            fwd_sessions.add(st["sessions"], stream=sid)
            fwd_failures.add(st["failures"], stream=sid)
    return render([streams, rejected, released, decoded, recorded, rec_stopped, lat, offset, fwd, fwd_sessions,
                   fwd_failures])
