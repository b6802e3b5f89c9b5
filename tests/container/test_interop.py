"""Acceptance by parsers written elsewhere: ffprobe and mp4box.js."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fmp4_samples import SEQ

from snisd.container import extract_tiers

TESTS = Path(__file__).resolve().parents[1]

FFPROBE = shutil.which("ffprobe")


def _ffprobe(path: Path, *args: str) -> dict:
    proc = subprocess.run(
        [FFPROBE, "-v", "error", "-of", "json", *args, str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(FFPROBE is None, reason="ffprobe not installed")
@pytest.mark.parametrize("k", [3, 1])
def test_ffprobe_accepts(recording, tmp_path, k) -> None:
    path, frames, _ = recording
    if k < 3:
        thin = tmp_path / "thin.mp4"
        extract_tiers(path, thin, k)
        path = thin
    info = _ffprobe(path, "-count_packets", "-show_streams", "-show_format")
    streams = info["streams"]
    assert [s["codec_tag_string"] for s in streams] == ["snis"] + ["snie"] * (k - 1)
    duration = len(frames) / 30
    for s in streams:
        assert s["codec_type"] == "video"
        assert (s["width"], s["height"]) == (SEQ.width, SEQ.height)
        assert int(s["nb_read_packets"]) == len(frames)
        assert float(s["duration"]) == pytest.approx(duration, abs=1e-3)
        assert s["color_primaries"] == "bt709" and s["color_range"] == "tv"
    assert float(info["format"]["duration"]) == pytest.approx(duration, abs=1e-3)
    pk = _ffprobe(path, "-show_packets", "-select_streams", "0")["packets"]
    assert [p["flags"].startswith("K") for p in pk] == [f.keyframe for f in frames]
    assert [int(p["size"]) for p in pk] == [len(f.tiers[0]) for f in frames]
    assert [int(p["pts"]) for p in pk] == [i * 3000 for i in range(len(frames))]


def _mp4box_ready() -> bool:
    return (
        shutil.which("node") is not None
        and (TESTS / ".node" / "node_modules" / "mp4box").is_dir()
        or bool(os.environ.get("MP4BOX_DIR"))
    )


@pytest.mark.skipif(not _mp4box_ready(), reason="mp4box.js not installed (npm install --prefix tests/.node mp4box)")
@pytest.mark.parametrize("k", [3, 2])
def test_mp4box_js_walks_every_box(recording, tmp_path, k) -> None:
    path, frames, _ = recording
    if k < 3:
        thin = tmp_path / "thin.mp4"
        extract_tiers(path, thin, k)
        path = thin
    proc = subprocess.run(["node", str(TESTS / "mp4walk.js"), str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] and out["fragmented"] and not out["errors"]
    allowed = {
        "Unknown sample entry type: 'snis'",
        "Unknown sample entry type: 'snie'",
        "Unknown track reference type: 'sbas'",
    }
    assert {w.split(": ", 1)[1] for w in out["warnings"]} <= allowed, out["warnings"]
    assert [t["codec"] for t in out["tracks"]] == ["snis"] + ["snie"] * (k - 1)
    for tier, t in enumerate(out["tracks"]):
        assert out["samples"][str(t["id"])] == [
            [i * 3000, len(f.tiers[tier]), int(f.keyframe)] for i, f in enumerate(frames)
        ]
    paths = set(out["paths"])
    for p in ("moov/mvex/trex", "moov/trak/mdia/minf/stbl/stsd/snis", "moof/traf/tfdt", "moof/traf/trun", "mdat"):
        assert p in paths
