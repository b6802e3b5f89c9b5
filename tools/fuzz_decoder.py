"""Fuzz the SNIS decoder from Python: mutate real coded frames and elementary-stream files.

Every input must either decode or raise a snisd error (BitstreamError and its subclasses; a
mutated model hash in a sequence header gives ModelError); anything else, or a single input
taking more than --timeout seconds, is a failure. The native decoder underneath is also fuzzed
on its own with sanitizers (tools/fuzz/run.sh).

    python tools/fuzz_decoder.py --inputs 20000

Inputs: whole mutated `.snis` files; one mutated tier chunk after intact frames; chunks swapped,
dropped or duplicated between frames; and decodes asking for fewer tiers or showing fewer.
Prints the number of inputs tried, how many decoded, the typed errors by class, and the slowest
input. On a failure the traceback is printed and the input written under --artifacts.
"""

from __future__ import annotations

import argparse
import io
import random
import signal
import sys
import time
import traceback
from collections import Counter
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
        del b[rng.randrange(len(b)) :]
    elif op == 2:  # random bytes overwrite
        i = rng.randrange(len(b))
        for j in range(i, min(len(b), i + rng.randrange(1, 32))):
            b[j] = rng.randrange(256)
    elif op == 3:  # duplicate a slice
        i = rng.randrange(len(b))
        b[i:i] = b[i : i + rng.randrange(1, 64)]
    elif op == 4:  # delete a slice
        i = rng.randrange(len(b))
        del b[i : i + rng.randrange(1, 64)]
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
    ap.add_argument("--artifacts", default="fuzz-artifacts", help="where a failing input is written")
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
    ok = 0
    errors: Counter[str] = Counter()
    slowest = 0.0
    t_start = time.perf_counter()
    for n in range(args.inputs):
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, args.timeout)
        kind = n % 8
        data: bytes | list = b""
        try:
            if kind in (0, 1):  # a whole elementary-stream file
                data = mutate(es_bytes, rng)
                seq, it = read_es(io.BytesIO(data))
                dec = Decoder(seq, synthesis=enc.synthesis)
                for ef in it:
                    dec.decode(ef)
            elif kind in (2, 3, 4, 5):  # the frames before it intact, then one frame with one chunk mutated
                victim = coded[rng.randrange(len(coded))]
                dec = Decoder(enc.sequence_header, synthesis=enc.synthesis)
                for prev in coded[: victim.index]:
                    dec.decode(prev)
                chunks = list(victim.tiers)
                k = rng.randrange(len(chunks))
                chunks[k] = mutate(chunks[k], rng)
                data = chunks
                tiers = rng.choice((None, 1, 2, 3))
                dec.decode(
                    EncodedFrame(victim.index, 0, victim.keyframe, victim.switch_point, tuple(chunks)),
                    tiers=tiers,
                    show_tiers=rng.choice((None, 1, 2, 3)) if tiers is None else None,
                )
            else:  # intact chunks in the wrong places: swapped, dropped or repeated between frames
                dec = Decoder(enc.sequence_header, synthesis=enc.synthesis)
                frames = [list(ef.tiers) for ef in coded]
                for _ in range(rng.randrange(1, 4)):
                    a, b = rng.randrange(len(frames)), rng.randrange(len(frames))
                    op = rng.randrange(3)
                    if op == 0:
                        ka, kb = rng.randrange(len(frames[a])), rng.randrange(len(frames[b]))
                        frames[a][ka], frames[b][kb] = frames[b][kb], frames[a][ka]
                    elif op == 1 and len(frames[a]) > 1:
                        del frames[a][rng.randrange(len(frames[a]))]
                    else:
                        frames.insert(a, list(frames[b]))
                data = frames
                for i, chunks in enumerate(frames):
                    try:
                        dec.decode(EncodedFrame(i, 0, False, False, tuple(chunks)))
                    except SnisError as exc:  # the stream goes on after a refused frame
                        errors[type(exc).__name__ + " (mid-stream)"] += 1
            ok += 1
        except SnisError as exc:
            errors[type(exc).__name__] += 1
        except Timeout:
            print(f"input {n}: no answer within {args.timeout} s (hang)")
            save(args.artifacts, n, data)
            return 1
        except Exception:  # noqa: BLE001 -- any other exception is the failure this tool looks for
            traceback.print_exc()
            print(f"input {n} (kind {kind}): untyped exception; input saved in {save(args.artifacts, n, data)}")
            return 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        slowest = max(slowest, time.perf_counter() - t0)
    total = time.perf_counter() - t_start
    typed = ", ".join(f"{v} {k}" for k, v in sorted(errors.items()))
    print(
        f"{args.inputs} inputs tried: {ok} decoded to the end, typed errors: {typed}; 0 crashes, 0 hangs; "
        f"slowest input {slowest * 1000:.0f} ms; {total:.0f} s in all"
    )
    return 0


def save(where: str, n: int, data: bytes | list) -> str:
    out = Path(where)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"input-{n}.repr"
    path.write_text(repr(data))
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
