"""YAML configuration: defaults, config.yaml documents every key, errors name key, form and value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from snisd.config import Config, iter_keys, load_config
from snisd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIG_YAML = ROOT / "config.yaml"


def test_shipped_config_yaml_equals_the_defaults():
    assert load_config(CONFIG_YAML) == Config()


def test_shipped_config_yaml_documents_every_key():
    text = CONFIG_YAML.read_text()
    lines = text.splitlines()
    data = yaml.safe_load(text)
    for path, default in iter_keys():
        node = data
        for part in path.split("."):
            assert part in node, f"{path} missing from config.yaml"
            node = node[part]
        assert node == default, f"{path}: config.yaml says {node!r}, the default is {default!r}"
        leaf = path.split(".")[-1]
        i = next(i for i, line in enumerate(lines) if re.match(rf"\s*{leaf}:", line))
        assert lines[i - 1].strip().startswith("#"), f"{path} has no comment above it"


def test_required_sections_and_defaults():
    c = Config()
    assert (c.camera.source, c.camera.width, c.camera.height, c.camera.fps) == ("0", 1280, 720, 30.0)
    assert (c.codec.qp, c.codec.tiers, c.codec.tier_ratio) == (28, 3, 8)
    assert c.codec.model is None and c.codec.threads == 1
    assert c.record.path is None and c.record.fsync is False
    assert c.transport.ice_servers == [] and c.transport.peer is None and c.transport.token is None
    assert c.metrics.enabled is False and c.metrics.listen == "127.0.0.1:9810"
    assert c.log_level == "info"


def test_missing_default_file_gives_defaults(tmp_path):
    assert load_config(None, default_path=str(tmp_path / "absent.yaml")) == Config()
    p = tmp_path / "c.yaml"
    p.write_text("codec:\n  tiers: 4\n")
    assert load_config(None, default_path=str(p)).codec.tiers == 4


def test_empty_file_and_empty_sections(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("")
    assert load_config(p) == Config()
    p.write_text("camera:\nmetrics:\n")
    assert load_config(p) == Config()


@pytest.mark.parametrize(
    "doc, key, found",
    [
        ("codec: {tiers: 0}", "codec.tiers", 0),
        ("codec: {tiers: 9}", "codec.tiers", 9),
        ("codec: {tiers: three}", "codec.tiers", "three"),
        ("codec: {tiers: 2.5}", "codec.tiers", 2.5),
        ("codec: {qp: true}", "codec.qp", True),
        ("codec: {qp: 64}", "codec.qp", 64),
        ("codec: {tierz: 3}", "codec.tierz", "tierz"),
        ("codec: {keyframe_interval_s: -1}", "codec.keyframe_interval_s", -1.0),
        ("codec: {model: 5}", "codec.model", 5),
        ("codec: 3", "codec", 3),
        ("camera: {width: 1281}", "camera.width", 1281),
        ("camera: {fps: 0}", "camera.fps", 0.0),
        ("camera: {source: ''}", "camera.source", ""),
        ("camera: {source: 0}", "camera.source", 0),
        ("camera: {pixel_format: rgb}", "camera.pixel_format", "rgb"),
        ("record: {fsync: 'yes please'}", "record.fsync", "yes please"),
        ("record: {path: out.avi}", "record.path", "out.avi"),
        ("transport: {peer: 'ftp://x'}", "transport.peer", "ftp://x"),
        ("transport: {ice_servers: 'stun:x'}", "transport.ice_servers", "stun:x"),
        ("transport: {ice_servers: ['http://x']}", "transport.ice_servers[0].urls", ["http://x"]),
        ("transport: {ice_servers: [{urls: 'turn:x', password: p}]}", "transport.ice_servers[0].password", "password"),
        ("metrics: {enabled: 1}", "metrics.enabled", 1),
        ("metrics: {listen: 'localhost'}", "metrics.listen", "localhost"),
        ("metrics: {listen: 'localhost:99999'}", "metrics.listen", "localhost:99999"),
        ("log_level: loud", "log_level", "loud"),
        ("bogus: 1", "bogus", "bogus"),
        ("- a\n- b", "(top level)", ["a", "b"]),
    ],
)
def test_bad_values_name_the_key(tmp_path, doc, key, found):
    p = tmp_path / "c.yaml"
    p.write_text(doc + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert err.value.key == key
    assert err.value.found == found
    assert err.value.expected
    assert key in str(err.value) and "expected" in str(err.value)


def test_ice_servers_forms():
    c = Config.from_dict(
        {
            "transport": {
                "ice_servers": [
                    "stun:stun.example.org:3478",
                    {"urls": ["turn:t.example.org"], "username": "u", "credential": "c"},
                ]
            }
        }
    )
    assert c.transport.ice_servers == [
        {"urls": ["stun:stun.example.org:3478"]},
        {"urls": ["turn:t.example.org"], "username": "u", "credential": "c"},
    ]


def test_yaml_syntax_error_and_missing_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("codec:\n  tiers: [3\n")
    with pytest.raises(ConfigError, match="valid YAML") as err:
        load_config(p)
    assert "line" in str(err.value)
    with pytest.raises(ConfigError, match="existing YAML file"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_are_checked_and_leave_the_original_alone():
    base = Config()
    c = base.override({"camera.fps": 15, "record.path": "a.mp4", "codec.qp": None})
    assert c.camera.fps == 15.0 and c.record.path == "a.mp4" and c.codec.qp == 28
    assert base.camera.fps == 30.0
    with pytest.raises(ConfigError) as err:
        base.override({"codec.tiers": 0})
    assert err.value.key == "codec.tiers"
    with pytest.raises(ConfigError):
        base.override({"nope.tiers": 1})
    with pytest.raises(ConfigError):
        base.override({"codec": 1})


@given(st.integers(-1000, 1000))
def test_tiers_range_property(n):
    try:
        c = Config.from_dict({"codec": {"tiers": n}})
    except ConfigError as exc:
        assert not 1 <= n <= 8 and exc.key == "codec.tiers" and exc.found == n
    else:
        assert 1 <= n <= 8 and c.codec.tiers == n


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(), max_size=3))
def test_unknown_top_level_keys_property(d):
    known = {k for k, _ in iter_keys()} | {"camera", "codec", "record", "transport", "metrics", "pipeline"}
    if set(d) <= known:
        return
    with pytest.raises(ConfigError):
        Config.from_dict(d)


def test_rate_control_keys_are_checked_alone_and_against_each_other():
    c = Config.from_dict(
        {
            "codec": {"frame_budget_ms": 250, "min_qp": 10, "max_qp": 50},
            "transport": {"start_kbps": 500, "min_kbps": 100, "max_kbps": 4000},
        }
    )
    assert (c.codec.frame_budget_ms, c.codec.min_qp, c.transport.start_kbps) == (250, 10, 500)
    for data, key in (
        ({"codec": {"frame_budget_ms": 5}}, "codec.frame_budget_ms"),
        ({"codec": {"rate_control": "yes"}}, "codec.rate_control"),
        ({"codec": {"min_qp": 40, "max_qp": 30}}, "codec.min_qp"),
        ({"transport": {"min_kbps": 500, "max_kbps": 400}}, "transport.min_kbps"),
        ({"transport": {"start_kbps": 50, "min_kbps": 100}}, "transport.start_kbps"),
    ):
        with pytest.raises(ConfigError) as err:
            Config.from_dict(data)
        assert err.value.key == key, (data, err.value)
    with pytest.raises(ConfigError) as err:
        Config().override({"codec.min_qp": 63, "codec.max_qp": 10})
    assert err.value.key == "codec.min_qp"
