"""Exact round trip of every symbol kind of the adaptive binary range coder."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from snisd.codec import rangecoder as rc

symbol = st.one_of(
    st.tuples(st.just("bit"), st.integers(0, 15), st.integers(0, 1)),
    st.tuples(st.just("bypass"), st.just(0), st.integers(0, 1)),
    st.tuples(st.just("eg"), st.integers(0, 3), st.integers(0, 100000)),
    st.tuples(st.just("tree"), st.just(0), st.integers(0, 63)),
)


def _run(st_, buf, probs, symbols):
    out = []
    for kind, ctx, value in symbols:
        if kind == "bit":
            out.append(rc.code_bit(st_, buf, probs, ctx, value))
        elif kind == "bypass":
            out.append(rc.code_bypass(st_, buf, value))
        elif kind == "eg":
            out.append(rc.code_expgolomb(st_, buf, probs, 16 + 8 * ctx, 8, value))
        else:
            out.append(rc.code_tree(st_, buf, probs, 64, value, 6))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(symbol, max_size=400))
def test_round_trip_any_symbol_sequence(symbols):
    s, buf = rc.new_encoder(1 << 14)
    _run(s, buf, rc.new_probs(160), symbols)
    data = rc.finish(s, buf)
    assert data is not None
    d, dbuf = rc.new_decoder(data)
    decoded = _run(d, dbuf, rc.new_probs(160), [(k, c, 0) for k, c, _ in symbols])
    assert decoded == [v for _, _, v in symbols]
    assert d[rc.OVERRUN] <= rc.MAX_OVERRUN


def test_skewed_bits_compress_below_their_entropy_bound():
    rng = np.random.default_rng(7)
    bits = (rng.random(50000) < 0.05).astype(int)
    s, buf = rc.new_encoder(1 << 16)
    probs = rc.new_probs(1)
    for b in bits:
        rc.code_bit(s, buf, probs, 0, int(b))
    data = rc.finish(s, buf)
    p = bits.mean()
    entropy_bytes = len(bits) * -(p * np.log2(p) + (1 - p) * np.log2(1 - p)) / 8
    assert len(data) < 1.08 * entropy_bytes  # adaptive model within 8 % of the ideal


def test_small_buffer_reports_overflow_instead_of_writing_past_it():
    s, buf = rc.new_encoder(4)
    for i in range(200):
        rc.code_bypass(s, buf, i & 1)
    assert rc.finish(s, buf) is None
