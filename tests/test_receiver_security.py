"""The receiver is secure by default: scoped tokens, loopback without a token, TLS, limits, CORS.

Real `snisd receive` processes and real aiortc senders over loopback; the TLS tests make a CA
and a server certificate in the test with the `cryptography` package.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("aiortc")
pytest.importorskip("aiohttp")

from test_transport import ROOT, ReceiverProc, env, free_port, run_sender  # noqa: E402

from snisd.errors import ConfigError  # noqa: E402
from snisd.transport.auth import PUBLISH, VIEW, Access, Grant  # noqa: E402
from snisd.transport.errors import TransportError, WhipError  # noqa: E402
from snisd.transport.receiver_config import parse_receiver_config  # noqa: E402
from snisd.transport.whip import WhipClient  # noqa: E402

PUB = "publisher-token-cam1-0123456789"
VIEWER = "viewer-token-alice-0123456789"


def write_config(tmp: Path, text: str) -> Path:
    p = tmp / "receiver.yaml"
    p.write_text(text)
    return p


def scoped_config(tmp: Path, extra: str = "") -> Path:
    return write_config(
        tmp,
        f"""
publishers:
  cam1: {{token: "{PUB}"}}
viewers:
  alice: {{token: "{VIEWER}"}}
{extra}""",
    )


def http(
    url: str,
    token: str | None = None,
    method: str = "GET",
    data: bytes | None = None,
    headers: dict | None = None,
    context=None,
) -> tuple[int, dict, bytes]:
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


# ---------------------------------------------------------------------------------------------
# Units (fast).


def test_access_scopes_and_constant_time_match():
    a = Access([Grant("cam1", PUB, frozenset({PUBLISH})), Grant("alice", VIEWER, frozenset({VIEW}))])
    assert a.match(PUB).name == "cam1" and a.match(VIEWER).name == "alice"
    assert a.match(PUB[:-1]) is None and a.match("") is None and a.match(None) is None
    assert Access().open and Access().match(None) is not None
    assert Access.single_token("t").match("t").scopes == {PUBLISH, VIEW}


def test_receiver_config_errors_name_the_key_path():
    cfg = parse_receiver_config(
        {
            "publishers": {"cam1": {"token": PUB, "forward": {"url": "https://m/whip"}}},
            "viewers": {"alice": {"token": VIEWER}},
            "recording": {"min_free_mb": 5},
        }
    )
    assert cfg.forwards["cam1"].codec == "h264" and cfg.min_free_bytes == 5_000_000
    bad = [
        ({"publishers": {"cam1": {"token": "short"}}}, "publishers.cam1.token"),
        ({"publishers": {"cam1": {"token": PUB, "forward": {"url": "rtmp://x"}}}}, "publishers.cam1.forward.url"),
        (
            {"publishers": {"cam1": {"token": PUB, "forward": {"url": "http://x", "codec": "av1"}}}},
            "publishers.cam1.forward.codec",
        ),
        ({"viewers": {"a": {"token": VIEWER, "forward": {}}}}, "viewers.a.forward"),
        ({"viewers": {"a": {"token": PUB}}, "publishers": {"b": {"token": PUB}}}, "viewers.a.token"),
        ({"recording": {"max_mb": -1}}, "recording.max_mb"),
        ({"listen": "nowhere"}, "listen"),
        ({"lisen": "1:2"}, "lisen"),
    ]
    for data, key in bad:
        with pytest.raises(ConfigError) as err:
            parse_receiver_config(data)
        assert err.value.key == key, (data, err.value)


# ---------------------------------------------------------------------------------------------
# A real receiver.


def test_open_receiver_refuses_a_public_address(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "snisd", "receive", "--listen", f"0.0.0.0:{free_port()}", "--no-decode"],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "without a token" in r.stderr and "--allow-open" in r.stderr, r.stderr


def test_open_receiver_defaults_to_loopback(tmp_path):
    # no --listen, no token: the default address is loopback (the printed endpoint says so)
    p = subprocess.Popen(
        [sys.executable, "-m", "snisd", "receive", "--no-decode"],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = p.stdout.readline()
    finally:
        p.terminate()
        p.wait(20)
    assert "http://127.0.0.1:8080/whip" in line or p.returncode == 1, line  # 1: port 8080 taken here


def test_scoped_tokens(tmp_path):
    port = free_port()
    rx = ReceiverProc(tmp_path, f"127.0.0.1:{port}", "--config", str(scoped_config(tmp_path)), "--no-decode")
    base = f"http://127.0.0.1:{port}"
    try:
        # publish: no token and a viewer's token are refused (401 / 403) before any offer is read
        for token, status in ((None, 401), ("nonsense-token-0000000000", 401), (VIEWER, 403)):
            with pytest.raises(WhipError) as err:
                asyncio.run(WhipClient(f"{base}/whip", token).publish("v=0\r\n"))
            assert err.value.status == status and err.value.unauthorized
        # view scope: stats, metrics, pages, WHEP
        for path in ("/stats", "/metrics", "/", "/stats/x"):
            assert http(base + path)[0] == 401
            assert http(base + path, PUB)[0] == 403, path  # a publisher's token does not let one watch
            assert http(base + path, VIEWER)[0] in (200, 404), path
        assert http(f"{base}/whep/x", PUB, "POST", b"v=0", {"Content-Type": "application/sdp"})[0] == 403
        # a real sender with the viewer's token never connects; with its own it streams
        stats, _ = run_sender(tmp_path, f"{base}/whip", 2.0, "--token", VIEWER, "--connect-wait", "2", tag="tx-v")
        assert stats["sender"]["sessions"] == 0 and "403" in stats["sender"]["last_error"]
        stats, _ = run_sender(tmp_path, f"{base}/whip", 3.0, "--token", PUB, tag="tx-p")
        assert stats["sender"]["sessions"] == 1
        time.sleep(1.0)
        status, _, body = http(base + "/metrics", VIEWER)
        assert status == 200 and b"snisd_receiver_rejected_total" in body
    finally:
        rx.stop()
    (summary,) = rx.summaries()
    assert summary["publisher"] == "cam1" and summary["released"] > 0


def test_whep_answers_carry_cors_headers(tmp_path):
    port = free_port()
    rx = ReceiverProc(tmp_path, f"127.0.0.1:{port}", "--token", "tok", "--no-decode")
    try:
        status, headers, _ = http(
            f"http://127.0.0.1:{port}/whep/x",
            method="OPTIONS",
            headers={"Origin": "https://player.example", "Access-Control-Request-Method": "POST"},
        )
        assert status == 204 and headers["Access-Control-Allow-Origin"] == "*"
        assert "Authorization" in headers["Access-Control-Allow-Headers"]
        assert "Location" in headers["Access-Control-Expose-Headers"]
        # a refusal carries them too, so the player can read the status
        status, headers, _ = http(
            f"http://127.0.0.1:{port}/whep/x",
            method="POST",
            data=b"v=0",
            headers={"Origin": "https://player.example", "Content-Type": "application/sdp"},
        )
        assert status == 401 and headers["Access-Control-Allow-Origin"] == "*"
    finally:
        rx.stop()


# ---------------------------------------------------------------------------------------------
# TLS with a test CA.


def make_ca_and_cert(tmp: Path) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "snisd test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


@pytest.mark.slow
def test_tls_receiver_and_https_whip_with_a_ca_file(tmp_path):
    pytest.importorskip("cryptography")
    ca, cert, key = make_ca_and_cert(tmp_path)
    port = free_port()
    rx = ReceiverProc(
        tmp_path, f"127.0.0.1:{port}", "--token", "tls-tok", "--tls-cert", str(cert), "--tls-key", str(key)
    )
    url = f"https://127.0.0.1:{port}/whip"
    try:
        assert any(f"WHIP endpoint at {url}" in x for x in rx.lines)
        # the handshake: verified against the test CA; without it the certificate is not trusted
        ctx = ssl.create_default_context(cafile=str(ca))
        assert http(f"https://127.0.0.1:{port}/stats", "tls-tok", context=ctx)[0] == 200
        with pytest.raises(TransportError) as err:
            asyncio.run(WhipClient(url, "tls-tok", timeout=5).publish("v=0\r\n"))
        assert "certificate" in str(err.value).lower()
        with pytest.raises(WhipError) as err:  # trusted: the handshake succeeds, the wrong token is refused
            asyncio.run(WhipClient(url, "wrong", timeout=5, ca_file=str(ca)).publish("v=0\r\n"))
        assert err.value.status == 401
        # a real stream over HTTPS signalling, decoded
        stats, tx_log = run_sender(tmp_path, url, 4.0, "--token", "tls-tok", "--ca-file", str(ca))
        time.sleep(1.0)
    finally:
        rx.stop()
    assert stats["sender"]["sessions"] == 1, stats
    assert len(rx.frames()) >= 10
    with pytest.raises(TransportError):
        WhipClient(url, ca_file=str(tmp_path / "missing.pem"))


# ---------------------------------------------------------------------------------------------
# Limits.


@pytest.mark.slow
def test_free_disk_floor_stops_recording_not_the_stream(tmp_path):
    port = free_port()
    # a floor far above any disk's free space: recording cannot even start, decoding goes on
    rx = ReceiverProc(tmp_path, f"127.0.0.1:{port}", "--min-free-mb", "1e9")
    try:
        stats, _ = run_sender(tmp_path, f"http://127.0.0.1:{port}/whip", 4.0)
        time.sleep(1.0)
    finally:
        rx.stop()
    (summary,) = rx.summaries()
    assert summary["recorded"] == 0 and "below the floor" in summary["recording_stopped"], summary
    assert summary["decoded"] >= 10 and summary["decoded"] >= 0.9 * stats["sender"]["frames_sent"]
    assert "recording stopped" in rx.stderr_path.read_text()


@pytest.mark.slow
def test_recording_size_limit_keeps_a_valid_file(tmp_path):
    from snisd.container import read_fmp4

    port = free_port()
    rx = ReceiverProc(tmp_path, f"127.0.0.1:{port}", "--max-recording-mb", "0.02")
    try:
        stats, _ = run_sender(tmp_path, f"http://127.0.0.1:{port}/whip", 4.0)
        time.sleep(1.0)
    finally:
        rx.stop()
    (summary,) = rx.summaries()
    assert "size limit" in summary["recording_stopped"], summary
    assert 0 < summary["recorded"] < summary["released"] and summary["decoded"] >= 0.9 * summary["released"]
    (rec,) = rx.record_dir.iterdir()
    assert rec.stat().st_size <= 20_000
    seq, frames, truncated = read_fmp4(rec)
    assert not truncated and len(frames) == summary["recorded"]


def test_oversized_messages_are_refused():
    """A message above the framing's 16 KiB bound is a bad message, not a reason to buffer it."""
    from snisd.transport.channels import MAX_MESSAGE, Reassembler, split
    from snisd.transport.errors import TransportError as TE

    r = Reassembler(max_piece=64 << 10)
    with pytest.raises(TE):  # a piece announced larger than the bound
        r.add(split(b"x" * (200 << 10), 1, 1, 1)[0])
    assert all(len(m) <= MAX_MESSAGE for m in split(b"y" * 50_000, 1, 0, 2))


def test_recorder_stops_at_the_floor_mid_stream_and_keeps_a_valid_file(tmp_path):
    """The free space falls while recording: the recording stops at the floor, its file reads back."""
    from snisd.capture.synthetic import SyntheticScene
    from snisd.codec.encoder import Encoder, EncoderConfig
    from snisd.container import read_fmp4
    from snisd.transport.recording import Recorder, RecordingLimits

    enc = Encoder(EncoderConfig(64, 48, 10, 1, tiers=2))
    scene = SyntheticScene(64, 48, 10.0)
    free = [10_000_000]
    rec = Recorder(
        str(tmp_path / "r" / "s.mp4"),
        enc.sequence_header,
        RecordingLimits(min_free_bytes=9_000_000),
        disk_free=lambda _: free[0],
    )
    written = []
    for n in range(10):
        written.append(rec.write(enc.encode(scene.render(n))))
        free[0] -= 300_000  # something else fills the disk
    assert written[:4] == [True] * 4 and not any(written[5:]), written
    assert "below the floor" in rec.stopped and not rec.active
    _, frames, truncated = read_fmp4(tmp_path / "r" / "s.mp4")
    assert len(frames) == rec.frames == sum(written) and not truncated


def test_bad_receiver_config_names_the_key_and_nothing_listens(tmp_path):
    cfg = write_config(tmp_path, "publishers:\n  cam1: {token: short}\n")
    r = subprocess.run(
        [sys.executable, "-m", "snisd", "receive", "--config", str(cfg), "--no-decode"],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "publishers.cam1.token" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "WHIP endpoint at" not in r.stdout
