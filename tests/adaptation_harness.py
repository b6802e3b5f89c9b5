"""The link harness of the adaptation tests and benchmarks: two network namespaces joined by a veth
pair, the link shaped on the sender's side with `tc tbf` (rate changed during a run) and random
loss added on the receiver's input with nftables (`numgen random`); the receiver is `snisd receive
--no-decode` in one namespace, the sender this module's `live` command in the other: the synthetic
camera (or a clip) encoded live under rate control and sent by a WhipSender. `run_scenario` runs
one scenario and `analyse` measures it (raw utilisation = bytes sent / link capacity, base-tier
delay, stalls, reactions to capacity steps, clean picture after loss).

Used by tests/test_adaptation.py (short pass/fail scenarios) and tools/bench_adaptation.py (the
long ones, docs/ADAPTATION.md). Needs root (ip netns, tc, nft); only the namespaces it creates
carry traffic, and they are removed at the end.

    python tests/adaptation_harness.py live --peer URL --ice-address ADDR --duration S --log FILE
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# the live stream: synthetic camera (or a clip, --media) encoded as it is sent, rate control on
LIVE_SIZE, LIVE_FPS, LIVE_TIERS, LIVE_TIER_RATIO = "1280x720", 15.0, 3, 3  # the daemon's codec.live_tier_ratio


def _frames(size: str, fps: float, media: str | None, count: int):
    """The frames to stream: the synthetic scene (rendered on the fly), or `count` frames of a clip
    played forwards then backwards (no cut at the loop point), scaled to `size`."""
    from snisd.capture.synthetic import SyntheticScene

    w, h = (int(v) for v in size.lower().split("x"))
    if not media:
        scene = SyntheticScene(w, h, fps)
        return scene.render, None
    from snisd.capture.file import iter_frames

    clip = list(iter_frames(media, max_frames=count, width=w, height=h))
    loop = clip + clip[-2:0:-1]
    return (lambda i: loop[i % len(loop)]), len(loop)


def live(args: argparse.Namespace) -> int:
    """(Runs in the sender's namespace.) Encode the stream live at its frame rate under rate control
    and send it to --peer for --duration s; one JSON line per written frame to --log; final sender
    stats on stdout."""
    sys.path.insert(0, str(ROOT))
    import logging

    from snisd.codec.encoder import Encoder, EncoderConfig
    from snisd.codec.presets import tuning_for
    from snisd.codec.ratecontrol import RateControlledEncoder, RatePolicy
    from snisd.frame import Frame
    from snisd.transport.ice import restrict_host_addresses
    from snisd.transport.sender import WhipSender

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("snisd.transport.sender").setLevel(logging.INFO)
    w, h = (int(v) for v in args.size.lower().split("x"))
    fps = args.fps
    render, _ = _frames(args.size, fps, args.media, int(args.clip_frames))
    enc = Encoder(
        EncoderConfig(
            w,
            h,
            int(round(fps * 1000)),
            1000,
            tiers=args.tiers,
            tier_ratio=args.tier_ratio,
            threads=args.threads,
            tuning=tuning_for(live=True),
        )
    )  # the daemon's with a peer
    fixed = args.qp is not None
    rc = None if fixed else RateControlledEncoder(enc, args.start_kbps * 1e3, RatePolicy(budget_ms=args.budget_ms))
    restrict_host_addresses([args.ice_address])
    sender = WhipSender(args.peer, enc.sequence_header, request_keyframe=enc.request_keyframe)
    if rc is not None:
        sender.on_target = rc.set_target
    sender.start()
    first = render(0)
    enc.encode(Frame(first.y, first.u, first.v, 0), qp=40)  # warm the analysis model up (not sent)
    enc.request_keyframe()
    deadline = time.monotonic() + 20
    while sender.state != "connected" and time.monotonic() < deadline:
        time.sleep(0.02)
    print("READY", time.time(), flush=True)
    log = open(args.log, "w", buffering=1)
    n_frames = int(args.duration * fps)
    t0 = time.monotonic()
    late = 0
    for i in range(n_frames):
        wait = t0 + i / fps - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        elif wait < -1.0 / fps:
            late += 1
        src = render(i)
        frame = Frame(src.y, src.u, src.v, int(i * 1e6 / fps))
        t_enc = time.monotonic()
        ef = enc.encode(frame, qp=args.qp) if fixed else rc.encode(frame)  # type: ignore[union-attr]
        enc_ms = (time.monotonic() - t_enc) * 1e3
        est = sender.estimator
        log.write(
            json.dumps(
                {
                    "i": i,
                    "frame_no": ef.index & 0xFFFF,
                    "t": time.time(),
                    "key": ef.keyframe,
                    "switch": bool(ef.switch_point),
                    "sizes": [len(c) for c in ef.tiers],
                    "max_tiers": sender.max_tiers,
                    "bytes_sent": sum(sender.bytes_sent),
                    "tier_sent": list(sender.tier_sent),
                    "estimate_bps": est.value if est else None,
                    "est_state": est.state if est else None,
                    "received_bps": est.received_bps if est else None,
                    "target_bps": sender.target_bps,
                    "qp": rc.control.last_qp if rc else args.qp,
                    "encode_ms": round(enc_ms, 1),
                }
            )
            + "\n"
        )
        sender.write(ef)
    time.sleep(0.5)
    sender.close()
    log.close()
    stats = sender.stats()
    stats["late_frames"] = late
    print(json.dumps(stats), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# Link: two namespaces, a veth pair, tbf on the sender side, nft loss on the receiver side.


def netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (ip netns, tc, nft)"
    for tool in ("ip", "tc", "nft"):
        if shutil.which(tool) is None:
            return f"no {tool}(8) command"
    return None


class Link:
    def __init__(self, tag: str | None = None) -> None:
        tag = tag or str(os.getpid() % 100000)
        self.tx, self.rx = f"snisa-tx-{tag}", f"snisa-rx-{tag}"
        self.tx_dev, self.rx_dev = f"vsatx{tag}", f"vsarx{tag}"
        self.tx_addr, self.rx_addr = "10.231.78.1", "10.231.78.2"
        self.loss = 0.0
        self.rate_kbit: float | None = None
        self.queue_ms = 400  # the bottleneck buffer (tbf latency): a deep one, as on cellular and DSL links

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
        return r

    def up(self) -> Link:
        try:
            for c in (
                ["ip", "netns", "add", self.tx],
                ["ip", "netns", "add", self.rx],
                ["ip", "link", "add", self.tx_dev, "type", "veth", "peer", "name", self.rx_dev],
                ["ip", "link", "set", self.tx_dev, "netns", self.tx],
                ["ip", "link", "set", self.rx_dev, "netns", self.rx],
                ["ip", "-n", self.tx, "addr", "add", f"{self.tx_addr}/24", "dev", self.tx_dev],
                ["ip", "-n", self.rx, "addr", "add", f"{self.rx_addr}/24", "dev", self.rx_dev],
                ["ip", "-n", self.tx, "link", "set", self.tx_dev, "up"],
                ["ip", "-n", self.rx, "link", "set", self.rx_dev, "up"],
                ["ip", "-n", self.tx, "link", "set", "lo", "up"],
                ["ip", "-n", self.rx, "link", "set", "lo", "up"],
            ):
                self._run(*c)
            self._run("ip", "netns", "exec", self.rx, "nft", "add table inet snisloss")
            self._run(
                "ip",
                "netns",
                "exec",
                self.rx,
                "nft",
                "add chain inet snisloss input { type filter hook input priority 0 ; policy accept ; }",
            )
        except Exception:
            self.down()
            raise
        return self

    def down(self) -> None:
        for ns in (self.tx, self.rx):
            self._run("ip", "netns", "del", ns, check=False)
        self._run("ip", "link", "del", self.tx_dev, check=False)

    def __enter__(self) -> Link:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    def set_rate(self, kbit: float | None) -> None:
        """Token bucket on the sender's side: `kbit` kbit/s (None: unshaped), queue of `queue_ms`.

        A rate change keeps what the queue holds (`tc qdisc change`), as a real link whose capacity
        changes does; `replace` would drop it and stall SCTP in retransmission timeouts."""
        if kbit is None:
            self._run("ip", "netns", "exec", self.tx, "tc", "qdisc", "del", "dev", self.tx_dev, "root", check=False)
        else:
            burst = max(6000, int(kbit * 1000 / 8 * 0.02))
            verb = "change" if self.rate_kbit is not None else "replace"
            self._run(
                "ip",
                "netns",
                "exec",
                self.tx,
                "tc",
                "qdisc",
                verb,
                "dev",
                self.tx_dev,
                "root",
                "tbf",
                "rate",
                f"{int(kbit)}kbit",
                "burst",
                str(burst),
                "latency",
                f"{self.queue_ms}ms",
            )
        self.rate_kbit = kbit

    def set_loss(self, percent: float) -> None:
        """Random loss of UDP packets arriving in the receiver's namespace."""
        self._run("ip", "netns", "exec", self.rx, "nft", "flush chain inet snisloss input")
        if percent >= 100:
            self._run("ip", "netns", "exec", self.rx, "nft", "add rule inet snisloss input meta l4proto udp drop")
        elif percent > 0:
            self._run(
                "ip",
                "netns",
                "exec",
                self.rx,
                "nft",
                f"add rule inet snisloss input meta l4proto udp numgen random mod 1000 < {int(percent * 10)} drop",
            )
        self.loss = percent

    def ns(self, which: str) -> list[str]:
        return ["ip", "netns", "exec", self.tx if which == "tx" else self.rx]


# ---------------------------------------------------------------------------------------------
# Scenarios.


@dataclass
@dataclass
class Scenario:
    name: str
    title: str
    phases: list[tuple[float, float | None, float]]  # (duration s, rate kbit/s or None, loss %)
    extra: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return sum(p[0] for p in self.phases)


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@dataclass
class Stream:
    """What the sender encodes live: size, rate, tiers, the frame budget of rate control (or a
    fixed qp), and where its pictures come from (None: the synthetic camera)."""

    size: str = LIVE_SIZE
    fps: float = LIVE_FPS
    tiers: int = LIVE_TIERS
    tier_ratio: int = LIVE_TIER_RATIO
    budget_ms: float = 300.0
    start_kbps: float = 150.0
    qp: int | None = None
    media: str | None = None
    clip_frames: int = 150
    threads: int = 1

    def args(self) -> list[str]:
        out = [
            "--size",
            self.size,
            "--fps",
            str(self.fps),
            "--tiers",
            str(self.tiers),
            "--tier-ratio",
            str(self.tier_ratio),
            "--budget-ms",
            str(self.budget_ms),
            "--start-kbps",
            str(self.start_kbps),
            "--clip-frames",
            str(self.clip_frames),
            "--threads",
            str(self.threads),
        ]
        if self.qp is not None:
            out += ["--qp", str(self.qp)]
        if self.media:
            out += ["--media", self.media]
        return out


def run_scenario(sc: Scenario, stream: Stream, tmp: Path, link: Link | None = None, port: int = 18900) -> dict:
    """Run one scenario on `link` (made here when None); returns the analysis (with the raw series)."""
    own = link is None
    link = link or Link().up()
    rx_log, tx_log = tmp / f"{sc.name}-rx.jsonl", tmp / f"{sc.name}-tx.jsonl"
    for p in (rx_log, tx_log):
        if p.exists():
            p.unlink()
    rx = tx = None
    applied: list[tuple[float, float | None, float]] = []
    try:
        link.set_loss(0)
        link.set_rate(sc.phases[0][1])
        rx = subprocess.Popen(
            [
                *link.ns("rx"),
                sys.executable,
                "-m",
                "snisd",
                "receive",
                "--listen",
                f"{link.rx_addr}:{port}",
                "--allow-open",
                "--ice-address",
                link.rx_addr,
                "--no-decode",
                "--frame-log",
                str(rx_log),
                "--stats-interval",
                "60",
                "--hold-ms",
                "150",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=open(tmp / f"{sc.name}-rx.err", "w"),
            text=True,
        )
        assert rx.stdout is not None
        line = rx.stdout.readline()
        if "WHIP endpoint" not in line:
            raise RuntimeError(f"receiver did not start: {line!r} {(tmp / f'{sc.name}-rx.err').read_text()[-1500:]}")
        tx = subprocess.Popen(
            [
                *link.ns("tx"),
                sys.executable,
                str(Path(__file__).resolve()),
                "live",
                "--peer",
                f"http://{link.rx_addr}:{port}/whip",
                "--ice-address",
                link.tx_addr,
                "--duration",
                str(sc.duration),
                "--log",
                str(tx_log),
                *stream.args(),
            ],
            cwd=ROOT,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=open(tmp / f"{sc.name}-tx.err", "w"),
            text=True,
        )
        assert tx.stdout is not None
        line = tx.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"sender did not start: {line!r} {(tmp / f'{sc.name}-tx.err').read_text()[-1500:]}")
        t0 = time.time()
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.extend(tx.stdout), daemon=True)  # type: ignore[union-attr]
        reader.start()
        t = 0.0
        for dur, rate, loss in sc.phases:
            time.sleep(max(0.0, t0 + t - time.time()))
            if rate != link.rate_kbit:
                link.set_rate(rate)
            if loss != link.loss:
                link.set_loss(loss)
            applied.append((time.time() - t0, rate, loss))
            t += dur
        tx.wait(sc.duration + 60)
        reader.join(5)
        time.sleep(1.0)
        lines = [x for x in out if x.startswith("{")]
        if tx.returncode != 0 or not lines:
            raise RuntimeError(f"sender failed ({tx.returncode}): {(tmp / f'{sc.name}-tx.err').read_text()[-2000:]}")
        stats = json.loads(lines[-1])
    finally:
        for p in (tx, rx):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        if own:
            link.down()
    sent = [json.loads(x) for x in tx_log.read_text().splitlines() if x.strip()]
    got = [json.loads(x) for x in rx_log.read_text().splitlines() if x.strip()] if rx_log.exists() else []
    return analyse(sc, t0, applied, sent, got, stats)


# ---------------------------------------------------------------------------------------------
# Analysis.


def _pct(v: list[float], q: float) -> float | None:
    if not v:
        return None
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def _median(v: list[float]) -> float | None:
    return _pct(v, 50)


def analyse(
    sc: Scenario, t0: float, applied: list, sent: list[dict], got: list[dict], stats: dict, bin_s: float = 0.5
) -> dict:
    """Rates, delays, stalls and reactions from the sender's and the receiver's logs.

    Utilisation is raw: bytes the sender handed to its channels / link capacity."""
    import bisect

    for a, b in pairwise(sent):
        d = [y - x for x, y in zip(a["tier_sent"], b["tier_sent"], strict=True)]
        a["sent_tiers"] = sum(1 for v in d if v > 0) if d and d[0] == 1 else a["max_tiers"]
    if sent:
        sent[-1]["sent_tiers"] = sent[-1]["max_tiers"]
    by_no: dict[int, dict] = {}
    for r in sent:
        by_no[r["frame_no"]] = r
    end = sc.duration
    ts = [r["t"] - t0 for r in sent]
    cum = [r["bytes_sent"] for r in sent]

    def sent_rate(a: float, b: float) -> float:
        """kbit/s handed to the channels in [a, b)."""
        i, j = bisect.bisect_left(ts, a), bisect.bisect_left(ts, b)
        j = min(j, len(cum) - 1)
        i = min(i, j)
        if j <= i or ts[j] <= ts[i]:
            return 0.0
        return 8 * (cum[j] - cum[i]) / (ts[j] - ts[i]) / 1e3

    rel = []  # (t released, frame_no, received tiers, bytes, base delay s)
    for r in got:
        s = by_no.get(r["frame_no"])
        if s is None:
            continue
        rel.append(
            (
                r["t_released"] - t0,
                r["frame_no"],
                r["received_tiers"],
                sum(s["sizes"][: r["received_tiers"]]),
                r["t_released"] - s["t"],
            )
        )
    rel.sort()
    nb = int(end / bin_s) + 1
    series: dict[str, list] = {
        "t": [k * bin_s for k in range(nb)],
        "link": [],
        "sent": [],
        "delivered": [],
        "tiers_sent": [],
        "estimate": [],
        "target": [],
        "qp": [],
        "base_delay_ms": [],
    }
    for k in range(nb):
        a, b = k * bin_s, (k + 1) * bin_s
        link = None
        for at, rate, _ in applied:
            if at <= a + 1e-6:
                link = rate
        series["link"].append(link)
        series["sent"].append(round(sent_rate(a, b), 1))
        series["delivered"].append(round(sum(x[3] for x in rel if a <= x[0] < b) * 8 / bin_s / 1e3, 1))
        inbin = [r for r in sent if a <= r["t"] - t0 < b]
        series["tiers_sent"].append(max(r["max_tiers"] for r in inbin) if inbin else None)
        est = [r["estimate_bps"] for r in inbin if r.get("estimate_bps")]
        tgt = [r["target_bps"] for r in inbin if r.get("target_bps")]
        series["estimate"].append(round(_median(est) / 1e3, 1) if est else None)
        series["target"].append(round(_median(tgt) / 1e3, 1) if tgt else None)
        qps = [r["qp"] for r in inbin if r.get("qp") is not None]
        series["qp"].append(_median(qps))
        dl = [x[4] * 1e3 for x in rel if a <= x[0] < b]
        series["base_delay_ms"].append(round(max(dl), 1) if dl else None)
    warm = 2.0
    base_delay = [x[4] * 1e3 for x in rel if x[0] >= warm]
    times = [0.5] + [x[0] for x in rel] + [end]  # the first frame is due right away
    stalls = [(round(a, 2), round(b - a, 2)) for a, b in pairwise(times) if b - a > 1.0]
    phases = []
    for n, (at, rate, loss) in enumerate(applied):
        stop = applied[n + 1][0] if n + 1 < len(applied) else end
        a = at + (stop - at) / 2
        s_rate = sent_rate(a, stop)
        d_rate = sum(x[3] for x in rel if a <= x[0] < stop) * 8 / max(1e-6, stop - a) / 1e3
        inph = [r for r in sent if a <= r["t"] - t0 < stop]
        mt = [r["max_tiers"] for r in inph]
        tier_mode = max(set(mt), key=mt.count) if mt else None
        ps = [r["sizes"] for r in inph if not r["key"] and not r["switch"]]
        fps = len(inph) / max(1e-6, stop - a)
        tier_kbps = (
            [round(8 * sum(sum(z[: k + 1]) for z in ps) / len(ps) * fps / 1e3, 1) for k in range(len(ps[0]))]
            if ps
            else []
        )
        dl = [x[4] * 1e3 for x in rel if a <= x[0] < stop]
        est = [r["estimate_bps"] for r in inph if r.get("estimate_bps")]
        qps = [r["qp"] for r in inph if r.get("qp") is not None]
        phases.append(
            {
                "start": round(at, 2),
                "link_kbps": rate,
                "loss_pct": loss,
                "sent_kbps": round(s_rate, 1),
                "delivered_kbps": round(d_rate, 1),
                "utilisation": round(s_rate / rate, 3) if rate else None,
                "tiers_mode": tier_mode,
                "p_tier_kbps": tier_kbps,
                "estimate_kbps": round(_median(est) / 1e3, 1) if est else None,
                "qp_median": _median(qps),
                "qp_range": [min(qps), max(qps)] if qps else None,
                "base_delay_ms_p95_2nd_half": _pct(dl, 95),
                "base_delay_ms_max_2nd_half": max(dl) if dl else None,
            }
        )
    steps = []
    for n in range(1, len(applied)):
        at, rate, _ = applied[n]
        prev = applied[n - 1][1]
        if rate is None or prev is None or rate == prev:
            continue
        rec = {"at": round(at, 2), "from_kbps": prev, "to_kbps": rate}
        if rate < prev:  # first 0.5-s window starting after the drop whose sent rate is below the link
            below = next((w / 20 for w in range(0, 200) if sent_rate(at + w / 20, at + w / 20 + 0.5) < rate), None)
            rec["sent_below_link_after_s"] = None if below is None else round(below + 0.5, 1)
        else:  # the end of the first 1-s window after the rise that sends >= 80 % of the new link
            used = next(
                (w / 20 for w in range(0, 400) if sent_rate(at + w / 20, at + w / 20 + 1.0) >= 0.8 * rate), None
            )
            rec["used_after_s"] = None if used is None else round(used + 1.0, 1)
        steps.append(rec)
    clean = clean_picture_times(sent, got, t0)
    keys = [r["t"] - t0 for r in sent if r["key"]]
    return {
        "scenario": sc.name,
        "title": sc.title,
        "frames_sent": stats["frames_sent"],
        "frames_released": len(rel),
        "base_delay_ms_p50": _pct(base_delay, 50),
        "base_delay_ms_p95": _pct(base_delay, 95),
        "stalls": stalls,
        "phases": phases,
        "steps": steps,
        "keyframe_requests": stats["keyframe_requests"],
        "keyframes_at": [round(k, 2) for k in keys],
        "base_dropped": stats["base_dropped"],
        "tier_dropped": stats["tier_dropped"],
        "late_frames": stats.get("late_frames"),
        "encode_ms_p50": _median([r["encode_ms"] for r in sent]),
        "encode_ms_p95": _pct([r["encode_ms"] for r in sent], 95),
        "clean_after_loss_s": clean,
        "series": series,
    }


def clean_picture_times(sent: list[dict], got: list[dict], t0: float) -> dict:
    """Replays the decoder's tier bookkeeping on the released frames (a missing tier is not used
    again until the next switch point, a base gap waits for a keyframe) and measures, for every
    impairment, the time from the first impaired frame to the next clean one (all tiers the
    sender sent for it decodable)."""
    by_no = {r["frame_no"]: r for r in sent}
    valid, expect, bad_since, durations, events = 0, None, None, [], []
    for r in sorted(got, key=lambda x: x["t_released"]):
        s = by_no.get(r["frame_no"])
        if s is None:
            continue
        sent_tiers = max(1, min(s.get("sent_tiers", s["max_tiers"]), len(s["sizes"])))
        got_tiers = r["received_tiers"]
        gap = expect is not None and r["frame_no"] != expect
        if s["key"]:
            ok_tiers = got_tiers
        elif gap or valid == 0:
            ok_tiers = 0  # reference missing: nothing decodes until a keyframe
        elif s["switch"]:
            ok_tiers = got_tiers
        else:
            ok_tiers = min(got_tiers, valid)
        valid = ok_tiers
        expect = (r["frame_no"] + 1) & 0xFFFF
        t = r["t_released"] - t0
        if bad_since is None and (gap or got_tiers < sent_tiers or ok_tiers == 0):
            bad_since = t  # a loss (a missing tier, a missing frame): the picture is impaired
        elif bad_since is not None and ok_tiers >= sent_tiers:
            durations.append(t - bad_since)
            events.append((round(bad_since, 3), round(t, 3)))
            bad_since = None
    if bad_since is not None:  # never recovered before the end
        durations.append(float("inf"))
        events.append((round(bad_since, 3), None))
    return {
        "events": len(durations),
        "p50": _pct(durations, 50),
        "max": max(durations) if durations else None,
        "events_list": events,
    }


def live_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the live sender of a link scenario (run in the sender's namespace)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("live")
    lp.add_argument("--peer", required=True)
    lp.add_argument("--ice-address", required=True)
    lp.add_argument("--duration", type=float, required=True)
    lp.add_argument("--log", required=True)
    add_stream_args(lp)
    return live(ap.parse_args(argv))


def add_stream_args(ap: argparse.ArgumentParser) -> None:
    """The options of a `Stream`."""
    ap.add_argument("--size", default=LIVE_SIZE)
    ap.add_argument("--fps", type=float, default=LIVE_FPS)
    ap.add_argument("--tiers", type=int, default=LIVE_TIERS)
    ap.add_argument("--tier-ratio", type=int, default=LIVE_TIER_RATIO)
    ap.add_argument("--budget-ms", type=float, default=300.0, help="rate control's frame budget")
    ap.add_argument("--start-kbps", type=float, default=150.0)
    ap.add_argument("--qp", type=int, default=None, help="a fixed qp instead of rate control")
    ap.add_argument("--media", default=None, help="a video file to stream (default: the synthetic camera)")
    ap.add_argument("--clip-frames", type=int, default=150, help="frames of --media played back and forth")
    ap.add_argument("--threads", type=int, default=1)


if __name__ == "__main__":
    sys.exit(live_main())
