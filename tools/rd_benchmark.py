#!/usr/bin/env python3
"""Rate-distortion benchmark: SNIS vs x264 / x265 / VP8 on the shared test clips.

Quick run (first 60 frames, baselines only):

    python tools/rd_benchmark.py --media DIR --frames 60 --no-snis --out /tmp/rd_quick.md

Full run (all frames, all codecs; writes docs/rd_results.md and docs/rd_results.json):

    python tools/rd_benchmark.py --media DIR

See docs/RD.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))
sys.path.insert(0, str(REPO))

from rdlib import (
    VMAF_MODEL,
    StepFailed,
    ffmpeg_cmd,
    ffmpeg_exe,
    ivf_payload_bytes,
    make_reference,
    psnr_y,
    run,  # noqa: E402
    vmaf,
    y4m_frame_count,
    y4m_info,
)

from snisd.bdrate import bd_rate, rate_at_quality  # noqa: E402

ANCHOR = "x264-ultrafast"
CLIPS = {"vtest": "vtest.avi", "cockatoo": "cockatoo.mp4", "bikes": "bikes.mp4"}
VMAF_TARGETS = (85.0, 70.0)
VARIANT_ARGS: dict[str, list[str]] = {}  # SNIS variant name -> extra `snisd encode` arguments (--variant)


# ----------------------------------------------------------------------------- codecs


@dataclass
class Baseline:
    name: str
    label: str
    encoder_args: list[str]
    qarg: str  # how the sweep parameter is passed ("-crf", "qminmax", or "vbv": a rate)
    points: list[int]
    container: str  # ffmpeg muxer of the elementary stream
    ext: str
    bsf: str | None = None

    def encode_cmd(
        self, ref: Path, out: Path, q: float, gop: int, kbps: float = 0.0, budget_ms: float = 300.0
    ) -> list[str]:
        cmd = ffmpeg_cmd("-i", str(ref), "-an", *self.encoder_args, "-g", str(gop))
        if self.qarg == "vbv":
            # a constant target with a buffer of budget_ms at that rate: the live sender's constraint
            cmd += ["-b:v", f"{kbps:.2f}k", "-maxrate", f"{kbps:.2f}k", "-bufsize", f"{kbps * budget_ms / 1000:.2f}k"]
        elif self.qarg == "qminmax":
            # fixed quantizer: pin qmin = qmax and give the rate control a bitrate it never hits
            cmd += ["-qmin", str(q), "-qmax", str(q), "-b:v", "200M"]
        else:
            cmd += [self.qarg, str(q)]
        if self.bsf:
            cmd += ["-bsf:v", self.bsf]
        return cmd + ["-f", self.container, str(out)]

    def decode_cmd(self, stream: Path, out: Path, fps: float) -> list[str]:
        cmd = ffmpeg_cmd("-threads", "1")
        if self.container in ("h264", "hevc"):
            cmd += ["-framerate", f"{fps:g}"]
        return cmd + [
            "-i",
            str(stream),
            "-fps_mode",
            "passthrough",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "yuv4mpegpipe",
            str(out),
        ]

    def stream_bytes(self, stream: Path) -> int:
        if self.container == "ivf":
            return ivf_payload_bytes(stream)[0]
        return stream.stat().st_size


def x264_live(
    preset: str, qarg: str = "-crf", qs: list[int] | None = None, name: str = "", title: str = ""
) -> Baseline:
    """x264 at `preset`, zerolatency, one thread. It writes an SEI with its version and option
    string into the first frame; it is not needed for decoding, so the filter_units BSF drops SEI
    NAL units (type 6)."""
    return Baseline(
        name or f"x264-{preset}",
        title or f"x264 {preset} zerolatency",
        ["-c:v", "libx264", "-preset", preset, "-tune", "zerolatency", "-threads", "1"],
        qarg,
        [24, 28, 32, 36, 40, 44] if qs is None else qs,
        "h264",
        "264",
        "filter_units=remove_types=6",
    )


BASELINES = [
    x264_live("ultrafast"),
    x264_live("veryfast"),
    x264_live("medium"),
    # x264 medium under the live constraint (only with --snis-bpp, at the same targets): average
    # rate and VBV max rate the target, a buffer of --budget-ms at it (x264's VBV).
    x264_live("medium", "vbv", [], "x264-medium-vbv", "x264 medium zerolatency, VBV (target rate, --budget-ms buffer)"),
    # x265: single thread (no thread pool, one frame thread), no info SEI; zerolatency
    # (no B-frames, no lookahead) because the comparison is about live streaming.
    Baseline(
        "x265-medium",
        "x265 medium zerolatency",
        [
            "-c:v",
            "libx265",
            "-preset",
            "medium",
            "-tune",
            "zerolatency",
            "-threads",
            "1",
            "-x265-params",
            "pools=none:frame-threads=1:info=0:log-level=error",
        ],
        "-crf",
        [26, 30, 34, 38, 42, 46],
        "hevc",
        "265",
    ),
    # VP8 as WebRTC runs it: realtime deadline, no lag / alt-ref, fixed quantizer sweep.  In
    # realtime mode a positive cpu-used lets libvpx pick the speed from measured encode times
    # (results would depend on machine load); a negative value fixes speed 6, as WebRTC does.
    Baseline(
        "vp8-rt",
        "VP8 realtime cpu-used -6 (fixed speed 6)",
        [
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-cpu-used",
            "-6",
            "-threads",
            "1",
            "-lag-in-frames",
            "0",
            "-auto-alt-ref",
            "0",
        ],
        "qminmax",
        [16, 28, 40, 50, 57, 63],
        "ivf",
        "ivf",
    ),
]


# ----------------------------------------------------------------------------- results


@dataclass
class Point:
    codec: str
    param: str
    kbps: float
    bytes: int
    vmaf: float
    psnr_y: float
    frames: int
    enc_ms_per_frame: float | None
    dec_ms_per_frame: float | None
    extra: dict = field(default_factory=dict)


class Collector:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.points: dict[str, dict[str, list[Point]]] = {}
        self.labels: dict[str, str] = {}
        self.failures: list[dict] = []
        self.notes: list[str] = []
        self.libvmaf_version = "?"

    def add(self, clip: str, p: Point, label: str) -> None:
        with self.lock:
            self.points.setdefault(clip, {}).setdefault(p.codec, []).append(p)
            self.labels.setdefault(p.codec, label)

    def fail(self, clip: str, codec: str, param: str, msg: str) -> None:
        with self.lock:
            self.failures.append({"clip": clip, "codec": codec, "param": param, "error": msg})
        log(f"FAILED  {clip} {codec} {param}: {msg}")


_log_lock = threading.Lock()


def log(msg: str) -> None:
    with _log_lock:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class ClipRef:
    name: str
    path: Path  # reference y4m
    width: int
    height: int
    fps: float
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.fps

    def kbps_at(self, bpp: float) -> float:
        """The rate of `bpp` bits per pixel at this clip's size and frame rate (--snis-bpp targets)."""
        return bpp * self.width * self.height * self.fps / 1000

    @property
    def gop(self) -> int:
        return max(1, round(10 * self.fps))  # 10 s, the SNIS CLI's default keyframe interval


def measure(clip: ClipRef, decoded: Path, work: Path, tag: str, vmaf_threads: int) -> tuple[float, float, int, str]:
    """(VMAF, PSNR-Y, frames, libvmaf version) of a decoded y4m vs the clip's reference."""
    info = y4m_info(decoded)
    if (info.width, info.height) != (clip.width, clip.height):
        raise StepFailed(f"decoded size {info.width}x{info.height}, reference is {clip.width}x{clip.height}")
    n = y4m_frame_count(decoded)
    if n != clip.frames:
        raise StepFailed(f"decoded {n} frames, reference has {clip.frames}")
    # PSNR-Y (numpy, mostly I/O) runs in a thread while ffmpeg computes VMAF
    with ThreadPoolExecutor(max_workers=1) as ex:
        fut = ex.submit(psnr_y, clip.path, decoded)
        v = vmaf(clip.path, decoded, work / f"{tag}.vmaf.json", threads=vmaf_threads)
        p, _ = fut.result()
    return v["vmaf"], p, n, v["libvmaf_version"]


def run_baseline(col: Collector, clip: ClipRef, bl: Baseline, q: float, work: Path, args) -> None:
    tag = f"{clip.name}_{bl.name}_q{q}"
    stream = work / f"{tag}.{bl.ext}"
    dec = work / f"{tag}.y4m"
    try:
        r_enc = run(
            bl.encode_cmd(clip.path, stream, q, clip.gop, clip.kbps_at(q), args.budget_ms), f"{bl.name} encode q={q}"
        )
        nbytes = bl.stream_bytes(stream)
        r_dec = run(bl.decode_cmd(stream, dec, clip.fps), f"{bl.name} decode q={q}")
        vm, ps, n, ver = measure(clip, dec, work, tag, args.vmaf_threads)
    except StepFailed as exc:
        col.fail(clip.name, bl.name, f"q={q}", str(exc))
        return
    finally:
        if not args.keep:
            dec.unlink(missing_ok=True)
    col.libvmaf_version = ver
    kbps = nbytes * 8 / clip.duration / 1000
    param = {"qminmax": "q", "vbv": "bpp"}.get(bl.qarg, bl.qarg.lstrip("-"))
    col.add(
        clip.name,
        Point(
            bl.name,
            f"{param}={q:g}",
            kbps,
            nbytes,
            vm,
            ps,
            n,
            1000 * r_enc.cpu / n,
            1000 * r_dec.cpu / n,
            {"enc_wall_ms_per_frame": 1000 * r_enc.wall / n, "dec_wall_ms_per_frame": 1000 * r_dec.wall / n},
        ),
        bl.label,
    )
    log(f"{clip.name:9s} {bl.name:15s} q={q:<5g} {kbps:9.1f} kbps  VMAF {vm:6.2f}  PSNR-Y {ps:6.2f}")


# ----------------------------------------------------------------------------- SNIS


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def snis_cli(args) -> list[str]:
    """The SNIS command line prefix: `<this python> -m snisd` unless --snis-cli overrides it."""
    if args.snis_cli:
        return shlex.split(args.snis_cli)
    return [sys.executable, "-m", "snisd"]


def snis_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def parse_report(stdout: str) -> dict:
    lines = [ln for ln in stdout.strip().splitlines() if ln.strip()]
    if not lines:
        raise StepFailed("SNIS encode printed nothing (expected a JSON report on its last line)")
    try:
        rep = json.loads(lines[-1])
        tiers = [int(b) for b in rep["bytes_per_tier"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise StepFailed(
            f"SNIS encode: last stdout line is not the expected JSON report ({exc}): {lines[-1][:200]!r}"
        ) from None
    rep["bytes_per_tier"] = tiers
    return rep


def run_snis(
    col: Collector,
    clip: ClipRef,
    name: str,
    label: str,
    q: float,
    tiers: int,
    decode_tiers: list[int],
    model: Path | None,
    synth: Path | None,
    work: Path,
    args,
) -> None:
    """Encode once with `tiers` tiers, decode with --tiers k for each k in decode_tiers.

    `q` is the fixed qp, or with --snis-bpp the target in bits per pixel (rate control)."""
    if args.snis_bpp:
        rate_args = ["--bitrate", f"{clip.kbps_at(q):.2f}", "--frame-budget-ms", f"{args.budget_ms:g}"]
        param = f"bpp={q:g}"
    else:
        rate_args, param = ["--qp", str(q)], f"qp={q}"
    tag = f"{clip.name}_{name}_q{q}_K{tiers}"
    stream = work / f"{tag}.snis"
    cli = snis_cli(args)
    cmd = cli + [
        "encode",
        str(clip.path),
        "-o",
        str(stream),
        *rate_args,
        "--tiers",
        str(tiers),
        "--frames",
        str(clip.frames),
    ]
    if model:
        cmd += ["--model", str(model)]
    cmd += VARIANT_ARGS.get(name, [])
    try:
        r_enc = run(
            cmd, f"SNIS encode ({name} {param} tiers={tiers})", cwd=REPO, env=snis_env(), timeout=args.snis_timeout
        )
        rep = parse_report(r_enc.stdout)
    except StepFailed as exc:
        col.fail(clip.name, name, param, str(exc))
        if not args.keep:
            _remove(stream)
        return
    if len(rep["bytes_per_tier"]) < max(decode_tiers):
        col.fail(clip.name, name, param, f"report has {len(rep['bytes_per_tier'])} tiers, expected {tiers}")
        if not args.keep:
            _remove(stream)
        return
    n_enc = int(rep.get("frames", clip.frames)) or clip.frames
    for k in decode_tiers:
        codec = f"{name}-K{tiers}" + (f"-t{k}" if tiers > 1 else "")
        dec = work / f"{tag}_t{k}.y4m"
        dcmd = cli + ["decode", str(stream), "-o", str(dec), "--tiers", str(k)]
        if synth:
            dcmd += ["--model", str(synth)]
        try:
            r_dec = run(
                dcmd,
                f"SNIS decode ({name} {param} tiers={k}/{tiers})",
                cwd=REPO,
                env=snis_env(),
                timeout=args.snis_timeout,
            )
            vm, ps, n, ver = measure(clip, dec, work, f"{tag}_t{k}", args.vmaf_threads)
        except StepFailed as exc:
            col.fail(clip.name, codec, param, str(exc))
            continue
        finally:
            if not args.keep:
                dec.unlink(missing_ok=True)
        col.libvmaf_version = ver
        nbytes = sum(rep["bytes_per_tier"][:k])
        kbps = nbytes * 8 / clip.duration / 1000
        col.add(
            clip.name,
            Point(
                codec,
                param,
                kbps,
                nbytes,
                vm,
                ps,
                n,
                1000 * r_enc.cpu / n_enc,
                1000 * r_dec.cpu / n,
                {
                    "bytes_per_tier": rep["bytes_per_tier"],
                    "tiers_decoded": k,
                    "encoder_reported_seconds": rep.get("seconds"),
                    "enc_wall_ms_per_frame": 1000 * r_enc.wall / n_enc,
                    "dec_wall_ms_per_frame": 1000 * r_dec.wall / n,
                    "snis_file_bytes": _size(stream),
                },
            ),
            f"{label}" + (f", decode {k} of {tiers} tiers" if tiers > 1 else ""),
        )
        log(f"{clip.name:9s} {codec:15s} {param:9s}{kbps:9.1f} kbps  VMAF {vm:6.2f}  PSNR-Y {ps:6.2f}")
    if not args.keep:
        _remove(stream)


# ----------------------------------------------------------------------------- report


def curve(points: list[Point], metric: str) -> tuple[list[float], list[float]]:
    return [p.kbps for p in points], [getattr(p, metric) for p in points]


def fmt(v: float | None, nd: int = 1, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:+.{nd}f} %" if pct else f"{v:.{nd}f}"


def bd(points: dict[str, list[Point]], anchor: str, test: str, metric: str) -> float:
    if anchor not in points or test not in points:
        return math.nan
    ra, qa = curve(points[anchor], metric)
    rb, qb = curve(points[test], metric)
    return bd_rate(ra, qa, rb, qb)


def mean_or_none(vals: list[float | None]) -> float | None:
    v = [x for x in vals if x is not None and math.isfinite(x)]
    return sum(v) / len(v) if v else None


def summarize(col: Collector, codec_order: list[str], snis_pairs: list[tuple[str, str, str]]) -> dict:
    summary: dict = {}
    for clip, pts in col.points.items():
        s: dict = {}
        for c in codec_order:
            if c not in pts:
                continue
            pts[c].sort(key=lambda p: p.kbps)
            r, q = curve(pts[c], "vmaf")
            s[c] = {f"kbps_at_vmaf_{int(t)}": rate_at_quality(r, q, t) for t in VMAF_TARGETS}
            s[c]["bd_rate_vmaf_vs_anchor"] = bd(pts, ANCHOR, c, "vmaf")
            s[c]["bd_rate_psnr_vs_anchor"] = bd(pts, ANCHOR, c, "psnr_y")
            s[c]["enc_ms_per_frame"] = mean_or_none([p.enc_ms_per_frame for p in pts[c]])
            s[c]["dec_ms_per_frame"] = mean_or_none([p.dec_ms_per_frame for p in pts[c]])
        pairs = {}
        for title, anchor, test in snis_pairs:
            pairs[title] = {
                "anchor": anchor,
                "test": test,
                "bd_rate_vmaf": bd(pts, anchor, test, "vmaf"),
                "bd_rate_psnr": bd(pts, anchor, test, "psnr_y"),
            }
        summary[clip] = {"codecs": s, "comparisons": pairs}
    return summary


def _json_clean(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _json_clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_clean(v) for v in o]
    return o


def write_outputs(
    col: Collector, summary: dict, codec_order: list[str], snis_pairs, meta: dict, md_path: Path, json_path: Path
) -> None:
    md_path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "meta": meta,
        "summary": summary,
        "failures": col.failures,
        "notes": col.notes,
        "points": {
            clip: {c: [vars(p) for p in sorted(v, key=lambda p: p.kbps)] for c, v in pts.items()}
            for clip, pts in col.points.items()
        },
    }
    json_path.write_text(json.dumps(_json_clean(data), indent=1) + "\n")

    L: list[str] = []
    L.append("# Rate-distortion results\n")
    L.append(f"Generated by `tools/rd_benchmark.py` on {meta['date']} ({meta['run_kind']}).  ")
    L.append(
        f"Frames per clip: {meta['frames_desc']}. VMAF: libvmaf {meta['libvmaf_version']}, model "
        f"{meta['vmaf_model']} (mean over frames). PSNR-Y: mean over frames of per-frame luma PSNR. "
        f"Rates are elementary-stream payload bits / clip duration. BD-rates are Bjøntegaard deltas "
        f"(monotone piecewise cubic in log-rate over the overlapping quality range) against "
        f"`{ANCHOR}`; negative = fewer bits for the same quality. Times are CPU time (user + system) of "
        f"the single-threaded encoder / decoder process per frame, mean over the sweep (wall times are "
        f"in the JSON; {meta['jobs']} job(s) in parallel on {meta['cpus']} CPUs). "
        f"See docs/RD.md.\n"
    )
    all_clips = list(col.points)
    # cross-clip mean BD-rate
    if len(all_clips) > 1:
        L.append("## Mean over clips\n")
        L.append(f"| codec | BD-rate VMAF vs {ANCHOR} | BD-rate PSNR-Y vs {ANCHOR} | clips |")
        L.append("|---|---:|---:|---:|")
        for c in codec_order:
            bv = [summary[cl]["codecs"][c]["bd_rate_vmaf_vs_anchor"] for cl in all_clips if c in summary[cl]["codecs"]]
            bp = [summary[cl]["codecs"][c]["bd_rate_psnr_vs_anchor"] for cl in all_clips if c in summary[cl]["codecs"]]
            if bv:
                L.append(
                    f"| {c} | {fmt(mean_or_none(bv), 1, True)} | {fmt(mean_or_none(bp), 1, True)} | "
                    f"{len([x for x in bv if x is not None and math.isfinite(x)])} |"
                )
        L.append("")
    for clip in all_clips:
        pts = col.points[clip]
        info = meta["clips"].get(clip, {})
        L.append(
            f"## {clip} ({info.get('width')}x{info.get('height')}, {info.get('fps'):g} fps, "
            f"{info.get('frames')} frames)\n"
        )
        L.append(
            "| codec | kbps @ VMAF 85 | kbps @ VMAF 70 | BD-rate VMAF | BD-rate PSNR-Y | "
            "enc CPU ms/frame | dec CPU ms/frame |"
        )
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        for c in codec_order:
            if c not in summary[clip]["codecs"]:
                continue
            s = summary[clip]["codecs"][c]
            L.append(
                f"| {c} | {fmt(s['kbps_at_vmaf_85'])} | {fmt(s['kbps_at_vmaf_70'])} | "
                f"{fmt(s['bd_rate_vmaf_vs_anchor'], 1, True)} | {fmt(s['bd_rate_psnr_vs_anchor'], 1, True)} | "
                f"{fmt(s['enc_ms_per_frame'])} | {fmt(s['dec_ms_per_frame'])} |"
            )
        L.append("")
        comps = summary[clip]["comparisons"]
        shown = {k: v for k, v in comps.items() if v["anchor"] in pts and v["test"] in pts}
        if shown:
            L.append("| SNIS comparison | anchor | test | BD-rate VMAF | BD-rate PSNR-Y |")
            L.append("|---|---|---|---:|---:|")
            for title, v in shown.items():
                L.append(
                    f"| {title} | {v['anchor']} | {v['test']} | {fmt(v['bd_rate_vmaf'], 1, True)} | "
                    f"{fmt(v['bd_rate_psnr'], 1, True)} |"
                )
            L.append("")
        L.append("<details><summary>RD points</summary>\n")
        L.append("| codec | setting | kbps | VMAF | PSNR-Y (dB) |")
        L.append("|---|---|---:|---:|---:|")
        for c in codec_order:
            for p in sorted(pts.get(c, []), key=lambda p: p.kbps):
                L.append(f"| {c} | {p.param} | {p.kbps:.1f} | {p.vmaf:.2f} | {p.psnr_y:.2f} |")
        L.append("\n</details>\n")
    L.append("## Codecs\n")
    for c in codec_order:
        if c in col.labels:
            L.append(f"- `{c}`: {col.labels[c]}")
    L.append("")
    for line in meta.get("commands", []):
        L.append(f"- {line}")
    if col.notes:
        L.append("\n## Notes\n")
        L.extend(f"- {n}" for n in col.notes)
    if col.failures:
        L.append("\n## Failures\n")
        for f in col.failures:
            first = f["error"].splitlines()[0]
            L.append(f"- {f['clip']} / {f['codec']} / {f['param']}: {first}")
    L.append("")
    md_path.write_text("\n".join(L))


# ----------------------------------------------------------------------------- main


def int_list(s: str) -> list[int]:
    return [int(x) for x in s.replace(" ", "").split(",") if x]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--media",
        required=True,
        help="directory with the test clips (vtest.avi, cockatoo.mp4, bikes.mp4; provenance in docs/RD.md)",
    )
    ap.add_argument(
        "--clips",
        default=",".join(CLIPS),
        help=f"comma-separated clip names or file names (default: {','.join(CLIPS)})",
    )
    ap.add_argument("--frames", type=int, default=0, help="use only the first N frames of each clip (0: all)")
    ap.add_argument(
        "--codecs",
        default=",".join(b.name for b in BASELINES if b.qarg != "vbv"),
        help="comma-separated baselines to run (default: all but x264-medium-vbv, which needs "
        "--snis-bpp); 'none' for SNIS only",
    )
    ap.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="CODEC=Q1,Q2,...",
        help="override the CRF/QP sweep of a baseline or of 'snis', e.g. --param x265-medium=22,27,32",
    )
    ap.add_argument("--no-snis", action="store_true", help="skip all SNIS measurements")
    ap.add_argument("--snis-tiers", type=int, default=3, help="tier count K of the scalable SNIS encodes (default 3)")
    ap.add_argument("--snis-qps", default="26,30,34,38,42,46", help="SNIS --qp sweep (default 26,30,34,38,42,46)")
    ap.add_argument(
        "--snis-bpp",
        default="",
        metavar="B1,B2,...",
        help="rate-controlled SNIS sweep instead of --snis-qps: targets in bits per pixel (kbps = bpp x "
        "width x height x fps / 1000), each passed to `snisd encode --bitrate`",
    )
    ap.add_argument(
        "--budget-ms",
        type=float,
        default=300.0,
        help="with --snis-bpp: SNIS's frame budget and the VBV buffer of x264-medium-vbv, in ms at the "
        "target rate (default 300, the daemon's codec.frame_budget_ms)",
    )
    ap.add_argument("--no-single-tier", action="store_true", help="skip the single-tier SNIS encodes")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="also encode K tiers with extra encoder arguments, e.g. --variant 'sw0=--switch-int 0'; "
        "reported as snis_NAME and compared with the single tier",
    )
    ap.add_argument("--no-default-snis", action="store_true", help="skip the default K-tier SNIS encodes")
    ap.add_argument("--no-ablation", action="store_true", help="skip the DCT-8 ablation encodes")
    ap.add_argument(
        "--ablation-all-tiers",
        action="store_true",
        help="decode the DCT-8 ablation at every tier count (default: full tiers only)",
    )
    ap.add_argument(
        "--ablation-args",
        default="",
        metavar="ARGS",
        help="extra `snisd encode` arguments of the DCT-8 ablation (e.g. '--tune obmc=1', to compare "
        "it with a --variant of the same arguments)",
    )
    ap.add_argument("--dct-model", default="models/dct8.tflite", help="ablation analysis model (repo-relative)")
    ap.add_argument("--dct-synthesis", default="models/dct8_synthesis.npz", help="ablation synthesis weights")
    ap.add_argument(
        "--snis-cli",
        default=None,
        help="command that runs the SNIS CLI (default: this Python with -m snisd, from the repo root)",
    )
    ap.add_argument("--snis-timeout", type=float, default=3600, help="seconds before a SNIS encode/decode is abandoned")
    ap.add_argument("--jobs", type=int, default=2, help="measurements run in parallel (default 2)")
    ap.add_argument("--anchor", default=ANCHOR, help=f"baseline the BD-rates are against (default {ANCHOR})")
    ap.add_argument("--vmaf-threads", type=int, default=2, help="libvmaf n_threads (default 2)")
    ap.add_argument(
        "--out",
        default=None,
        help="Markdown output (default docs/rd_results.md); the JSON with all "
        "raw points goes next to it with the suffix .json",
    )
    ap.add_argument("--workdir", default=None, help="scratch directory (default: a new temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep streams and decoded y4m files in the workdir")
    return ap.parse_args(argv)


# options whose values are paths of the machine that ran the benchmark
_PATH_OPTIONS = {"--media": "DIR", "--out": None, "--workdir": None}


def portable_args(argv: list[str]) -> list[str]:
    """The arguments as the results record them: the clip directory as DIR, no output or work
    paths (they name the machine the run was made on, not the measurement)."""
    out: list[str] = []
    it = iter(argv)
    for a in it:
        name, eq, value = a.partition("=")
        if name in _PATH_OPTIONS:
            if not eq:
                next(it, None)
            if _PATH_OPTIONS[name] is not None:
                out += [name, _PATH_OPTIONS[name]]
            continue
        out.append(a)
    return out


def main(argv=None) -> int:
    global ANCHOR
    args = parse_args(argv)
    ANCHOR = args.anchor
    t_start = time.time()
    media = Path(args.media)
    out_md = Path(args.out) if args.out else REPO / "docs" / "rd_results.md"
    out_json = out_md.with_suffix(".json")
    overrides: dict[str, list[int]] = {}
    for spec in args.param:
        k, _, v = spec.partition("=")
        overrides[k.strip()] = int_list(v)

    try:
        ffmpeg = ffmpeg_exe()
        ver = run([ffmpeg, "-hide_banner", "-version"], "ffmpeg -version").stdout
        ffmpeg_version = ver.splitlines()[0] if ver else "?"
    except Exception as exc:  # noqa: BLE001 - anything here means no usable ffmpeg
        print(f"error: cannot run the imageio-ffmpeg ffmpeg: {exc}", file=sys.stderr)
        return 2

    wanted = [c for c in args.codecs.split(",") if c and c != "none"]
    known = {b.name: b for b in BASELINES}
    for c in wanted:
        if c not in known:
            print(f"error: unknown codec {c!r}; known: {', '.join(known)}", file=sys.stderr)
            return 2
    baselines = [known[c] for c in wanted]
    for b in baselines:
        if b.name in overrides:
            b.points = overrides[b.name]
    snis_qps: list = overrides.get("snis", int_list(args.snis_qps))
    if args.snis_bpp:
        snis_qps = [float(v) for v in args.snis_bpp.split(",") if v.strip()]
    for b in baselines:
        if b.qarg == "vbv":
            if not args.snis_bpp:
                print(f"error: {b.name} runs at the targets of --snis-bpp, which is not given", file=sys.stderr)
                return 2
            b.points = snis_qps

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="rd_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"ffmpeg: {ffmpeg_version}; scratch: {work}")

    col = Collector()
    clips: list[ClipRef] = []
    meta_clips = {}
    for spec in [c for c in args.clips.split(",") if c]:
        fname = CLIPS.get(spec, spec)
        name = Path(fname).stem
        src = media / fname
        if not src.exists():
            log(f"SKIPPED clip {name}: {src} not found")
            col.failures.append({"clip": name, "codec": "-", "param": "-", "error": f"clip file {fname} not found"})
            continue
        ref = work / f"{name}_ref.y4m"
        try:
            info = make_reference(src, ref, args.frames)
            n = y4m_frame_count(ref)
        except StepFailed as exc:
            col.fail(name, "reference", "-", str(exc))
            continue
        clips.append(ClipRef(name, ref, info.width, info.height, info.fps, n))
        meta_clips[name] = {"file": fname, "width": info.width, "height": info.height, "fps": info.fps, "frames": n}
        log(f"reference {name}: {info.width}x{info.height} {info.fps:g} fps, {n} frames")

    # ---- task list
    tasks = []
    codec_order = [b.name for b in baselines]
    snis_pairs: list[tuple[str, str, str]] = []
    if not args.no_snis:
        K = max(1, args.snis_tiers)
        full = f"snis-K{K}" + (f"-t{K}" if K > 1 else "")
        codec_order += [f"snis-K{K}-t{k}" for k in range(1, K + 1)] if K > 1 else [full]
        dct_model = (REPO / args.dct_model) if not Path(args.dct_model).is_absolute() else Path(args.dct_model)
        dct_synth = (
            (REPO / args.dct_synthesis) if not Path(args.dct_synthesis).is_absolute() else Path(args.dct_synthesis)
        )
        if not args.no_default_snis:
            for clip in clips:
                for q in snis_qps:
                    tasks.append(
                        (
                            run_snis,
                            (
                                col,
                                clip,
                                "snis",
                                "SNIS-896 (shipped model)",
                                q,
                                K,
                                list(range(1, K + 1)),
                                None,
                                None,
                                work,
                                args,
                            ),
                        )
                    )
        for spec in args.variant:
            vname, _, vargs = spec.partition("=")
            name = f"snis_{vname.strip()}"
            VARIANT_ARGS[name] = shlex.split(vargs)
            codec_order += [f"{name}-K{K}-t{k}" for k in range(1, K + 1)]
            snis_pairs.append(
                (f"scalability overhead of {vname.strip()} ({vargs.strip()})", "snis-K1", f"{name}-K{K}-t{K}")
            )
            for clip in clips:
                for q in snis_qps:
                    tasks.append(
                        (
                            run_snis,
                            (
                                col,
                                clip,
                                name,
                                f"SNIS-896 {vargs.strip()}",
                                q,
                                K,
                                list(range(1, K + 1)),
                                None,
                                None,
                                work,
                                args,
                            ),
                        )
                    )
        if not args.no_single_tier and K > 1:
            codec_order.append("snis-K1")
            snis_pairs.append(("scalability overhead (K tiers vs single tier)", "snis-K1", full))
            for clip in clips:
                for q in snis_qps:
                    tasks.append(
                        (run_snis, (col, clip, "snis", "SNIS-896 single tier", q, 1, [1], None, None, work, args))
                    )
        if not args.no_ablation:
            if args.ablation_args:
                VARIANT_ARGS["dct8"] = shlex.split(args.ablation_args)
            if dct_model.exists() and dct_synth.exists():
                dk = list(range(1, K + 1)) if args.ablation_all_tiers else [K]
                codec_order += [f"dct8-K{K}" + (f"-t{k}" if K > 1 else "") for k in dk]
                snis_pairs.append(
                    ("learned vs DCT-8 ablation (full tiers)", f"dct8-K{K}" + (f"-t{K}" if K > 1 else ""), full)
                )
                for clip in clips:
                    for q in snis_qps:
                        tasks.append(
                            (
                                run_snis,
                                (
                                    col,
                                    clip,
                                    "dct8",
                                    "SNIS with DCT-8 transform (ablation)",
                                    q,
                                    K,
                                    dk,
                                    dct_model,
                                    dct_synth,
                                    work,
                                    args,
                                ),
                            )
                        )
            else:
                msg = f"ablation skipped: {args.dct_model} or {args.dct_synthesis} not found"
                log(msg)
                col.notes.append(msg)
    for clip in clips:
        for b in baselines:
            for q in b.points:
                tasks.append((run_baseline, (col, clip, b, q, work, args)))
    # run the slowest kinds first so parallel jobs finish together
    tasks.sort(key=lambda t: 0 if t[0] is run_snis else 1)

    # A missing or broken SNIS CLI would fail every task the same way: probe it once with a
    # 2-frame encode + decode and skip all SNIS work with one clear message if that fails.
    if clips and any(t[0] is run_snis for t in tasks):
        probe = work / "probe.snis"
        try:
            out = run(
                snis_cli(args)
                + [
                    "encode",
                    str(clips[0].path),
                    "-o",
                    str(probe),
                    "--qp",
                    "30",
                    "--tiers",
                    str(max(1, args.snis_tiers)),
                    "--frames",
                    "2",
                ],
                "SNIS CLI probe (2-frame encode)",
                cwd=REPO,
                env=snis_env(),
                timeout=600,
            ).stdout
            parse_report(out)
            run(
                snis_cli(args) + ["decode", str(probe), "-o", str(work / "probe.y4m"), "--tiers", "1"],
                "SNIS CLI probe (decode)",
                cwd=REPO,
                env=snis_env(),
                timeout=600,
            )
        except StepFailed as exc:
            lines = str(exc).splitlines()
            msg = f"SNIS skipped: {lines[0]} -- {lines[-1].strip()}"
            log(msg)
            col.notes.append(msg)
            tasks = [t for t in tasks if t[0] is not run_snis]
        finally:
            _remove(probe)
            _remove(work / "probe.y4m")

    log(f"{len(tasks)} encode tasks on {len(clips)} clip(s), {args.jobs} job(s)")
    interrupted = False
    try:
        if args.jobs <= 1:
            for fn, a in tasks:
                try:
                    fn(*a)
                except StepFailed as exc:
                    col.fail(a[1].name, "?", "?", str(exc))
                except Exception as exc:  # noqa: BLE001 - keep going whatever happens to one point
                    col.fail(a[1].name, "?", "?", f"unexpected {type(exc).__name__}: {exc}")
        else:
            ex = ThreadPoolExecutor(max_workers=args.jobs)
            futs = {ex.submit(fn, *a): a for fn, a in tasks}
            try:
                for f in as_completed(futs):
                    exc = f.exception()
                    if exc is not None:
                        a = futs[f]
                        col.fail(a[1].name, "?", "?", f"unexpected {type(exc).__name__}: {exc}")
            finally:
                ex.shutdown(wait=True, cancel_futures=True)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: writing the results measured so far")
        col.notes.append("run interrupted before all points were measured")

    codec_order = [c for c in codec_order if any(c in pts for pts in col.points.values())]
    summary = summarize(col, codec_order, snis_pairs)
    cmdline = "python tools/rd_benchmark.py " + shlex.join(portable_args(argv if argv is not None else sys.argv[1:]))
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "run_kind": "all frames" if not args.frames else f"quick run, first {args.frames} frames",
        "frames_desc": "all" if not args.frames else f"first {args.frames}",
        "ffmpeg": ffmpeg_version,
        "libvmaf_version": col.libvmaf_version,
        "vmaf_model": VMAF_MODEL,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "jobs": args.jobs,
        "clips": meta_clips,
        "anchor": ANCHOR,
        "wall_seconds": round(time.time() - t_start, 1),
        "baselines": {
            b.name: {"label": b.label, "args": b.encoder_args, "sweep": b.qarg, "points": b.points, "gop": "10 s"}
            for b in baselines
        },
        "snis_qps": snis_qps,
        "snis_tiers": args.snis_tiers,
        "commands": [
            f"command: `{cmdline.strip()}`",
            f"ffmpeg: {ffmpeg_version}",
            "GOP of every codec: 10 s (the SNIS default keyframe interval)",
        ],
    }
    write_outputs(col, summary, codec_order, snis_pairs, meta, out_md, out_json)
    if not args.workdir and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {out_md} and {out_json} in {time.time() - t_start:.0f} s; {len(col.failures)} failure(s)")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
