"""From a fresh copy of the repository, as a new user runs it: a non-editable install in a new
virtualenv, the README's first command (`snisd demo`, shortened) run in the copy's root, and the
file CLIs (`decode`, `extract`) on what it recorded, including a `.snis` elementary stream.

Slow (a virtualenv and an install; pip's cache makes it minutes, not more)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "snisd-demo",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(clone directory, bin directory of a virtualenv with `pip install CLONE`)."""
    base = tmp_path_factory.mktemp("fresh")
    clone = base / "clone"
    shutil.copytree(ROOT, clone, ignore=IGNORE)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    r = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(clone)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return clone, venv / "bin"


def clean_env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return e


@pytest.mark.slow
def test_readme_demo_from_a_fresh_clone_decodes_live(installed):
    clone, bin_dir = installed
    r = subprocess.run(
        [str(bin_dir / "snisd"), "demo", "--seconds", "10", "--size", "160x96"],
        cwd=clone,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = r.stdout + r.stderr
    assert "Traceback" not in log, log[-4000:]
    assert r.returncode == 0, log[-4000:]
    summary = json.loads(r.stdout[r.stdout.rindex("\n{") :])
    # the receiver itself decoded, live, every frame it recorded
    # (a fresh install compiles the codec's kernels on its first frames: the camera drops frames meanwhile)
    assert summary["receiver_recorded_frames"] >= 2, summary
    assert summary["receiver_live_decoded_frames"] == summary["receiver_recorded_frames"], summary
    assert summary["receiver_decode_errors"] == 0 and "receiver_decoder_failed" not in summary
    assert summary["recording_decoded_afterwards_frames"] == summary["receiver_recorded_frames"]


def read_y4m(path: Path) -> tuple[tuple[int, int, str], list[bytes]]:
    """(width, height, header) and the pictures of a 4:2:0 .y4m file (a reader for the test)."""
    data = path.read_bytes()
    head, _, rest = data.partition(b"\n")
    fields = {f[:1]: f[1:] for f in head.split()[1:]}
    w, h = int(fields[b"W"]), int(fields[b"H"])
    size = w * h * 3 // 2
    pictures, pos = [], 0
    while pos < len(rest):
        assert rest[pos : pos + 6] == b"FRAME\n", pos
        pictures.append(rest[pos + 6 : pos + 6 + size])
        assert len(pictures[-1]) == size
        pos += 6 + size
    return (w, h, head.decode()), pictures


@pytest.mark.slow
def test_file_clis_decode_extract_and_snis(installed, tmp_path):
    from fractions import Fraction

    from snisd.capture.synthetic import SyntheticScene
    from snisd.container import read_fmp4
    from snisd.y4m import Y4mWriter

    _, bin_dir = installed
    snisd = str(bin_dir / "snisd")
    scene = SyntheticScene(160, 96, 10.0)
    with open(tmp_path / "camera.y4m", "wb") as f:
        w = Y4mWriter(f, 160, 96, Fraction(10))
        for n in range(8):
            w.write(scene.render(n))

    def run(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run([snisd, *args], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (args, r.stdout[-2000:], r.stderr[-2000:])
        return r

    run("encode", "camera.y4m", "-o", "rec.mp4", "--tiers", "3")
    src = tmp_path / "rec.mp4"
    seq, frames, truncated = read_fmp4(src)
    assert len(frames) == 8 and not truncated and seq.tiers == 3
    # decode: every frame of the recording, at its size
    run("decode", str(src), "-o", "all.y4m")
    (w, h, _), pictures = read_y4m(tmp_path / "all.y4m")
    assert (w, h) == (160, 96) and len(pictures) == len(frames)
    # extract: keep the base tier only, no re-encoding; it decodes to as many frames
    run("extract", str(src), "-o", "base.mp4", "--tiers", "1")
    seq1, frames1, _ = read_fmp4(tmp_path / "base.mp4")
    assert len(frames1) == len(frames)  # (the sequence header is copied as is: it still says 3)
    assert all(f1.tiers == f.tiers[:1] for f, f1 in zip(frames, frames1, strict=True))
    run("decode", str(tmp_path / "base.mp4"), "-o", "base.y4m")
    assert len(read_y4m(tmp_path / "base.y4m")[1]) == len(frames)
    # .snis: encode the decoded clip to an elementary stream and decode that
    run("encode", "all.y4m", "-o", "clip.snis", "--frames", "5")
    run("decode", "clip.snis", "-o", "clip.y4m", "--tiers", "2")
    (w2, h2, _), clip = read_y4m(tmp_path / "clip.y4m")
    assert (w2, h2) == (160, 96) and len(clip) == 5
    # a truncated .snis keeps its complete frames and says where it ends, without a traceback
    data = (tmp_path / "clip.snis").read_bytes()
    (tmp_path / "bad.snis").write_bytes(data[:-1])  # the last frame's record loses its last byte
    r = subprocess.run(
        [snisd, "decode", "bad.snis", "-o", "bad.y4m", "--tiers", "2"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "Traceback" not in r.stderr and "truncated" in r.stdout, (r.stdout, r.stderr)
    kept = read_y4m(tmp_path / "bad.y4m")[1]
    assert len(kept) == 4 and kept[0] == clip[0]
