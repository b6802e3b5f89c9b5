"""The metrics endpoint: the pipeline snapshot as Prometheus metrics (prometheus_client's text
format, checked with its own parser), served per daemon from a registry of its own."""

from __future__ import annotations

import urllib.error
import urllib.request

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from snisd.metrics import MetricsServer, families_from_snapshot, render, snapshot_registry

SNAP = {
    "stages": {"encode": {"in": 5, "out": 4, "dropped": 1, "p50_ms": 2.5, "p95_ms": 7.0}},
    "fps": 29.97,
    "tier_bitrate_bps": [100000, 50000],
    "tiers": 2,
    "uptime_s": 3.0,
    "rss_bytes": 1000,
    "camera": {"state": "reconnecting", "reopens": 1, "failures": 2},
}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def scrape(srv: MetricsServer, path: str = "/metrics") -> tuple[str, str]:
    host, port = srv.address
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as r:
        return r.headers["Content-Type"], r.read().decode()


def test_metrics_text_and_http():
    text = render(families_from_snapshot(SNAP))
    assert "# TYPE snisd_stage_frames_dropped_total counter" in text
    assert 'snisd_stage_frames_dropped_total{stage="encode"} 1.0\n' in text
    assert 'snisd_stage_ms_p95{stage="encode"} 7.0\n' in text
    assert 'snisd_tier_bitrate_bps{tier="1"} 50000.0\n' in text
    assert 'snisd_camera_up{state="reconnecting"} 0.0\n' in text
    got = samples(text)
    assert got[("snisd_stage_frames_in_total", (("stage", "encode"),))] == 5
    assert got[("snisd_fps", ())] == 29.97 and got[("snisd_camera_failures_total", ())] == 2
    for line in text.splitlines():  # every sample line: name{labels} value
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            float(value)
            assert name.startswith("snisd_")
    srv = MetricsServer("127.0.0.1:0", snapshot_registry(lambda: SNAP)).start()
    try:
        ctype, body = scrape(srv)
        assert ctype.startswith("text/plain; version=0.0.4")
        assert body == text
        with pytest.raises(urllib.error.HTTPError) as err:
            scrape(srv, "/other")
        assert err.value.code == 404
    finally:
        srv.close()


def test_each_server_has_its_own_registry():
    a = MetricsServer("127.0.0.1:0", snapshot_registry(lambda: {**SNAP, "tiers": 1})).start()
    b = MetricsServer("127.0.0.1:0", snapshot_registry(lambda: {**SNAP, "tiers": 3})).start()
    try:
        assert samples(scrape(a)[1])[("snisd_tiers", ())] == 1
        assert samples(scrape(b)[1])[("snisd_tiers", ())] == 3
    finally:
        a.close()
        b.close()
    global_names = {f.name for f in prometheus_client.REGISTRY.collect()}
    assert not any(n.startswith("snisd_") for n in global_names)


def test_no_pipeline_yet_serves_an_empty_page_and_a_failing_snapshot_a_500():
    idle = MetricsServer("127.0.0.1:0", snapshot_registry(lambda: None)).start()
    try:
        assert scrape(idle)[1] == ""
    finally:
        idle.close()

    def broken() -> dict:
        raise KeyError("stages")

    srv = MetricsServer("127.0.0.1:0", snapshot_registry(broken)).start()
    try:
        for _ in range(2):  # the server keeps answering after a failed rendering
            with pytest.raises(urllib.error.HTTPError) as err:
                scrape(srv)
            assert err.value.code == 500
    finally:
        srv.close()
