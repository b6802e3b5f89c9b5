#!/usr/bin/env python3
"""Bandwidth adaptation of the WebRTC transport under real link conditions: the capacity estimate,
pacing, tier choice and the encoder's rate control (docs/TRANSPORT.md "Rate", docs/ADAPTATION.md).

The link harness (two network namespaces, `tc tbf`, nftables loss, the receiver, the live sender)
is tests/adaptation_harness.py, shared with tests/test_adaptation.py. The sender ENCODES LIVE at
the stream's size and frame rate (default 1280x720 at 15 fps, the synthetic camera; `--media FILE`
streams a clip instead) with rate control following the sender's target.

Per scenario it reports sent rate and raw utilisation (bytes handed to the channels / link
capacity), the estimate and the chosen qp, the tiers sent, the base tier's delay (written to the
sender -> released by the receiver, p50/p95, and the largest in each phase's second half), stalls
(gaps > 1 s between released frames, start-up included), the reaction to capacity steps and the
time to a clean picture after a loss, and draws a PNG (matplotlib) per scenario.

    sudo python tools/bench_adaptation.py
    sudo python tools/bench_adaptation.py --scenarios step,loss2 --no-write

Needs root (ip netns, tc, nft). tests/test_adaptation.py runs short versions of the scenarios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(ROOT / "tests"))
from adaptation_harness import (  # noqa: E402  (the shared link harness)
    LIVE_FPS,
    LIVE_SIZE,
    LIVE_TIER_RATIO,
    Link,
    Scenario,
    Stream,
    _pct,
    add_stream_args,
    netns_unavailable,
    run_scenario,
)

__all__ = ["Link", "Scenario", "Stream", "netns_unavailable", "run_scenario"]


LONG = {
    "steady200": Scenario("steady200", "steady 200 kbit/s", [(40, 200, 0)]),
    "steady1m": Scenario("steady1m", "steady 1 Mbit/s", [(40, 1000, 0)]),
    "steady5m": Scenario("steady5m", "steady 5 Mbit/s", [(40, 5000, 0)]),
    "step": Scenario("step", "5 Mbit/s -> 300 kbit/s -> 2 Mbit/s", [(15, 5000, 0), (20, 300, 0), (25, 2000, 0)]),
    "rise": Scenario("rise", "300 kbit/s -> 2 Mbit/s", [(20, 300, 0), (20, 2000, 0)]),
    "loss2": Scenario("loss2", "2 Mbit/s, 2 % random loss", [(40, 2000, 2)]),
    "loss5": Scenario("loss5", "2 Mbit/s, 5 % random loss", [(40, 2000, 5)]),
}


# ---------------------------------------------------------------------------------------------
# Output.


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res["series"]
    fig, (ax, axd) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    nan = float("nan")
    link = [v if v is not None else nan for v in s["link"]]
    ax.step(s["t"], link, where="post", color="k", lw=1.5, label="link capacity")
    ax.plot(
        s["t"],
        [v if v is not None else nan for v in s["estimate"]],
        color="tab:orange",
        lw=1,
        ls="--",
        label="estimate",
    )
    ax.plot(s["t"], s["sent"], color="tab:blue", lw=1, label="sent")
    ax.set_ylabel("kbit/s")
    top = max([v for v in link if v == v] + s["sent"] + [1]) * 1.3
    ax.set_yscale("log")
    ax.set_ylim(50, min(top, 8000))
    ax2 = ax.twinx()
    ax2.step(
        s["t"],
        [v if v is not None else nan for v in s["tiers_sent"]],
        where="post",
        color="tab:red",
        lw=1,
        label="tiers sent",
    )
    ax2.plot(
        s["t"],
        [v / 10 if v is not None else nan for v in s["qp"]],
        color="tab:purple",
        lw=0.8,
        alpha=0.7,
        label="qp / 10",
    )
    ax2.set_ylim(0, 6.5)
    ax2.set_ylabel("tiers, qp/10")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower right")
    ax.set_title(res["title"], fontsize=10)
    axd.plot(s["t"], [v if v is not None else nan for v in s["base_delay_ms"]], color="tab:green", lw=1)
    axd.axhline(200, color="grey", ls=":", lw=0.8)
    axd.set_ylabel("base delay max ms")
    axd.set_xlabel("s")
    axd.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def table(results: list[dict]) -> str:
    rows = [
        "| scenario | phase (link, loss) | sent kbit/s | utilisation (sent/link) | estimate kbit/s | qp p50 | "
        "tiers | base share (P-frames) | base delay p50/p95 ms (run) | base delay max ms (phase 2nd half) | "
        "stalls > 1 s | reaction | "
        "clean picture after loss p50/max s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for n, ph in enumerate(r["phases"]):
            first = n == 0
            link = f"{ph['link_kbps']:g} kbit/s" if ph["link_kbps"] else "unshaped"
            react = ""
            for st in r["steps"]:
                if abs(st["at"] - ph["start"]) < 0.5:
                    react = (
                        f"below link after {st['sent_below_link_after_s']} s"
                        if "sent_below_link_after_s" in st
                        else f">= 80 % of the link after {st['used_after_s']} s"
                    )
            cl = r["clean_after_loss_s"]
            done = [e[1] - e[0] for e in cl.get("events_list", []) if e[1] is not None]
            open_ = cl["events"] - len(done)
            clean = (
                (
                    (
                        f"{len(done)} events, {_f(_pct(done, 50))} / {_f(max(done) if done else None)}"
                        + (f" ({open_} still open at the end)" if open_ else "")
                    )
                    if cl["events"]
                    else "-"
                )
                if first
                else ""
            )
            dl = f"{_f(r['base_delay_ms_p50'], 0)} / {_f(r['base_delay_ms_p95'], 0)}" if first else ""
            stalls = (
                str(len(r["stalls"])) + (f" (longest {max(s[1] for s in r['stalls'])} s)" if r["stalls"] else "")
                if first
                else ""
            )
            pt = ph.get("p_tier_kbps") or []
            share = f"{100 * pt[0] / pt[-1]:.0f} %" if pt and pt[-1] else "-"
            rows.append(
                f"| {r['title'] if first else ''} | {link}, {ph['loss_pct']:g} % | {ph['sent_kbps']:.0f} | "
                f"{_f(ph['utilisation'] and ph['utilisation'] * 100, 0)} % | {_f(ph['estimate_kbps'], 0)} | "
                f"{_f(ph['qp_median'], 0)} | {ph['tiers_mode']} | {share} | {dl} | "
                f"{_f(ph['base_delay_ms_max_2nd_half'], 0)} | {stalls} | {react} | {clean} |"
            )
    return "\n".join(rows)


def _f(v, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_stream_args(ap)
    ap.add_argument("--scenarios", default=",".join(LONG), help=f"comma-separated, of {','.join(LONG)}")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every phase's duration")
    ap.add_argument("--out", default=str(ROOT / "docs" / "ADAPTATION.md"))
    ap.add_argument("--img", default=str(ROOT / "docs" / "img"))
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--keep", metavar="DIR", help="keep logs and raw results in DIR")
    ap.add_argument("--from-results", metavar="DIR", help="only redraw the plots and the table from DIR (--keep)")
    args = ap.parse_args(argv)
    stream = Stream(
        args.size,
        args.fps,
        args.tiers,
        args.tier_ratio,
        args.budget_ms,
        args.start_kbps,
        args.qp,
        args.media,
        args.clip_frames,
        args.threads,
    )
    if args.from_results:
        results = [
            json.loads((Path(args.from_results) / f"{n}.json").read_text())
            for n in args.scenarios.split(",")
            if (Path(args.from_results) / f"{n}.json").exists()
        ]
    else:
        why = netns_unavailable()
        if why:
            print(f"bench_adaptation: {why}", file=sys.stderr)
            return 2
        tmp = Path(args.keep or tempfile.mkdtemp(prefix="bench_adaptation_"))
        tmp.mkdir(parents=True, exist_ok=True)
        results = []
        for name in args.scenarios.split(","):
            sc = LONG[name]
            sc = Scenario(sc.name, sc.title, [(d * args.scale, r, loss) for d, r, loss in sc.phases])
            res = run_scenario(sc, stream, tmp)
            results.append(res)
            (tmp / f"{name}.json").write_text(json.dumps(res))
            print(json.dumps({k: v for k, v in res.items() if k != "series"}), flush=True)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(table(results))
    if not args.no_write:
        Path(args.img).mkdir(parents=True, exist_ok=True)
        for res in results:
            plot(res, Path(args.img) / f"adapt_{res['scenario']}.png")
        write_doc(Path(args.out), results, args)
    return 0


TABLE_BEGIN, TABLE_END = "<!-- bench_adaptation table: begin -->", "<!-- bench_adaptation table: end -->"


def command(args) -> str:
    cmd = "sudo python tools/bench_adaptation.py"
    if args.scenarios != ",".join(LONG):
        cmd += f" --scenarios {args.scenarios}"
    if args.scale != 1:
        cmd += f" --scale {args.scale:g}"
    if args.media:
        cmd += f" --media DIR/{Path(args.media).name}"
    for flag, value, default in (
        ("--size", args.size, LIVE_SIZE),
        ("--fps", args.fps, LIVE_FPS),
        ("--tier-ratio", args.tier_ratio, LIVE_TIER_RATIO),
    ):
        if value != default:
            cmd += f" {flag} {value:g}" if isinstance(value, float) else f" {flag} {value}"
    return cmd


def write_doc(path: Path, results: list[dict], args) -> None:
    """Replace the measured table of docs/ADAPTATION.md (between its markers) and the section of
    docs/BENCHMARKS.md; the prose around them is written by hand."""
    cmd = command(args)
    body = "\n".join([TABLE_BEGIN, "", "    " + cmd, "", table(results), "", TABLE_END])
    old = path.read_text() if path.exists() else ""
    if TABLE_BEGIN in old and TABLE_END in old:
        head, rest = old.split(TABLE_BEGIN, 1)
        path.write_text(head + body + rest.split(TABLE_END, 1)[1])
    else:
        path.write_text(old.rstrip("\n") + "\n\n" + body + "\n")
    update_benchmarks(path.parent / "BENCHMARKS.md", results, cmd)


BENCH_BEGIN, BENCH_END = "<!-- bench_adaptation: begin -->", "<!-- bench_adaptation: end -->"


def update_benchmarks(path: Path, results: list[dict], cmd: str) -> None:
    """Replace the adaptation section of docs/BENCHMARKS.md (between its markers, or appended)."""
    body = "\n".join(
        [
            BENCH_BEGIN,
            "## Bandwidth adaptation (shaped links between network namespaces)",
            "",
            "    " + cmd,
            "",
            "Written by the command above; the method, the plots and how the sender adapts are in",
            "docs/ADAPTATION.md.",
            "",
            table(results),
            BENCH_END,
        ]
    )
    old = path.read_text() if path.exists() else ""
    if BENCH_BEGIN in old and BENCH_END in old:
        head, rest = old.split(BENCH_BEGIN, 1)
        new = head + body + rest.split(BENCH_END, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(new)


if __name__ == "__main__":
    sys.exit(main())
