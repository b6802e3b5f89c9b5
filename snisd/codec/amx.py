"""Keep LiteRT's XNNPACK off Intel AMX tiles, where they make the analysis slower.

On an x86-64 CPU with AMX (Sapphire Rapids and later), XNNPACK asks Linux for the AMX tile
state (``arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)``) and, when granted, runs int8 convolutions
with its AMX kernels, whose 16 x 64 tiles suit wide layers. The analysis graph's convolutions have
4 to 16 output channels (models/README.md): on the build machine the AMX kernels ran the whole
1080p graph in 13.2 ms, its AVX-512 VNNI kernels in 3.9 ms (docs/BENCHMARKS.md, "Codec speed").
XNNPACK falls back to them when the request fails, and it offers no switch of its own, so the
encoder refuses the request for its process before XNNPACK starts: a seccomp filter that answers
that one ``arch_prctl`` call with EPERM, installed on every thread.

The filter is process-wide and permanent, and it sets ``no_new_privs`` (the kernel requires it),
so programs this process starts cannot gain privileges through set-user-ID files (the systemd unit
sets ``NoNewPrivileges=yes`` anyway). Nothing is done on other CPUs and systems, where AMX does not
exist, nor when AMX is already granted, nor with ``SNISD_AMX=1`` in the environment.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys
import threading

ENV_ALLOW = "SNISD_AMX"  # "1": leave AMX to XNNPACK

_SYS_ARCH_PRCTL = 158  # x86-64
_SYS_SECCOMP = 317  # x86-64
_ARCH_GET_XCOMP_SUPP = 0x1021
_ARCH_GET_XCOMP_PERM = 0x1022
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_TSYNC = 1
_AUDIT_ARCH_X86_64 = 0xC000003E

_lock = threading.Lock()
_state: str | None = None


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _program() -> list[tuple[int, int, int, int]]:
    """The BPF program: EPERM for arch_prctl(ARCH_REQ_XCOMP_PERM, ...) of x86-64, else allow."""
    ld, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
    allow, eperm = 0x7FFF0000, 0x00050000 | errno.EPERM  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO
    return [
        (ld, 0, 0, 4),  # seccomp_data.arch
        (jeq, 0, 5, _AUDIT_ARCH_X86_64),
        (ld, 0, 0, 0),  # seccomp_data.nr
        (jeq, 0, 3, _SYS_ARCH_PRCTL),
        (ld, 0, 0, 16),  # low word of seccomp_data.args[0]
        (jeq, 0, 1, ARCH_REQ_XCOMP_PERM),
        (ret, 0, 0, eperm),
        (ret, 0, 0, allow),
    ]


def _xcomp(libc: ctypes.CDLL, option: int) -> int | None:
    """An ARCH_GET_XCOMP_* feature mask, or None where the kernel has no such call."""
    mask = ctypes.c_uint64(0)
    if libc.syscall(ctypes.c_long(_SYS_ARCH_PRCTL), ctypes.c_long(option), ctypes.byref(mask)) != 0:
        return None
    return mask.value


def refuse_amx() -> str:
    """Refuse this process the AMX tile state once (see the module docstring); returns what was
    done: "refused", "unsupported" (not x86-64 Linux, or no AMX), "already granted",
    "allowed by SNISD_AMX" or "failed: <errno name>" (the analysis then runs as XNNPACK chooses)."""
    global _state
    with _lock:
        if _state is None:
            _state = _refuse()
        return _state


def _refuse() -> str:
    if os.environ.get(ENV_ALLOW) == "1":
        return f"allowed by {ENV_ALLOW}"
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
        return "unsupported"
    libc = ctypes.CDLL(None, use_errno=True)
    supported = _xcomp(libc, _ARCH_GET_XCOMP_SUPP)
    if supported is None or not supported >> XFEATURE_XTILEDATA & 1:
        return "unsupported"
    permitted = _xcomp(libc, _ARCH_GET_XCOMP_PERM)
    if permitted is not None and permitted >> XFEATURE_XTILEDATA & 1:
        return "already granted"
    code = _program()
    filters = (_SockFilter * len(code))(*[_SockFilter(c, jt, jf, k) for c, jt, jf, k in code])
    prog = _SockFprog(len(code), ctypes.cast(filters, ctypes.POINTER(_SockFilter)))
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)):
        return f"failed: {errno.errorcode.get(ctypes.get_errno(), '?')}"
    rc = libc.syscall(
        ctypes.c_long(_SYS_SECCOMP),
        ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
        ctypes.c_long(_SECCOMP_FILTER_FLAG_TSYNC),
        ctypes.byref(prog),
    )
    if rc != 0:  # -1 with errno, or the id of a thread that could not be synchronised
        return f"failed: {errno.errorcode.get(ctypes.get_errno(), '?') if rc < 0 else f'thread {rc}'}"
    return "refused"
