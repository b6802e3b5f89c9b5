"""The native core on its own and across architectures.

tools/native/core_check.c runs the core's unit checks without Python (range coder round trip,
step table, encode -> decode bit identity of every tier prefix, thinned decoders, corrupt and
truncated payloads) and decodes a stream the Python encoder wrote on this machine. It is built
here with the system compiler and for aarch64 with Debian's gcc-aarch64-linux-gnu, run natively
and under qemu-user, and every hash it prints must be equal on both. .ci/run installs the cross
compiler and qemu and sets SNISD_REQUIRE_TOOLCHAINS, so there a missing toolchain fails instead.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from snisd.codec.decoder import Decoder
from snisd.codec.encoder import Encoder, EncoderConfig
from snisd.frame import Frame

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ROOT / "snisd" / "codec" / "native"
CHECK = ROOT / "tools" / "native"
CROSS = "aarch64-linux-gnu-gcc"
QEMU = "qemu-aarch64"
SYSROOT = Path("/usr/aarch64-linux-gnu")
HASHES = {
    "rangecoder-payloads",
    "step16-table",
    "encode-residual",
    "encode-payloads",
    "encode-reconstruction",
    "decode-pictures",
    "vector-decode",
    "vector-decode-base-tier",
}


def setup_flags() -> list[str]:
    """The C flags setup.py builds the extension with (read from it, so the two cannot differ)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "extra_compile_args":
            return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no extra_compile_args")


def core_sources() -> list[str]:
    """The core without its CPython binding (which needs the target's Python headers)."""
    return [str(p) for p in sorted(NATIVE.glob("*.c")) if p.name != "pymodule.c"]


def build(cc: str, out: Path, flags: list[str] | None = None) -> Path:
    flags = [*setup_flags(), "-Werror"] if flags is None else flags
    cmd = [
        cc,
        *flags,
        f"-I{NATIVE}",
        f"-I{CHECK}",
        str(CHECK / "core_check.c"),
        str(CHECK / "sha256.c"),
        *core_sources(),
        "-lm",
        "-pthread",
        "-o",
        str(out),
    ]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert res.returncode == 0 and not res.stderr.strip(), f"{' '.join(cmd)}\n{res.stderr}"
    return out


def run(cmd: list[str], vector: Path) -> tuple[str, dict[str, str]]:
    res = subprocess.run([*cmd, str(vector)], check=False, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}\n{res.stdout}\n{res.stderr}"
    assert re.search(r"^checks \d+ failed 0$", res.stdout, re.MULTILINE), res.stdout
    hashes = dict(re.findall(r"^hash (\S+) ([0-9a-f]{64})$", res.stdout, re.MULTILINE))
    simd = re.search(r"^simd (\S+)$", res.stdout, re.MULTILINE)
    assert simd and set(hashes) == HASHES, res.stdout
    return simd.group(1), hashes


@pytest.fixture(scope="module")
def vector(tmp_path_factory) -> Path:
    """A 160x96, 3-tier stream of natural video coded by the Python encoder on this machine."""
    out = tmp_path_factory.mktemp("vector") / "bikes.snistv"
    res = subprocess.run(
        [sys.executable, str(CHECK / "make_vector.py"), str(out)], check=False, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def native_result(tmp_path_factory, vector) -> tuple[str, dict[str, str]]:
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler {cc!r} (the package itself needs one: apt-get install build-essential)")
    exe = build(cc, tmp_path_factory.mktemp("x86") / "core_check")
    return run([str(exe)], vector)


def test_core_checks_pass_natively(native_result):
    simd, hashes = native_result
    assert simd == {"x86_64": "sse2", "aarch64": "neon"}.get(os.uname().machine, simd)
    assert len(set(hashes.values())) == len(hashes)  # distinct outputs, not one constant


def test_aarch64_build_is_bit_identical_to_this_machine(tmp_path, vector, native_result):
    missing = [t for t in (CROSS, QEMU) if shutil.which(t) is None]
    if missing or not SYSROOT.is_dir():
        if os.environ.get("SNISD_REQUIRE_TOOLCHAINS"):  # set by .ci/run, which installs them
            pytest.fail(f"SNISD_REQUIRE_TOOLCHAINS is set but {', '.join(missing) or SYSROOT} is missing")
        pytest.skip(
            f"cross toolchain absent ({', '.join(missing) or SYSROOT}): "
            "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
        )
    exe = build(CROSS, tmp_path / "core_check")  # setup.py's flags plus -Werror: no warnings
    simd, hashes = run([QEMU, "-L", str(SYSROOT), str(exe)], vector)
    assert simd == "neon"  # the NEON path of simd.h was compiled and ran
    assert hashes == native_result[1]


def test_portable_c_build_is_bit_identical(tmp_path, vector, native_result):
    """simd.h's portable C (the kernels of targets with neither SSE2 nor NEON) computes exactly
    what this machine's SIMD kernels do."""
    undef = {"x86_64": "-U__SSE2__", "aarch64": "-U__ARM_NEON"}.get(os.uname().machine)
    if undef is None:
        pytest.skip(f"no SIMD kernels on {os.uname().machine}")
    exe = build(os.environ.get("CC", "cc"), tmp_path / "core_check", [*setup_flags(), "-Werror", undef])
    simd, hashes = run([str(exe)], vector)
    assert simd == "c"
    assert hashes == native_result[1]


@pytest.mark.parametrize("sanitizers", ["address,undefined", "thread"])
def test_core_checks_under_sanitizers(tmp_path, vector, native_result, sanitizers):
    """The encoder side too (the fuzzer covers the decoder): no memory error, no undefined
    behaviour, no data race between the threads of a 2-thread encoder and decoder."""
    if shutil.which("clang") is None:
        if os.environ.get("SNISD_REQUIRE_TOOLCHAINS"):
            pytest.fail("clang is missing")
        pytest.skip("clang absent: apt-get install clang")
    exe = build(
        "clang",
        tmp_path / "core_check",
        ["-g", "-O1", "-std=c11", f"-fsanitize={sanitizers}", "-fno-sanitize-recover=all"],
    )
    env = {**os.environ, "TSAN_OPTIONS": "halt_on_error=1", "ASAN_OPTIONS": "detect_leaks=1"}
    res = subprocess.run([str(exe), str(vector)], check=False, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0 and "Sanitizer" not in res.stderr, res.stderr[-4000:]
    assert dict(re.findall(r"^hash (\S+) ([0-9a-f]{64})$", res.stdout, re.MULTILINE)) == native_result[1]


def test_payload_ending_in_a_long_run_of_zeros_decodes():
    """A busy band over a flat static picture: every tier's payload ends in a long run of
    not-coded macroblocks, i.e. of zero bytes, which the decoder must not take for truncation."""
    w, h = 640, 352
    rng = np.random.default_rng(1)
    enc = Encoder(EncoderConfig(w, h, 30, 1, tiers=3, qp=30))
    dec = Decoder(enc.sequence_header, synthesis=enc.synthesis)
    grey = np.full((h // 2, w // 2), 128, np.uint8)
    for _ in range(3):
        y = np.full((h, w), 128, np.uint8)
        y[:64] = rng.integers(0, 256, (64, w))
        ef = enc.encode(Frame(y, grey, grey))
        out = dec.decode(ef)
        assert dec.last_tiers == 3
        assert np.array_equal(out.y, enc.reconstruction().y)
