"""`snisd export`: a SNIS recording to an H.264 MP4 any player opens, checked with real ffprobe."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from snisd.export import add_export_arguments, export_file, run_export  # noqa: E402
from snisd.files import encode_file, read_stream  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
FRAMES = 4

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed")


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    rec = tmp_path_factory.mktemp("export") / "rec.mp4"
    encode_file(str(DATA / "bikes_12f.mp4"), str(rec), max_frames=FRAMES, tiers=2)
    return rec


def run(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser()
    add_export_arguments(p)
    return run_export(p.parse_args(argv))


def test_export_is_a_normal_h264_mp4(recording, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert run([str(recording), "-o", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == FRAMES and not report["truncated"]
    info = ffprobe(out)
    (st,) = info["streams"]
    assert st["codec_name"] == "h264" and st["pix_fmt"] == "yuv420p"
    assert (st["width"], st["height"]) == (640, 272)
    assert int(st["nb_read_frames"]) == FRAMES
    assert st["r_frame_rate"] == "25/1"
    assert float(info["format"]["duration"]) == pytest.approx(FRAMES / 25, abs=0.011)
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # +faststart: the index first

    # The pictures are the decoded recording (x264 at crf 20 is close to it).
    from snisd.codec.decoder import Decoder
    from snisd.codec.encoder import synthesis_path_for

    seq, frames = read_stream(str(recording))
    dec = Decoder(seq, synthesis_path_for(None))
    want = [dec.decode(ef).y.astype(np.float64) for ef in frames]
    with av.open(str(out)) as c:
        got = [f.to_ndarray()[: f.height].astype(np.float64) for f in c.decode(video=0)]  # Y plane
    assert len(got) == FRAMES
    for g, w in zip(got, want, strict=True):
        mse = np.mean((g - w) ** 2)
        assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 32


def test_crash_cut_recording_exports_complete_fragments(recording, tmp_path, capsys):
    data = recording.read_bytes()
    last_moof = data.rfind(b"moof") - 4
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: last_moof + (len(data) - last_moof) // 2])  # inside the last fragment
    out = tmp_path / "out.mp4"
    assert run([str(cut), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "cut short" in captured.err
    report = json.loads(captured.out)
    assert report["truncated"] and report["frames"] == FRAMES - 1
    (st,) = ffprobe(out)["streams"]
    assert st["codec_name"] == "h264" and int(st["nb_read_frames"]) == FRAMES - 1


def test_export_base_tier_only_and_missing_input(recording, tmp_path):
    out = tmp_path / "base.mp4"
    report = export_file(str(recording), str(out), tiers=1)
    assert report.frames == FRAMES and report.tiers == 1
    from snisd.errors import InputError

    with pytest.raises(InputError):
        export_file(str(tmp_path / "nope.mp4"), str(out))
