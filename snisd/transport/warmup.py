"""One codec warm-up: code a tiny stream once so numba compiles (or loads) its kernels early.

Used by the receiver before the first publisher arrives and by the transport test harness
before its camera starts, so that neither measures compilation instead of streaming.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("snisd.transport.warmup")


def warm_up_codec(
    model: str | None = None,
    *,
    tiers: int = 2,
    qp: int | None = None,
    decode: bool = True,
    analysis=None,
    synthesis=None,
) -> float:
    """Encode (and, with `decode`, decode) two 64x64 frames; returns the seconds it took.

    `analysis`/`synthesis` reuse an encoder's already loaded transforms. Best effort: a failure
    (a missing model, say) is logged at debug level, since coding still works, only later.
    """
    t0 = time.monotonic()
    try:
        import numpy as np

        from ..codec.decoder import Decoder
        from ..codec.encoder import Encoder, EncoderConfig
        from ..frame import Frame

        cfg = (
            EncoderConfig(64, 64, tiers=tiers, model=model)
            if qp is None
            else EncoderConfig(64, 64, tiers=tiers, qp=qp, model=model)
        )
        kw = {} if analysis is None else {"analysis": analysis, "synthesis": synthesis}
        enc = Encoder(cfg, **kw)
        dec = Decoder(enc.sequence_header, model=model) if decode else None
        ramp = np.add.outer(np.arange(64), np.arange(64)).astype(np.uint8)
        for n in range(2):
            y = np.roll(ramp, 2 * n, axis=1)
            uv = np.full((32, 32), 128, np.uint8)
            ef = enc.encode(Frame(y, uv, uv.copy(), n * 100_000))
            if dec is not None:
                dec.decode(ef)
    except Exception as exc:  # a missing analysis model, say: decoding still works, just later
        log.debug("codec warm-up skipped: %s", exc)
    return time.monotonic() - t0
