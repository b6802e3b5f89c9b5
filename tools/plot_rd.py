#!/usr/bin/env python3
"""Rate-distortion plots from tools/rd_benchmark.py's JSON: one PNG per clip, kbit/s (log) against
VMAF, every tier prefix of the scalable SNIS stream, the single tier and the baselines.

    python tools/plot_rd.py docs/rd_results.json --out docs/img
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def plot(results: dict, out_dir: Path, codecs: list[str] | None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    anchor = results.get("meta", {}).get("anchor", "")
    for clip, per_codec in results["points"].items():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, pts in sorted(per_codec.items()):
            if codecs and not any(name.startswith(c) for c in codecs):
                continue
            pts = sorted((p for p in pts if p.get("kbps") and p.get("vmaf") is not None), key=lambda p: p["kbps"])
            if not pts:
                continue
            snis = name.startswith("snis")
            ax.plot(
                [p["kbps"] for p in pts],
                [p["vmaf"] for p in pts],
                marker="o" if snis else "s",
                markersize=3,
                linewidth=2.0 if name == anchor else 1.2,
                linestyle="-" if snis else "--",
                label=name,
            )
        ax.set_xscale("log")
        ax.set_xlabel("kbit/s")
        ax.set_ylabel("VMAF")
        desc = results.get("meta", {}).get("frames_desc", "")
        ax.set_title(f"{clip}" + (f" ({desc})" if desc else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = out_dir / f"rd_{clip}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="rd_benchmark JSON (e.g. docs/rd_results.json)")
    ap.add_argument("--out", default="docs/img", help="directory for rd_<clip>.png")
    ap.add_argument("--codecs", default="", help="comma-separated name prefixes to draw (default: all)")
    args = ap.parse_args(argv)
    try:
        results = json.loads(Path(args.results).read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {args.results}: {exc}", file=sys.stderr)
        return 2
    for p in plot(results, Path(args.out), [c for c in args.codecs.split(",") if c] or None):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
