"""The encoder keeps XNNPACK off AMX tiles (snisd/codec/amx.py), and the analysis' output does
not depend on it. Each case runs in a fresh process: the refusal is permanent for a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = r"""
import ctypes, hashlib, json
import numpy as np
from snisd.codec.amx import ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
from snisd.codec.analysis import AnalysisTransform

libc = ctypes.CDLL(None, use_errno=True)
def mask(option):
    m = ctypes.c_uint64(0)
    return m.value if libc.syscall(158, option, ctypes.byref(m)) == 0 else None

a = AnalysisTransform()
y, uv = a.input_buffers(64, 96)
rng = np.random.default_rng(7)
y[...] = rng.integers(-60, 60, y.shape, dtype=np.int8)
uv[...] = rng.integers(-30, 30, uv.shape, dtype=np.int8)
out = a(y, uv)
digest = hashlib.sha256(b"".join(np.ascontiguousarray(t).tobytes()
                                 for t in (out.y_ac, out.y_coarse, out.c_ac, out.c_coarse))).hexdigest()
supp, perm = mask(0x1021), mask(0x1022)
rc = libc.syscall(158, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
print(json.dumps({"state": a.amx, "digest": digest, "amx": bool(supp and supp >> 18 & 1),
                  "granted": bool(perm and perm >> 18 & 1), "request": rc, "errno": ctypes.get_errno()}))
"""


def _probe(**env: str) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_encoder_refuses_amx_tiles_and_xnnpack_asks_for_them_otherwise():
    refused = _probe(SNISD_AMX="0")
    allowed = _probe(SNISD_AMX="1")
    assert allowed["state"] == "allowed by SNISD_AMX"
    assert refused["digest"] == allowed["digest"], "the analysis output depends on the int8 kernels"
    if not refused["amx"]:  # no AMX on this CPU or kernel: nothing to refuse
        assert refused["state"] == "unsupported"
        return
    assert refused["state"] == "refused"
    assert not refused["granted"]
    assert (refused["request"], refused["errno"]) == (-1, 1)  # EPERM, from the filter
    # without the filter XNNPACK asks for, and gets, the tile state: the premise of the refusal
    assert allowed["granted"]
