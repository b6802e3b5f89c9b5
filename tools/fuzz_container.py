#!/usr/bin/env python3
"""Mutation fuzzer for the fMP4 demuxer.

Takes a few valid SNIS fMP4 files, applies random mutations (bit flips, truncations, box size
field corruption, box insertion, byte-range duplication) and feeds each result to the demuxer,
both in one piece and in random-sized pieces. The only acceptable outcomes are frames with a
clean end, a clean truncation, or ContainerError; anything else (another exception, a hang)
is a bug and is reported with the seed that reproduces it.

    python tools/fuzz_container.py [-n 20000] [--seed 1]
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from snisd.codec.bitstream import FRAME_I, FRAME_P, EncodedFrame, FrameHeader, SequenceHeader, enhancement_header  # noqa: E402
from snisd.container import Fmp4StreamParser, build_fragment, build_init_segment  # noqa: E402
from snisd.errors import ContainerError  # noqa: E402

TYPES = [
    b"free",
    b"moof",
    b"mdat",
    b"moov",
    b"trak",
    b"traf",
    b"trun",
    b"tfhd",
    b"tfdt",
    b"mfhd",
    b"mvhd",
    b"snsC",
    b"colr",
    b"stsd",
    b"ftyp",
    b"sidx",
    b"mvex",
    b"trex",
]
SIZES = [0, 1, 2, 7, 8, 9, 15, 16, 17, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


def corpus() -> list[bytes]:
    rng = random.Random(0)
    out = []
    for tiers, kept, n in ((3, 3, 4), (3, 1, 3), (4, 2, 2)):
        seq = SequenceHeader(320, 240, 25, 1, tiers=tiers)
        data = build_init_segment(seq, tiers=kept)
        for i in range(n):
            chunks = [
                FrameHeader(FRAME_I if i == 0 else FRAME_P, i == 0, i, 9).to_bytes() + rng.randbytes(rng.randint(0, 60))
            ]
            chunks += [enhancement_header(t, i) + rng.randbytes(rng.randint(0, 60)) for t in range(1, kept)]
            data += build_fragment(EncodedFrame(i, i * 40000, i == 0, i == 0, tuple(chunks)), i + 1, seq)
        out.append(data)
    return out


def box_starts(data: bytes) -> list[int]:
    """Offsets that look like the start of a box header (4 printable type bytes after a size)."""
    return [
        i - 4
        for i in range(4, len(data) - 3)
        if all(0x61 <= c <= 0x7A or c == 0x20 or 0x41 <= c <= 0x5A for c in data[i : i + 4])
    ]


def mutate(data: bytes, rng: random.Random, starts: list[int]) -> tuple[bytes, str]:
    kind = rng.choice(["flip", "flip", "truncate", "size", "size", "largesize", "insert", "dup", "zero"])
    n = len(data)
    if n == 0:
        return data, kind
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            p = rng.randrange(n)
            data = data[:p] + bytes((data[p] ^ (1 << rng.randrange(8)),)) + data[p + 1 :]
    elif kind == "truncate":
        data = data[: rng.randrange(n)]
    elif kind == "size":
        at = rng.choice(starts)
        old = int.from_bytes(data[at : at + 4], "big")
        new = rng.choice(SIZES + [old + rng.randint(-16, 16) & 0xFFFFFFFF])
        data = data[:at] + new.to_bytes(4, "big") + data[at + 4 :]
    elif kind == "largesize":
        at = rng.choice(starts)
        old = int.from_bytes(data[at : at + 4], "big")
        large = rng.choice([0, 8, 15, 16, old + 8, old + 9, 1 << 63, (1 << 64) - 1, 1 << 40])
        data = data[:at] + (1).to_bytes(4, "big") + data[at + 4 : at + 8] + large.to_bytes(8, "big") + data[at + 8 :]
    elif kind == "insert":
        p = rng.choice(starts + [n])
        body = rng.randbytes(rng.randint(0, 24))
        size = len(body) + 8 if rng.random() < 0.8 else rng.choice(SIZES)
        data = data[:p] + size.to_bytes(4, "big") + rng.choice(TYPES) + body + data[p:]
    elif kind == "dup":
        a = rng.choice(starts)
        b = min(n, a + rng.randint(8, 400))
        p = rng.choice(starts + [n])
        data = data[:p] + data[a:b] + data[p:]
    else:
        a = rng.randrange(n)
        data = data[:a] + bytes(rng.randint(1, 16)) + data[a + 16 :]
    return data, kind


def run_one(data: bytes, rng: random.Random) -> str:
    p = Fmp4StreamParser()
    try:
        if rng.random() < 0.5:
            p.feed(data)
        else:
            pos = 0
            while pos < len(data):
                step = rng.randint(1, 300)
                p.feed(data[pos : pos + step])
                pos += step
        return "truncated" if p.close() else "clean"
    except ContainerError as e:
        if e.offset is None or e.box is None:
            raise AssertionError(f"ContainerError without offset/box: {e}") from e
        return "ContainerError"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20000, help="mutated inputs to try (default 20000)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    logging.getLogger("snisd.container").setLevel(logging.ERROR)  # truncation warnings are expected
    files = corpus()
    starts = [box_starts(f) for f in files]
    outcomes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    failures = 0
    t0 = time.perf_counter()
    for i in range(args.n):
        rng = random.Random(args.seed * 1_000_003 + i)
        k = rng.randrange(len(files))
        data, kind = files[k], ""
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            data, kind = mutate(data, rng, starts[k] or [0])
        kinds[kind] += 1
        try:
            outcomes[run_one(data, rng)] += 1
        except Exception:  # noqa: BLE001 - any other exception is the bug we are looking for
            failures += 1
            outcomes["FAILURE"] += 1
            if failures <= 5:
                print(f"input {i} (seed {args.seed}): unexpected exception", file=sys.stderr)
                traceback.print_exc()
    dt = time.perf_counter() - t0
    print(f"inputs tried: {args.n} in {dt:.1f} s (seed {args.seed})")
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    print("last mutation kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
