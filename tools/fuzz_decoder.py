"""Fuzz the SNIS decoder: mutate real coded frames and elementary-stream files, feed them in.

Every input must either decode or raise a snisd error (BitstreamError and its subclasses);
anything else, or a single input taking more than --timeout seconds, is a failure.

    python tools/fuzz_decoder.py --inputs 20000

Prints the number of inputs tried, how many decoded, how many were rejected with a typed error,
and the slowest input.
"""

from __future__ import annotations

import argparse
import io
import random
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from snisd.capture.file import iter_frames  # noqa: E402
from snisd.codec.bitstream import EncodedFrame, read_es, write_es_frame, write_es_header  # noqa: E402
from snisd.codec.decoder import Decoder  # noqa: E402
from snisd.codec.encoder import Encoder, EncoderConfig  # noqa: E402
from snisd.errors import SnisError  # noqa: E402


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    op = rng.randrange(6)
    if not b:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
    if op == 0:  # bit flips
        for _ in range(rng.randrange(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif op == 1:  # truncate
        del b[rng.randrange(len(b)):]
    elif op == 2:  # random bytes overwrite
        i = rng.randrange(len(b))
        for j in range(i, min(len(b), i + rng.randrange(1, 32))):
            b[j] = rng.randrange(256)
    elif op == 3:  # duplicate a slice
        i = rng.randrange(len(b))
        b[i:i] = b[i:i + rng.randrange(1, 64)]
    elif op == 4:  # delete a slice
        i = rng.randrange(len(b))
        del b[i:i + rng.randrange(1, 64)]
    else:  # header bytes
        b[rng.randrange(min(len(b), 8))] = rng.randrange(256)
    return bytes(b)


class Timeout(Exception):
    pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--clip", default=str(ROOT / "tests" / "data" / "bikes_12f.mp4"))
    ap.add_argument("--size", default="160x96", help="frames are scaled to this size (small = many inputs)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    frames = list(iter_frames(args.clip, 6, w, h))
    enc = Encoder(EncoderConfig(frames[0].width, frames[0].height, 25, 1, tiers=3, qp=30, switch_interval=3))
    coded = [enc.encode(f) for f in frames]
    es = io.BytesIO()
    write_es_header(es, enc.sequence_header)
    for ef in coded:
        write_es_frame(es, ef)
    es_bytes = es.getvalue()
    rng = random.Random(args.seed)

    def on_alarm(*_):
        raise Timeout()

    signal.signal(signal.SIGALRM, on_alarm)
    ok = rejected = 0
    slowest = 0.0
    t_start = time.perf_counter()
    for n in range(args.inputs):
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, args.timeout)
        try:
            if n % 4 == 0:  # a whole elementary-stream file
                seq, it = read_es(io.BytesIO(mutate(es_bytes, rng)))
                dec = Decoder(seq, synthesis=enc.synthesis)
                for ef in it:
                    dec.decode(ef)
            else:  # the frames before it intact, then one frame with one chunk mutated
                victim = coded[rng.randrange(len(coded))]
                dec = Decoder(enc.sequence_header, synthesis=enc.synthesis)
                for prev in coded[:victim.index]:
                    dec.decode(prev)
                chunks = list(victim.tiers)
                k = rng.randrange(len(chunks))
                chunks[k] = mutate(chunks[k], rng)
                dec.decode(EncodedFrame(victim.index, 0, victim.keyframe, victim.switch_point, tuple(chunks)))
            ok += 1
        except SnisError:
            rejected += 1
        except Timeout:
            print(f"input {n}: no answer within {args.timeout} s (hang)")
            return 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        slowest = max(slowest, time.perf_counter() - t0)
    total = time.perf_counter() - t_start
    print(f"{args.inputs} inputs tried: {ok} decoded, {rejected} rejected with a typed error, "
          f"0 crashes, 0 hangs; slowest input {slowest * 1000:.0f} ms; {total:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
