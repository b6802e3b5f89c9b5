#!/usr/bin/env python3
"""Benchmark the fMP4 muxer and demuxer: cost per frame in microseconds (median).

Synthetic 1080p-rate frames: 3 tiers, each chunk 2-40 KB of random bytes. Measures
  mux    build_fragment() alone, and Fmp4Writer.write() (fragment + file write + flush, no fsync)
  demux  Fmp4StreamParser.feed() with one fragment at a time, and whole passes of open_fmp4()
         over the file (reported per frame; the file is in the page cache)

    python tools/bench_container.py [-n 600] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from snisd.codec.bitstream import FRAME_I, FRAME_P, EncodedFrame, FrameHeader, SequenceHeader, enhancement_header  # noqa: E402
from snisd.container import (
    Fmp4StreamParser,
    Fmp4Writer,
    build_fragment,
    build_init_segment,  # noqa: E402
    open_fmp4,
)


def frames(n: int, seed: int) -> list[EncodedFrame]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        key = i % 60 == 0
        chunks = [
            FrameHeader(FRAME_I if key else FRAME_P, key, i & 0xFFFF, 20).to_bytes()
            + rng.randbytes(rng.randint(2048, 40960) - 4)
        ]
        chunks += [enhancement_header(t, i) + rng.randbytes(rng.randint(2048, 40960) - 1) for t in (1, 2)]
        out.append(EncodedFrame(i, round(i * 1e6 / 30), key, key, tuple(chunks)))
    return out


def us(samples_ns: list[int]) -> str:
    q = statistics.quantiles(samples_ns, n=20)
    return f"median {statistics.median(samples_ns) / 1e3:7.1f} us   p95 {q[18] / 1e3:7.1f} us"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=600, help="frames (default 600, 20 s at 30 fps)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    seq = SequenceHeader(1920, 1080, 30, 1, tiers=3)
    fr = frames(args.n, args.seed)
    mean_kb = sum(f.size for f in fr) / len(fr) / 1024

    build = []
    frags = []
    for i, f in enumerate(fr):
        t = time.perf_counter_ns()
        b = build_fragment(f, i + 1, seq)
        build.append(time.perf_counter_ns() - t)
        frags.append(b)

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bench.mp4")
        write = []
        with Fmp4Writer(path, seq) as w:
            for f in fr:
                t = time.perf_counter_ns()
                w.write(f)
                write.append(time.perf_counter_ns() - t)

        feed = []
        p = Fmp4StreamParser()
        p.feed(build_init_segment(seq))
        got = 0
        for b in frags:
            t = time.perf_counter_ns()
            got += len(p.feed(b))
            feed.append(time.perf_counter_ns() - t)
        assert got == len(fr)

        # The file reader works in 256 KiB reads, so single frames cost nothing or a whole read:
        # time whole passes over the file and report the per-frame mean of each pass.
        read = []
        for _ in range(7):
            t = time.perf_counter_ns()
            n = sum(1 for _ in open_fmp4(path))
            read.append((time.perf_counter_ns() - t) // n)
        assert n == len(fr)

    print(f"{args.n} frames, 3 tiers of 2-40 KB (mean {mean_kb:.0f} KB/frame), Python {sys.version.split()[0]}")
    print(f"mux   build_fragment        {us(build)}")
    print(f"mux   Fmp4Writer.write      {us(write)}")
    print(f"demux Fmp4StreamParser.feed {us(feed)}")
    print(f"demux open_fmp4 iteration   median {statistics.median(read) / 1e3:7.1f} us   (mean per frame of 7 passes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
