#!/usr/bin/env python3
"""Delivered quality over shaped links: what a viewer sees from snisd and from aiortc's own VP8
and H.264 senders, scored with VMAF against the source (docs/ADAPTATION.md, "Delivered quality").

    sudo python tools/bench_link_quality.py --clip CLIP --out DIR [--write-docs]
    sudo python tools/bench_link_quality.py --clip CLIP --quick        # smoke run, a few minutes

Per scenario (steady 300 k, 600 k, 1.2 M, 2.5 M, 5 Mbit/s and the step 2.5 M -> 300 k -> 2.5 M,
`--duration` s each, 30 by default) and per sender, in two fresh network namespaces joined by a
veth pair shaped with `tc tbf` (tools/bench_adaptation.py's Link: queue limit 400 ms):

* snisd: the daemon (`snisd --config`, camera `file:` the clip, default codec settings or
  `--snisd-config`) streams to `snisd receive`, which decodes, records and logs every picture
  it shows (source pts, the time, the sender's capture epoch, the clock offset estimate); the
  pictures are then rebuilt bit-exactly from the recording (checked against the logged hashes);
* aiortc VP8 / H.264: tools/aiortc_anchor.py, aiortc's MediaPlayer on the same clip into an
  RTCPeerConnection with only that codec (its REMB-driven rate), an aiortc receiver writing
  every decoded picture.

The clip (any file PyAV reads) is decoded once, scaled to `--size` (1280x720 by default), looped
to the length a run needs and stored losslessly (H.264 qp 0, 4:2:0), so both senders read the
same pictures that the score compares against. Scoring (tools/linkscore.py): source frame n
was captured at epoch + n/fps (sender clock); the clocks are aligned by the minimum-round-trip
ping over the control channel; the screen is sampled at every frame's deadline capture +
`--playout-ms` (400 by default, the same for every sender), showing the newest picture shown by
then, so a late or lost frame is the last shown picture repeated. VMAF (v0.6.1) of that sequence
over `--duration` s starting `--warmup` s after the first picture; glass-to-glass latency p50/p95
(capture -> shown); stalls (no new picture for > 200 ms beyond the frame interval); delivered
rate and utilisation at the link (bytes through the veth / link rate).

Needs root (ip netns, tc, nft). Only the namespaces it creates carry traffic; they are removed
after every run. It prints progress per run. On a shared machine it streams at nice 0 (a real-time
measurement: others' niced jobs must not decide how many frames an encoder manages) and prepares
and scores at nice 10 (`--stream-nice`, `--score-nice`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
sys.path.insert(0, str(ROOT))

import linkscore as ls  # noqa: E402
from bench_adaptation import Link, netns_unavailable  # noqa: E402  (the adaptation benchmark's link)

SENDERS = ("snisd", "vp8", "h264")
SENDER_TITLES = {"snisd": "snisd", "vp8": "aiortc VP8", "h264": "aiortc H.264"}


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    phases: tuple[tuple[float, float], ...]  # (share of the duration, link kbit/s)

    @property
    def steady_kbps(self) -> float | None:
        return self.phases[0][1] if len(self.phases) == 1 else None


SCENARIOS = {
    "300k": Scenario("300k", "300 kbit/s", ((1.0, 300),)),
    "600k": Scenario("600k", "600 kbit/s", ((1.0, 600),)),
    "1.2M": Scenario("1.2M", "1.2 Mbit/s", ((1.0, 1200),)),
    "2.5M": Scenario("2.5M", "2.5 Mbit/s", ((1.0, 2500),)),
    "5M": Scenario("5M", "5 Mbit/s", ((1.0, 5000),)),
    "step": Scenario("step", "2.5 M -> 300 k -> 2.5 Mbit/s", ((1 / 3, 2500), (1 / 3, 300), (1 / 3, 2500))),
}
QUICK = ("600k", "step")


# ---------------------------------------------------------------------------------------------
# The source: decoded once, looped to the length needed, kept raw (the reference) and lossless.


@dataclass
class Source:
    raw: Path  # I420 frames, the reference
    clip: Path  # the same frames, lossless H.264 (what the senders read)
    width: int
    height: int
    fps: float
    frames: int
    clip_frames: int  # frames of the original clip (the loop length)
    name: str

    def video(self) -> ls.RawVideo:
        return ls.RawVideo(self.raw, self.width, self.height)


def prepare_source(clip: str, size: str, seconds: float, tmp: Path, fps: float | None = None) -> Source:
    """Decode `clip` (scaled to `size` WxH, or its own size for ""), loop it to `seconds`, write
    the raw reference and the lossless clip; checks that the lossless clip decodes bit-exactly."""
    from rdlib import ffmpeg_exe

    from snisd.capture.file import iter_frames, probe

    w0, h0, rate = probe(clip)
    w, h = (int(v) for v in size.lower().split("x")) if size else (w0, h0)
    fps = float(fps or rate)
    pictures = [np.concatenate([f.y.ravel(), f.u.ravel(), f.v.ravel()]) for f in iter_frames(clip, 0, w, h)]
    need = int(math.ceil(seconds * fps))
    raw = tmp / "source.yuv"
    with open(raw, "wb") as f:
        for n in range(need):
            f.write(pictures[n % len(pictures)].tobytes())
    out = tmp / "source.mp4"
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "yuv420p",
        "-s",
        f"{w}x{h}",
        "-r",
        f"{fps:g}",
        "-i",
        str(raw),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-qp",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(int(fps * 2)),
        str(out),
    ]
    subprocess.run(cmd, check=True)
    src = Source(raw, out, w, h, fps, need, len(pictures), Path(clip).name)
    check = list(iter_frames(str(out), 3))
    vid = src.video()
    for n, fr in enumerate(check):
        if not np.array_equal(np.concatenate([fr.y.ravel(), fr.u.ravel(), fr.v.ravel()]), vid.frame(n)):
            raise RuntimeError(f"the lossless clip differs from the reference at frame {n}")
    return src


# ---------------------------------------------------------------------------------------------
# Runs: shape the link, start a receiver and a sender in their namespaces, stop after the window.


@dataclass
class RunData:
    sender: str
    scenario: Scenario
    dir: Path
    t_first_ms: float  # monotonic ms: the receiver showed its first picture
    phase_starts_ms: list[float]  # monotonic ms when each phase's rate was set (the first: before start)
    counters: list[tuple[float, int, int, int]]  # (monotonic ms, tx bytes, rx bytes, tbf drops)
    stop_ms: float
    notes: dict = field(default_factory=dict)


def env() -> dict[str, str]:
    """The environment of the processes started here: this checkout's snisd first."""
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _popen(cmd: list[str], tmp: Path, name: str, extra_env: dict | None = None) -> subprocess.Popen:
    e = env()
    if extra_env:
        e.update(extra_env)
    return subprocess.Popen(
        cmd, cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=open(tmp / f"{name}.err", "w"), text=True
    )


def set_niceness(value: int) -> None:
    """This process's nice value (children inherit it). The real-time part of a run (senders,
    receivers, the shaping) runs at `--stream-nice`, the batch part (decoding again, VMAF) at
    `--score-nice`: on a shared machine the niced jobs of others must not decide how many frames
    a sender manages to encode, and the heavy scoring must not crowd them out."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, value)
    except OSError as exc:  # lowering the nice value needs root, which the benchmark has
        print(f"bench_link_quality: cannot set nice {value}: {exc}", file=sys.stderr)


def _stop(p: subprocess.Popen | None, timeout: float = 20.0) -> str:
    """SIGTERM, wait, then SIGKILL; returns what it printed on stdout."""
    if p is None:
        return ""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            out, _ = p.communicate(timeout=timeout)
            return out or ""
        except subprocess.TimeoutExpired:
            p.kill()
    out, _ = p.communicate(timeout=10)
    return out or ""


def _counters(link: Link) -> tuple[int, int, int]:
    def js(cmd: list[str]) -> list:
        r = subprocess.run(cmd, capture_output=True, text=True)
        return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else []

    tx = js([*link.ns("tx"), "ip", "-s", "-j", "link", "show", "dev", link.tx_dev])
    rx = js([*link.ns("rx"), "ip", "-s", "-j", "link", "show", "dev", link.rx_dev])
    q = js([*link.ns("tx"), "tc", "-s", "-j", "qdisc", "show", "dev", link.tx_dev])
    txb = tx[0]["stats64"]["tx"]["bytes"] if tx else 0
    rxb = rx[0]["stats64"]["rx"]["bytes"] if rx else 0
    drops = sum(int(x.get("drops", 0)) for x in q)
    return txb, rxb, drops


def _first_line(path: Path, timeout: float, alive: list[subprocess.Popen], want: str = "") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            with open(path) as f:
                for line in f:
                    if want in line:
                        return True
        if any(p.poll() is not None for p in alive):
            return False
        time.sleep(0.1)
    return False


def run_one(sender: str, sc: Scenario, src: Source, tmp: Path, args, port: int) -> RunData:
    """Stream `src` with `sender` through scenario `sc`; the logs land in tmp."""
    tmp.mkdir(parents=True, exist_ok=True)
    link = Link().up()
    rx = tx = None
    try:
        link.set_loss(0)
        link.set_rate(sc.phases[0][1])
        phase_starts = [time.monotonic() * 1000.0]
        if sender == "snisd":
            log = tmp / "frames.jsonl"
            rec = tmp / "rec"
            rec.mkdir(exist_ok=True)
            rx = _popen(
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
                    "--frame-log",
                    str(log),
                    "--record-dir",
                    str(rec),
                    "--stats-interval",
                    "60",
                    "--log-level",
                    "warning",
                ],
                tmp,
                "rx",
            )
            assert rx.stdout is not None
            line = rx.stdout.readline()
            if "WHIP endpoint" not in line:
                raise RuntimeError(f"snisd receive did not start: {line!r} {(tmp / 'rx.err').read_text()[-1500:]}")
            cfg = _daemon_config(src, f"http://{link.rx_addr}:{port}/whip", args.snisd_config, tmp)
            tx = _popen(
                [*link.ns("tx"), sys.executable, "-m", "snisd", "--config", str(cfg)],
                tmp,
                "tx",
                {"SNISD_ICE_ADDRESSES": link.tx_addr},
            )
            first = log
        else:
            out = tmp / "rx"
            rx = _popen(
                [
                    *link.ns("rx"),
                    sys.executable,
                    str(TOOLS / "aiortc_anchor.py"),
                    "receive",
                    "--listen",
                    f"{link.rx_addr}:{port}",
                    "--ice-address",
                    link.rx_addr,
                    "--out",
                    str(out),
                ],
                tmp,
                "rx",
            )
            assert rx.stdout is not None
            line = rx.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(f"aiortc receiver did not start: {line!r} {(tmp / 'rx.err').read_text()[-1500:]}")
            tx = _popen(
                [
                    *link.ns("tx"),
                    sys.executable,
                    str(TOOLS / "aiortc_anchor.py"),
                    "send",
                    "--clip",
                    str(src.clip),
                    "--peer",
                    f"http://{link.rx_addr}:{port}/offer",
                    "--codec",
                    sender,
                    "--ice-address",
                    link.tx_addr,
                    "--log",
                    str(tmp / "sent.jsonl"),
                    "--fps",
                    f"{src.fps:g}",
                ],
                tmp,
                "tx",
            )
            first = out / "shown.jsonl"
        if not _first_line(first, 60, [rx, tx], "t_shown_ms"):
            raise RuntimeError(
                f"{sender}: no picture shown within 60 s: {(tmp / 'tx.err').read_text()[-1500:]} "
                f"{(tmp / 'rx.err').read_text()[-1500:]}"
            )
        t_first = time.monotonic() * 1000.0
        counters: list[tuple[float, int, int, int]] = []
        start = t_first + args.warmup * 1000.0
        changes = [start + sum(p[0] for p in sc.phases[:k]) * args.duration * 1000.0 for k in range(1, len(sc.phases))]
        stop_at = start + args.duration * 1000.0 + args.playout_ms + 1500.0
        k = 1
        tx_ended: float | None = None
        while True:
            now = time.monotonic() * 1000.0
            if k < len(sc.phases) and now >= changes[k - 1]:
                link.set_rate(sc.phases[k][1])
                phase_starts.append(time.monotonic() * 1000.0)
                k += 1
            counters.append((time.monotonic() * 1000.0, *_counters(link)))
            if now >= stop_at:
                break
            if tx_ended is None and tx.poll() is not None:
                # e.g. aiortc's connection failing on a saturated link: that is part of what the
                # viewer sees (the last picture stays), so the run goes on and is scored as is
                tx_ended = now - t_first
                print(
                    f"  {sender}: the sender ended after {tx_ended / 1000:.1f} s "
                    f"(exit {tx.returncode}): {(tmp / 'tx.err').read_text()[-300:]!r}",
                    flush=True,
                )
            time.sleep(max(0.0, 0.5 - (time.monotonic() * 1000.0 - now) / 1000.0))
        notes = {"tx_stdout": _stop(tx)[-2000:], "sender_ended_after_ms": tx_ended}
        tx = None
        notes["rx_stdout"] = _stop(rx)[-4000:]
        rx = None
        return RunData(sender, sc, tmp, t_first, phase_starts, counters, stop_at, notes)
    finally:
        _stop(tx)
        _stop(rx)
        link.down()


def _daemon_config(src: Source, peer: str, base: str | None, tmp: Path) -> Path:
    import yaml

    cfg: dict = yaml.safe_load(Path(base).read_text()) if base else {}
    cfg = cfg or {}
    cfg.setdefault("camera", {}).update({"source": f"file:{src.clip}", "width": src.width, "height": src.height})
    cfg.setdefault("transport", {}).update({"peer": peer})
    cfg.setdefault("log_level", "warning")
    path = tmp / "snisd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# ---------------------------------------------------------------------------------------------
# What each receiver showed: (source index, time) per picture, the pictures, the clocks.


@dataclass
class Showing:
    shown: list[ls.Shown]
    pictures: ls.RawVideo  # picture k of `shown` is frame k
    epoch_ms: float
    clock: ls.ClockSample
    info: dict


def showing_snisd(run: RunData, src: Source) -> Showing:
    """The snisd receiver's frame log, its pictures decoded again from the recording (the same
    decoder on the same frames; each picture's hash is checked against the log)."""
    from snisd.codec.decoder import Decoder
    from snisd.container import open_fmp4
    from snisd.errors import SnisError
    from snisd.transport.framelog import frame_hash

    recs = [json.loads(x) for x in (run.dir / "frames.jsonl").read_text().splitlines() if x.strip()]
    recs = [r for r in recs if "hash" in r]
    epochs = [r["capture_epoch_ms"] for r in recs if isinstance(r.get("capture_epoch_ms"), (int, float))]
    froms = sorted({str(r.get("capture_epoch_from")) for r in recs if r.get("capture_epoch_from")})
    samples = [
        ls.ClockSample(r["clock_offset_ms"], r["clock_rtt_ms"])
        for r in recs
        if isinstance(r.get("clock_offset_ms"), (int, float))
    ]
    if not epochs:
        raise RuntimeError("snisd: no capture epoch in the receiver's log (no sender report arrived)")
    pics = run.dir / "shown.yuv"
    shown: list[ls.Shown] = []
    mismatches = 0
    missing = 0
    with open(pics, "wb") as out:
        for sid in dict.fromkeys(r["stream"] for r in recs):
            mine = [r for r in recs if r["stream"] == sid]
            want = {r["pts_us"]: r for r in mine}
            path = run.dir / "rec" / f"{sid}.mp4"
            got: dict[int, tuple[bytes, str]] = {}
            reader = open_fmp4(path)
            seq = reader.sequence_header
            dec = Decoder(seq)
            for ef in reader:
                try:
                    pic = dec.decode(ef)
                except SnisError:
                    continue
                if ef.pts_us in want:
                    got[ef.pts_us] = (pic.y.tobytes() + pic.u.tobytes() + pic.v.tobytes(), frame_hash(pic))
            for r in mine:
                g = got.get(r["pts_us"])
                if g is None:
                    missing += 1
                    continue
                if g[1] != r["hash"]:
                    mismatches += 1
                out.write(g[0])
                shown.append(ls.Shown(round(r["pts_us"] * src.fps / 1e6), float(r["t_shown_ms"])))
    info = {
        "capture_epoch_from": froms,
        "streams": len({r["stream"] for r in recs}),
        "hash_mismatches": mismatches,
        "pictures_not_rebuilt": missing,
        "tiers_shown": _histogram([r["tiers"] for r in recs]),
        "bytes_shown": sum(int(r.get("bytes", 0)) for r in recs),
    }
    return Showing(shown, ls.RawVideo(pics, src.width, src.height), min(epochs), ls.best_clock_offset(samples), info)


def showing_aiortc(run: RunData, src: Source) -> Showing:
    """The aiortc receiver's pictures; source indices from the relative RTP timestamps and the
    start index found by comparing pictures with the source."""
    sent = [json.loads(x) for x in (run.dir / "sent.jsonl").read_text().splitlines() if x.strip()]
    got = [json.loads(x) for x in (run.dir / "rx" / "shown.jsonl").read_text().splitlines() if x.strip()]
    clock = [json.loads(x) for x in (run.dir / "rx" / "clock.jsonl").read_text().splitlines() if x.strip()]
    if not sent or not got:
        raise RuntimeError(f"aiortc: {len(sent)} frames sent, {len(got)} shown")
    sizes = {(g["w"], g["h"]) for g in got}
    if sizes != {(src.width, src.height)}:
        raise RuntimeError(f"aiortc: pictures of sizes {sorted(sizes)}, the source is {src.width}x{src.height}")
    # the source index of a frame from its pts (the player decodes the clip from frame 0 in order)
    epoch = ls.capture_epoch(
        [round(s["pts_90k"] * src.fps / 90000.0) for s in sent], [s["t_ms"] for s in sent], src.fps
    )
    rel = [round(g["rel_90k"] * src.fps / 90000.0) for g in got]
    vid = ls.RawVideo(run.dir / "rx" / "shown.yuv", src.width, src.height)
    ref = src.video()
    start, err, runner = ls.match_start(vid.luma, rel, ref.luma, ref.frames, max_start=int(2 * src.fps))
    shown = [ls.Shown(start + r, float(g["t_shown_ms"])) for r, g in zip(rel, got, strict=True)]
    info = {
        "start_index": start,
        "start_match_mad": round(err, 3),
        "runner_up_mad": round(runner, 3),
        "frames_sent": len(sent),
        "frames_skipped_at_source": sent[-1].get("skipped", 0),
    }
    return Showing(
        shown, vid, epoch, ls.best_clock_offset(ls.ClockSample(c["offset_ms"], c["rtt_ms"]) for c in clock), info
    )


def _histogram(values: list) -> dict[str, int]:
    h: dict[str, int] = {}
    for v in values:
        h[str(v)] = h.get(str(v), 0) + 1
    return dict(sorted(h.items()))


# ---------------------------------------------------------------------------------------------
# Scoring one run.


def score(run: RunData, sh: Showing, src: Source, args, log_dir: Path) -> dict:
    from rdlib import ffmpeg_exe

    fps = src.fps
    if not sh.shown:
        raise RuntimeError(f"{run.sender}: nothing was shown")
    first_idx = min(s.index for s in sh.shown)
    first = first_idx + round(args.warmup * fps)
    count = round(args.duration * fps)
    last = first + count - 1
    if last >= src.frames:
        raise RuntimeError(f"the scored window ends at frame {last}, the source has {src.frames}")
    off = sh.clock.offset_ms
    slots = ls.playout(sh.shown, first, last, sh.epoch_ms, fps, off, args.playout_ms)
    blank = ls.blank_frame(src.width, src.height)
    ref = src.video()
    pics = sh.pictures

    def dist(i: int) -> np.ndarray:
        k = slots[i]
        return blank if k == ls.BLANK else pics.frame(k)

    vm = ls.vmaf_sequence(
        ffmpeg_exe(),
        src.width,
        src.height,
        fps,
        dist,
        lambda i: ref.frame(first + i),
        count,
        log_dir / f"vmaf-{run.scenario.name}-{run.sender}.json",
        threads=args.vmaf_threads,
    )
    extra = {}
    for ms in args.also_playout_ms:  # the same run, scored with a later deadline
        alt = ls.playout(sh.shown, first, last, sh.epoch_ms, fps, off, ms)

        def dist_alt(i: int, alt=alt) -> np.ndarray:
            k = alt[i]
            return blank if k == ls.BLANK else pics.frame(k)

        v = ls.vmaf_sequence(
            ffmpeg_exe(),
            src.width,
            src.height,
            fps,
            dist_alt,
            lambda i: ref.frame(first + i),
            count,
            log_dir / f"vmaf-{run.scenario.name}-{run.sender}-{ms:g}.json",
            threads=args.vmaf_threads,
        )
        extra[f"{ms:g}"] = round(v["vmaf"], 2)
    lat = ls.latencies_ms(sh.shown, sh.epoch_ms, fps, off, first, last)
    st = ls.stalls(slots, fps, args.stall_ms / 1000.0)
    # the receiver-clock time of each slot's capture, to place slots and counters in phases
    cap = [sh.epoch_ms + n * 1000.0 / fps - off for n in range(first, last + 1)]
    t0, t1 = cap[0], cap[-1] + 1000.0 / fps
    phases = []
    bounds = run.phase_starts_ms[1:] + [math.inf]
    for p, ((_share, kbps), start) in enumerate(zip(run.scenario.phases, run.phase_starts_ms, strict=False)):
        a, b = (t0 if p == 0 else start), min(bounds[p], t1)
        idx = [i for i, c in enumerate(cap) if a <= c < b]
        rate = _rate(run.counters, a, b)
        phases.append(
            {
                "link_kbps": kbps,
                "from_s": round((a - t0) / 1000, 2),
                "to_s": round((b - t0) / 1000, 2),
                "vmaf": round(float(np.mean([vm["frames"][i] for i in idx])), 2) if idx else None,
                "delivered_kbps": rate["rx_kbps"],
                "utilisation": _util(rate["rx_kbps"], kbps),
                "tbf_drops": rate["drops"],
            }
        )
    whole = _rate(run.counters, t0, t1)
    mean_link = sum(share * kbps for share, kbps in run.scenario.phases)
    per_second = [round(float(np.mean(vm["frames"][i : i + round(fps)])), 2) for i in range(0, count, round(fps))]
    return {
        "sender": run.sender,
        "sender_ended_after_s": None
        if run.notes.get("sender_ended_after_ms") is None
        else round(run.notes["sender_ended_after_ms"] / 1000, 1),
        "scenario": run.scenario.name,
        "title": run.scenario.title,
        "link_kbps": run.scenario.steady_kbps,
        "vmaf": round(vm["vmaf"], 2),
        "vmaf_per_second": per_second,
        "vmaf_other_deadlines": extra,
        "latency_p50_ms": _r(ls.percentile(lat, 50)),
        "latency_p95_ms": _r(ls.percentile(lat, 95)),
        "stall_s": st.total_s,
        "stalls": st.count,
        "longest_stall_s": st.longest_s,
        "fresh_share": round(st.fresh_share, 4),
        "delivered_kbps": whole["rx_kbps"],
        "utilisation": _util(whole["rx_kbps"], mean_link),
        "tbf_drops": whole["drops"],
        "phases": phases,
        "pictures_shown": len(sh.shown),
        "pictures_in_window": len(lat),
        "slots": count,
        "window_frames": [first, last],
        "clock_offset_ms": round(off, 3),
        "clock_rtt_ms": round(sh.clock.rtt_ms, 3),
        "playout_ms": args.playout_ms,
        "libvmaf": vm["libvmaf_version"],
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "info": sh.info,
        "slot_index": [(-1 if k == ls.BLANK else sh.shown[k].index) for k in slots],
        "vmaf_frames": [round(v, 2) for v in vm["frames"]],
    }


def _r(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


def _util(kbps: float | None, link: float) -> float | None:
    return None if kbps is None else round(kbps / link, 3)


def _rate(counters: list[tuple[float, int, int, int]], a: float, b: float) -> dict:
    """Wire rate through the link between monotonic ms a and b (nearest counter samples)."""
    if len(counters) < 2:
        return {"rx_kbps": None, "tx_kbps": None, "drops": None}
    ca = min(counters, key=lambda c: abs(c[0] - a))
    cb = min(counters, key=lambda c: abs(c[0] - b))
    dt = (cb[0] - ca[0]) / 1000.0
    if dt <= 0.2:
        return {"rx_kbps": None, "tx_kbps": None, "drops": None}
    return {
        "rx_kbps": round(8 * (cb[2] - ca[2]) / dt / 1000, 1),
        "tx_kbps": round(8 * (cb[1] - ca[1]) / dt / 1000, 1),
        "drops": cb[3] - ca[3],
    }


# ---------------------------------------------------------------------------------------------
# Output.


def _f(v, nd: int = 1, unit: str = "") -> str:
    return "-" if v is None else f"{v:.{nd}f}{unit}"


def tables(results: list[dict]) -> str:
    by = {(r["scenario"], r["sender"]): r for r in results}
    scen = [s for s in SCENARIOS if any(r["scenario"] == s for r in results)]
    senders = [s for s in SENDERS if any(r["sender"] == s for r in results)]
    head = ["scenario"] + [f"VMAF {SENDER_TITLES[s]}" for s in senders]
    anchors = [s for s in senders if s != "snisd"]
    if "snisd" in senders:
        head += [f"gap vs {SENDER_TITLES[a]}" for a in anchors]
    head += [f"latency p50 / p95 ms {SENDER_TITLES[s]}" for s in senders]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sc in scen:
        cells = [SCENARIOS[sc].title]
        for s in senders:
            r = by.get((sc, s))
            cells.append(_f(r["vmaf"], 1) if r else "-")
        if "snisd" in senders:
            me = by.get((sc, "snisd"))
            for a in anchors:
                o = by.get((sc, a))
                cells.append(f"{me['vmaf'] - o['vmaf']:+.1f}" if me and o else "-")
        for s in senders:
            r = by.get((sc, s))
            cells.append(f"{_f(r['latency_p50_ms'], 0)} / {_f(r['latency_p95_ms'], 0)}" if r else "-")
        rows.append("| " + " | ".join(cells) + " |")
    alts = sorted({k for r in results for k in r.get("vmaf_other_deadlines", {})}, key=float)
    detail = [
        "| scenario | sender | VMAF | "
        + "".join(f"VMAF, deadline {float(k) / 1000:g} s | " for k in alts)
        + "fresh pictures | stalls (s, count, longest) | latency p50 / p95 ms | "
        "delivered kbit/s | utilisation | tbf drops | clock offset / rtt ms |",
        "|---|---|---|" + "---|" * len(alts) + "---|---|---|---|---|---|---|",
    ]
    for sc in scen:
        for s in senders:
            r = by.get((sc, s))
            if not r:
                continue
            other = r.get("vmaf_other_deadlines", {})
            detail.append(
                f"| {SCENARIOS[sc].title} | {SENDER_TITLES[s]} | {r['vmaf']:.1f} | "
                + "".join(f"{_f(other.get(k), 1)} | " for k in alts)
                + f"{100 * r['fresh_share']:.0f} % | "
                f"{r['stall_s']:.1f}, {r['stalls']}, {r['longest_stall_s']:.1f} | "
                f"{_f(r['latency_p50_ms'], 0)} / {_f(r['latency_p95_ms'], 0)} | "
                f"{_f(r['delivered_kbps'], 0)} | "
                f"{_f(r['utilisation'] and 100 * r['utilisation'], 0, ' %')} | {r['tbf_drops']} | "
                f"{r['clock_offset_ms']:.2f} / {r['clock_rtt_ms']:.2f} |"
            )
            if len(r["phases"]) > 1:
                for p in r["phases"]:
                    detail.append(
                        f"| | - {p['link_kbps']:g} kbit/s ({p['from_s']:g}-{p['to_s']:g} s) | "
                        f"{_f(p['vmaf'], 1)} | " + "| " * len(alts) + f"| | | {_f(p['delivered_kbps'], 0)} | "
                        f"{_f(p['utilisation'] and 100 * p['utilisation'], 0, ' %')} | {p['tbf_drops']} | |"
                    )
    return "\n".join(rows) + "\n\n" + "\n".join(detail)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    colors = {"snisd": "tab:red", "vp8": "tab:blue", "h264": "tab:green"}
    for s in SENDERS:
        pts = sorted((r["link_kbps"], r["vmaf"]) for r in results if r["sender"] == s and r["link_kbps"])
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=colors[s], label=SENDER_TITLES[s])
        step = [r for r in results if r["sender"] == s and r["scenario"] == "step"]
        if step:
            v = step[0]["vmaf_per_second"]
            bx.plot(range(len(v)), v, color=colors[s], label=f"{SENDER_TITLES[s]} (mean {step[0]['vmaf']:.1f})")
    ax.set_xscale("log")
    ax.set_ylim(0, 100)
    ax.set_xlabel("link rate, kbit/s")
    ax.set_ylabel("delivered VMAF")
    ax.set_title("steady links", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    step = [r for r in results if r["scenario"] == "step"]
    if step:
        for p in step[0]["phases"][1:]:
            bx.axvline(p["from_s"], color="grey", ls=":", lw=1)
        bx.set_title(SCENARIOS["step"].title, fontsize=10)
        bx.set_xlabel("s")
        bx.set_ylabel("VMAF per second")
        bx.set_ylim(0, 100)
        bx.grid(True, alpha=0.3)
        bx.legend(fontsize=7)
    else:
        bx.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


BEGIN, END = "<!-- bench_link_quality: begin -->", "<!-- bench_link_quality: end -->"


def command_line(args) -> str:
    cmd = "sudo python tools/bench_link_quality.py --clip CLIP"
    if args.quick:
        cmd += " --quick"
    else:
        if args.scenarios != ",".join(SCENARIOS):
            cmd += f" --scenarios {args.scenarios}"
        if args.duration != 30:
            cmd += f" --duration {args.duration:g}"
    if args.senders != ",".join(SENDERS):
        cmd += f" --senders {args.senders}"
    if args.playout_ms != 400:
        cmd += f" --playout-ms {args.playout_ms:g}"
    if args.also_playout_ms != [1000.0]:
        cmd += " --also-playout-ms " + (",".join(f"{v:g}" for v in args.also_playout_ms) or "''")
    if args.size != "1280x720":
        cmd += f" --size {args.size}"
    if args.snisd_config:
        cmd += " --snisd-config FILE"
    return cmd + " --out DIR --write-docs"


def section(results: list[dict], meta: dict, heading: str) -> str:
    lines = [
        BEGIN,
        heading,
        "",
        "    " + meta["command"],
        "",
        f"Clip: {meta['clip']} ({meta['width']}x{meta['height']}, {meta['fps']:g} fps, {meta['clip_frames']} frames, "
        f"looped), {meta['duration']:g} s scored per run after a {meta['warmup']:g}-s warm-up, playout deadline "
        f"capture + {meta['playout_ms']:g} ms; {meta['when']}, commit {meta['commit']}, load average during the runs "
        f"{meta['load']}. Written by the command above; the method and its limits: docs/ADAPTATION.md, "
        '"Delivered quality".',
        "",
        tables(results),
        "",
        "![delivered VMAF against link rate, and over time in the step scenario](img/link_quality.png)",
        END,
    ]
    return "\n".join(lines)


def write_docs(results: list[dict], meta: dict, plot_src: Path) -> None:
    img = ROOT / "docs" / "img"
    img.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plot_src, img / "link_quality.png")
    for name, heading in (
        ("BENCHMARKS.md", "## Delivered quality over shaped links (VMAF of what the viewer sees)"),
        ("ADAPTATION.md", "### Measured"),
    ):
        path = ROOT / "docs" / name
        old = path.read_text()
        body = section(results, meta, heading)
        if BEGIN in old and END in old:
            head, rest = old.split(BEGIN, 1)
            new = head + body + rest.split(END, 1)[1]
        else:
            new = old.rstrip("\n") + "\n\n" + body + "\n"
        path.write_text(new)


def summary_line(r: dict) -> str:
    return (
        f"{r['title']:<30} {SENDER_TITLES[r['sender']]:<13} VMAF {r['vmaf']:5.1f}  latency p50/p95 "
        f"{_f(r['latency_p50_ms'], 0)}/{_f(r['latency_p95_ms'], 0)} ms  stalls {r['stall_s']:.1f} s  "
        f"delivered {_f(r['delivered_kbps'], 0)} kbit/s  fresh {100 * r['fresh_share']:.0f} %"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", help="any video file PyAV reads (required unless --from-results)")
    ap.add_argument("--size", default="1280x720", help="WxH the clip is scaled to ('' keeps its size)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {','.join(SCENARIOS)}")
    ap.add_argument("--senders", default=",".join(SENDERS), help=f"comma-separated, of {','.join(SENDERS)}")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds scored per run")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds after the first picture before scoring")
    ap.add_argument("--playout-ms", type=float, default=400.0, help="display deadline after capture")
    ap.add_argument(
        "--also-playout-ms",
        type=lambda v: [float(x) for x in v.split(",") if x],
        default=[1000.0],
        help="also score with these deadlines (comma-separated ms; '' for none)",
    )
    ap.add_argument("--stall-ms", type=float, default=200.0, help="a freeze this much beyond one frame is a stall")
    ap.add_argument("--quick", action="store_true", help=f"smoke run: {', '.join(QUICK)}, 8 s each")
    ap.add_argument("--snisd-config", help="base daemon config (YAML); the camera and the peer are set here")
    ap.add_argument("--vmaf-threads", type=int, default=2)
    ap.add_argument("--stream-nice", type=int, default=0, help="nice value while streaming (real time)")
    ap.add_argument("--score-nice", type=int, default=10, help="nice value for preparing and scoring")
    ap.add_argument("--out", default=str(ROOT / "build" / "link_quality"), help="results.json, table.md, plot")
    ap.add_argument("--write-docs", action="store_true", help="also write docs/BENCHMARKS.md and docs/ADAPTATION.md")
    ap.add_argument("--keep", action="store_true", help="keep every run's logs and pictures under --out")
    ap.add_argument("--from-results", metavar="JSON", help="only redo the table, plot and docs from a results.json")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.from_results:
        data = json.loads(Path(args.from_results).read_text())
        return _finish(data["results"], data["meta"], out, args)
    if not args.clip:
        ap.error("--clip is required")
    if args.quick:
        args.scenarios, args.duration = ",".join(QUICK), 8.0
    scenarios = [SCENARIOS[s] for s in args.scenarios.split(",")]
    senders = args.senders.split(",")
    for s in senders:
        if s not in SENDERS:
            ap.error(f"unknown sender {s!r}")
    why = netns_unavailable()
    if why:
        print(f"bench_link_quality: {why}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)  # a stopped benchmark still removes its namespaces
    set_niceness(args.score_nice)
    work = Path(tempfile.mkdtemp(prefix="link_quality_"))
    try:
        t0 = time.time()
        # the daemon's source starts before the session does: room for set-up and the first picture
        src = prepare_source(args.clip, args.size, args.warmup + args.duration + 25.0, work)
        print(
            f"source {src.name}: {src.width}x{src.height} {src.fps:g} fps, {src.clip_frames} frames looped to "
            f"{src.frames} ({time.time() - t0:.0f} s)",
            flush=True,
        )
        results = []
        loads = []
        failures: list[str] = []
        total = len(scenarios) * len(senders)
        n = 0
        for sc in scenarios:
            for s in senders:
                n += 1
                t = time.time()
                run_dir = work / f"{sc.name}-{s}"
                try:
                    set_niceness(args.stream_nice)
                    try:
                        run = run_one(s, sc, src, run_dir, args, port=18950 + n)
                    finally:
                        set_niceness(args.score_nice)
                    sh = showing_snisd(run, src) if s == "snisd" else showing_aiortc(run, src)
                    r = score(run, sh, src, args, run_dir)
                except Exception as exc:
                    print(f"[{n}/{total}] {sc.title} {SENDER_TITLES[s]}: FAILED: {exc}", flush=True)
                    if args.keep:
                        shutil.copytree(run_dir, out / "runs" / run_dir.name, dirs_exist_ok=True)
                    failures.append(f"{sc.name} {s}: {str(exc)[:300]}")
                    shutil.rmtree(run_dir, ignore_errors=True)
                    continue  # one run failing is reported ("-" in the table), the others still run
                results.append(r)
                loads.append(r["load_avg"][0])
                print(f"[{n}/{total}] {summary_line(r)}  ({time.time() - t:.0f} s)", flush=True)
                if args.keep:
                    shutil.copytree(
                        run_dir, out / "runs" / run_dir.name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.yuv")
                    )
                shutil.rmtree(run_dir, ignore_errors=True)
                (out / "results.partial.json").write_text(json.dumps(results))
        meta = {
            "command": command_line(args),
            "clip": src.name,
            "width": src.width,
            "height": src.height,
            "fps": src.fps,
            "clip_frames": src.clip_frames,
            "duration": args.duration,
            "warmup": args.warmup,
            "playout_ms": args.playout_ms,
            "stall_ms": args.stall_ms,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": _commit(),
            "load": f"{min(loads):.1f}-{max(loads):.1f}" if loads else "?",
            "seconds": round(time.time() - t0),
            "failures": failures,
        }
        return _finish(results, meta, out, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _finish(results: list[dict], meta: dict, out: Path, args) -> int:
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    md = tables(results)
    (out / "table.md").write_text(md + "\n")
    plot(results, out / "link_quality.png")
    print(md, flush=True)
    if args.write_docs:
        write_docs(results, meta, out / "link_quality.png")
    return 0


def _terminate(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)


def _commit() -> str:
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "?"


if __name__ == "__main__":
    sys.exit(main())
