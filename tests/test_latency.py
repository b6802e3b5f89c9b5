"""End-to-end latency: the receiver estimates the sender's clock offset from control-channel
pings (clocksync.py) and reports capture-to-display latency, p50/p95."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from snisd.transport.clocksync import ClockSync, Percentiles, pong


def test_offset_from_pings_keeps_the_smallest_round_trip():
    sync = ClockSync()
    true_offset = 7_200_000.0  # the sender's clock is two hours ahead
    # (one-way delay out, back) per ping: queueing makes some asymmetric
    delays = [(40.0, 5.0), (5.0, 5.0), (3.0, 60.0), (20.0, 20.0), (2.0, 2.5)]
    t0 = 1000.0
    for out, back in delays:
        t1 = t0 + out + true_offset
        t2 = t1 + 0.5
        msg = pong(sync.ping(t0), t1, t2)
        assert sync.on_pong(msg, t2 - true_offset + back) is not None
        t0 += 1000
    best = sync.best()
    assert best.rtt_ms == pytest.approx(4.5) and abs(best.offset_ms - true_offset) <= best.rtt_ms / 2
    # garbage is ignored, not trusted
    assert sync.on_pong({"t0": "x", "t1": 1, "t2": 2}, 5.0) is None
    assert sync.on_pong({"t0": 10.0, "t1": 5.0, "t2": 4.0}, 11.0) is None  # t2 before t1
    assert pong({"t0": None}, 1, 2) is None
    p = Percentiles()
    for v in range(1, 101):
        p.add(float(v))
    assert p.get(0.5) == pytest.approx(50.5, abs=1) and p.get(0.95) == pytest.approx(95, abs=1)


@pytest.mark.slow
def test_capture_to_display_latency_with_an_offset_sender_clock(tmp_path):
    pytest.importorskip("aiortc")
    from test_transport import ReceiverProc, free_port, run_sender

    offset = 7_200_000.0
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rx = ReceiverProc(tmp_path, f"127.0.0.1:{port}", "--token", "lat")
    proc, tx_log = run_sender(
        tmp_path, f"{base}/whip", 10.0, "--token", "lat", "--clock-offset-ms", str(offset), background=True
    )
    seen = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            req = urllib.request.Request(f"{base}/stats", headers={"Authorization": "Bearer lat"})
            stats = json.loads(urllib.request.urlopen(req, timeout=5).read())
            for s in stats.values():
                if s["e2e_latency_p50_ms"] is not None:
                    seen.append(s)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
        rx.stop()
    assert seen, rx.stderr_path.read_text()[-2000:]
    last = seen[-1]
    # the offset is found to within the round trip, though the clocks are two hours apart
    assert last["e2e_latency_from"] == "capture"
    assert abs(last["clock_offset_ms"] - offset) <= max(20.0, last["clock_rtt_ms"]), last
    # capture-to-display: at least the sender's own capture-to-send time, well below a second here
    sent = [json.loads(x) for x in tx_log.read_text().splitlines()]
    encode_ms = sorted((r["t_encoded"] - r["t_capture"]) * 1000 for r in sent if r["t_capture"])
    p50, p95 = last["e2e_latency_p50_ms"], last["e2e_latency_p95_ms"]
    assert encode_ms[len(encode_ms) // 2] * 0.9 <= p50 <= p95 < 3000, (p50, p95, encode_ms[len(encode_ms) // 2])
    (summary,) = rx.summaries()
    assert summary["e2e_latency_p50_ms"] is not None
    print(
        "latency",
        {k: last[k] for k in ("clock_offset_ms", "clock_rtt_ms", "e2e_latency_p50_ms", "e2e_latency_p95_ms")},
        "encode p50",
        encode_ms[len(encode_ms) // 2],
    )
