"""Adaptive binary range coder (numba), the arithmetic-coding engine under the entropy models.

One code path serves both directions: every `code_*` function takes the value to encode and
returns it when encoding, or ignores it and returns the decoded value when decoding. The
context modelling in entropy.py is therefore written once and cannot drift between encoder
and decoder.

State lives in a small int64 array so numba can pass it around cheaply:
    st[LOW] low (encoder) / code (decoder), st[RANGE], st[CACHE], st[CACHE_SIZE], st[POS],
    st[MODE] (0 encode, 1 decode), st[OVERRUN] (bytes read past the end while decoding).
Probabilities are pairs of 15-bit estimates adapting at two rates (fast and slow); their mean is
the probability of a 0 bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

LOW, RANGE, CACHE, CACHE_SIZE, POS, MODE, OVERRUN = range(7)
STATE_SIZE = 8
PROB_BITS = 15
PROB_ONE = 1 << PROB_BITS
TOP = 1 << 24
MASK32 = (1 << 32) - 1
FAST, SLOW = 4, 7
MAX_OVERRUN = 16  # bytes past the end tolerated before a stream is declared truncated


def new_probs(n: int) -> np.ndarray:
    """n contexts, each starting at probability one half."""
    return np.full((n, 2), PROB_ONE // 2, dtype=np.int32)


def new_encoder(capacity: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    st = np.zeros(STATE_SIZE, dtype=np.int64)
    st[RANGE] = MASK32
    st[CACHE_SIZE] = 1
    return st, np.zeros(capacity, dtype=np.uint8)


def new_decoder(data: bytes | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    buf = np.frombuffer(bytes(data), dtype=np.uint8).copy()  # writable: one numba specialisation
    st = np.zeros(STATE_SIZE, dtype=np.int64)
    st[MODE] = 1
    st[RANGE] = MASK32
    _decoder_init(st, buf)
    return st, buf


@njit(cache=True)
def _read_byte(st, buf):
    p = st[POS]
    st[POS] = p + 1
    if p < buf.shape[0]:
        return np.int64(buf[p])
    st[OVERRUN] += 1
    return np.int64(0)


@njit(cache=True)
def _decoder_init(st, buf):
    code = np.int64(0)
    for _ in range(4):  # the encoder's always-zero first byte is not transmitted
        code = ((code << 8) | _read_byte(st, buf)) & MASK32
    st[LOW] = code


@njit(cache=True)
def _shift_low(st, buf):
    low = st[LOW]
    if low < 0xFF000000 or low > MASK32:
        carry = low >> 32
        temp = st[CACHE]
        while True:
            p = st[POS]
            if p >= buf.shape[0]:
                st[OVERRUN] += 1  # caller grows the buffer and retries the frame
            else:
                buf[p] = (temp + carry) & 0xFF
            st[POS] = p + 1
            temp = 0xFF
            st[CACHE_SIZE] -= 1
            if st[CACHE_SIZE] == 0:
                break
        st[CACHE] = (low >> 24) & 0xFF
    st[CACHE_SIZE] += 1
    st[LOW] = (low & 0x00FFFFFF) << 8


@njit(cache=True)
def code_bit(st, buf, probs, ctx, bit):
    """Code one bit with adaptive context `ctx`; returns the bit (decoded when decoding)."""
    p = (probs[ctx, 0] + probs[ctx, 1]) >> 1
    rng = st[RANGE]
    bound = (rng >> PROB_BITS) * p
    if st[MODE] == 0:
        if bit == 0:
            st[RANGE] = bound
        else:
            st[LOW] += bound
            st[RANGE] = rng - bound
        while st[RANGE] < TOP:
            st[RANGE] = (st[RANGE] << 8) & MASK32
            _shift_low(st, buf)
    else:
        code = st[LOW]
        if code < bound:
            st[RANGE] = bound
            bit = 0
        else:
            st[LOW] = code - bound
            st[RANGE] = rng - bound
            bit = 1
        while st[RANGE] < TOP:
            st[RANGE] = (st[RANGE] << 8) & MASK32
            st[LOW] = ((st[LOW] << 8) | _read_byte(st, buf)) & MASK32
    if bit == 0:
        probs[ctx, 0] += (PROB_ONE - probs[ctx, 0]) >> FAST
        probs[ctx, 1] += (PROB_ONE - probs[ctx, 1]) >> SLOW
    else:
        probs[ctx, 0] -= probs[ctx, 0] >> FAST
        probs[ctx, 1] -= probs[ctx, 1] >> SLOW
    return bit


@njit(cache=True)
def code_bypass(st, buf, bit):
    """Code one equiprobable bit (signs, low-order bits of large values)."""
    st[RANGE] = st[RANGE] >> 1
    if st[MODE] == 0:
        if bit:
            st[LOW] += st[RANGE]
        while st[RANGE] < TOP:
            st[RANGE] = (st[RANGE] << 8) & MASK32
            _shift_low(st, buf)
    else:
        if st[LOW] >= st[RANGE]:
            st[LOW] -= st[RANGE]
            bit = 1
        else:
            bit = 0
        while st[RANGE] < TOP:
            st[RANGE] = (st[RANGE] << 8) & MASK32
            st[LOW] = ((st[LOW] << 8) | _read_byte(st, buf)) & MASK32
    return bit


@njit(cache=True)
def code_bits_bypass(st, buf, value, nbits):
    """nbits equiprobable bits, most significant first."""
    out = 0
    for i in range(nbits - 1, -1, -1):
        out = (out << 1) | code_bypass(st, buf, (value >> i) & 1)
    return out


@njit(cache=True)
def code_tree(st, buf, probs, base, value, nbits):
    """A value of nbits coded MSB first with one context per tree node (2**nbits - 1 contexts)."""
    node = 1
    for i in range(nbits - 1, -1, -1):
        b = code_bit(st, buf, probs, base + node - 1, (value >> i) & 1)
        node = (node << 1) | b
    return node - (1 << nbits)


@njit(cache=True)
def code_expgolomb(st, buf, probs, base, nctx, value):
    """Non-negative integer: adaptive unary prefix (nctx contexts, the last reused), bypass suffix.

    The prefix length is capped at 24 so corrupt input cannot loop for long.
    """
    k = 0
    if st[MODE] == 0:
        while value >= (1 << (k + 1)) - 1:
            code_bit(st, buf, probs, base + min(k, nctx - 1), 1)
            k += 1
        code_bit(st, buf, probs, base + min(k, nctx - 1), 0)
        code_bits_bypass(st, buf, value - ((1 << k) - 1), k)
        return value
    while k < 24 and code_bit(st, buf, probs, base + min(k, nctx - 1), 0) == 1:
        k += 1
    return ((1 << k) - 1) + code_bits_bypass(st, buf, 0, k)


@njit(cache=True)
def _flush(st, buf):
    for _ in range(5):
        _shift_low(st, buf)
    return st[POS]


def finish(st: np.ndarray, buf: np.ndarray) -> bytes | None:
    """Flush the encoder and return the coded bytes, or None if `buf` was too small.

    The leading byte (always zero) and trailing zero bytes are dropped: the decoder reads
    zeros past the end of its input.
    """
    n = _flush(st, buf)
    if st[OVERRUN]:
        return None
    return bytes(buf[1:n]).rstrip(b"\0")
