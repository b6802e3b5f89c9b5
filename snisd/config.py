"""Daemon configuration: a YAML file read into dataclasses, checked before anything starts.

Every key, its default and its meaning are documented in the top-level ``config.yaml``; the daemon
reads ``/etc/snisd/config.yaml`` when it exists (or the file given by ``--config``), then applies
command-line overrides. Unknown keys and bad values raise :class:`~snisd.errors.ConfigError` naming
the key path (``codec.tiers``), the expected form and the value found.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from .codec.presets import PRESETS
from .errors import ConfigError
from .hostport import is_host_port

DEFAULT_PATH = "/etc/snisd/config.yaml"
LOG_LEVELS = ("debug", "info", "warning", "error")
PIXEL_FORMATS = ("auto", "yuyv", "mjpeg")


def _opt(default: Any, kind: str, expected: str = "", ok: Callable[[Any], bool] | None = None) -> Any:
    """A dataclass field with its value kind and an optional range check for validation."""
    meta = {"kind": kind, "expected": expected, "ok": ok}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _peer_ok(v: str | None) -> bool:
    return v is None or bool(re.fullmatch(r"https?://\S+", v))


@dataclass
class CameraConfig:
    source: str = _opt(
        "0", "str", "a camera spec: N, picamera:N, /dev/videoN, file:PATH or synthetic", lambda v: bool(v.strip())
    )
    width: int = _opt(
        1280,
        "int",
        "an even integer 16..8192 (0 with file: keeps the clip's size)",
        lambda v: v == 0 or (16 <= v <= 8192 and v % 2 == 0),
    )
    height: int = _opt(
        720,
        "int",
        "an even integer 16..8192 (0 with file: keeps the clip's size)",
        lambda v: v == 0 or (16 <= v <= 8192 and v % 2 == 0),
    )
    fps: float = _opt(30.0, "float", "a frame rate 1..120", lambda v: 1 <= v <= 120)
    pixel_format: str = _opt("auto", "str", f"one of {', '.join(PIXEL_FORMATS)}", lambda v: v in PIXEL_FORMATS)
    read_timeout_s: float = _opt(2.0, "float", "seconds 0.1..60", lambda v: 0.1 <= v <= 60)


@dataclass
class CodecConfig:
    qp: int = _opt(28, "int", "an integer 0..63", lambda v: 0 <= v <= 63)
    tiers: int = _opt(3, "int", "an integer 1..8", lambda v: 1 <= v <= 8)
    tier_ratio: int = _opt(8, "int", "an integer 1..32 (1/8 octaves)", lambda v: 1 <= v <= 32)
    # the tier step ratio of a stream whose rate control follows a live sender's target: 3 puts the
    # base at about a third of the target (8, the fixed-qp default, leaves it 7-15 %)
    live_tier_ratio: int = _opt(3, "int", "an integer 1..32 (1/8 octaves)", lambda v: 1 <= v <= 32)
    keyframe_interval_s: float = _opt(
        10.0, "float", "seconds >= 0 (0: keyframes on request only)", lambda v: 0 <= v <= 3600
    )
    switch_interval_s: float = _opt(1.0, "float", "seconds >= 0 (0: at keyframes only)", lambda v: 0 <= v <= 3600)
    model: str | None = _opt(None, "optstr", "a path to a .tflite model, or null for the shipped one")
    threads: int = _opt(1, "int", "an integer 1..16", lambda v: 1 <= v <= 16)
    preset: str = _opt("realtime", "str", f"one of {', '.join(PRESETS)}", lambda v: v in PRESETS)
    rate_control: bool = _opt(True, "bool", "true or false")
    frame_budget_ms: float = _opt(300.0, "float", "milliseconds 20..5000", lambda v: 20 <= v <= 5000)
    min_qp: int = _opt(4, "int", "an integer 0..63", lambda v: 0 <= v <= 63)
    max_qp: int = _opt(63, "int", "an integer 0..63", lambda v: 0 <= v <= 63)


@dataclass
class RecordConfig:
    path: str | None = _opt(
        None, "optstr", "a file path ending in .mp4, or null", lambda v: v is None or v.endswith(".mp4")
    )
    fsync: bool = _opt(False, "bool", "true or false")


@dataclass
class TransportConfig:
    peer: str | None = _opt(None, "optstr", "an http(s):// WHIP endpoint URL, or null", _peer_ok)
    token: str | None = _opt(None, "optstr", "a bearer token string, or null")
    ca_file: str | None = _opt(None, "optstr", "a path to PEM CA certificates for an https:// peer, or null")
    ice_servers: list = _opt([], "ice", "a list of URLs (stun:/turn:) or {urls, username, credential} maps")
    start_kbps: float = _opt(150.0, "float", "kbit/s 10..100000", lambda v: 10 <= v <= 100000)
    min_kbps: float = _opt(30.0, "float", "kbit/s 10..100000", lambda v: 10 <= v <= 100000)
    max_kbps: float = _opt(20000.0, "float", "kbit/s 10..1000000", lambda v: 10 <= v <= 1000000)


@dataclass
class MetricsConfig:
    enabled: bool = _opt(False, "bool", "true or false")
    listen: str = _opt("127.0.0.1:9810", "str", "HOST:PORT", is_host_port)


@dataclass
class PipelineConfig:
    queue_size: int = _opt(2, "int", "an integer 1..64", lambda v: 1 <= v <= 64)
    status_interval_s: float = _opt(5.0, "float", "seconds 0.5..3600", lambda v: 0.5 <= v <= 3600)


@dataclass
class Config:
    camera: CameraConfig = field(default_factory=CameraConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    log_level: str = _opt("info", "str", f"one of {', '.join(LOG_LEVELS)}", lambda v: v in LOG_LEVELS)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Config:
        cfg = cls()
        if data is None:
            return cfg
        _merge(cfg, data, "")
        _check_ranges(cfg)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def override(self, updates: Mapping[str, Any]) -> Config:
        """A copy with dotted keys replaced (``{"camera.fps": 15}``); None values are ignored."""
        cfg = Config.from_dict(self.to_dict())
        for key, value in updates.items():
            if value is None:
                continue
            *parents, leaf = key.split(".")
            target: Any = cfg
            for i, part in enumerate(parents):
                if not dataclasses.is_dataclass(target) or part not in _field_map(target):
                    raise ConfigError(".".join(parents[: i + 1]), "a known section", part)
                target = getattr(target, part)
            _set(target, leaf, value, key)
        _check_ranges(cfg)
        return cfg


def _check_ranges(cfg: Config) -> None:
    """Keys that bound each other: the rate-control qp range and the capacity estimate's range."""
    c, t = cfg.codec, cfg.transport
    if c.min_qp > c.max_qp:
        raise ConfigError("codec.min_qp", f"at most codec.max_qp ({c.max_qp})", c.min_qp)
    if t.min_kbps > t.max_kbps:
        raise ConfigError("transport.min_kbps", f"at most transport.max_kbps ({t.max_kbps:g})", t.min_kbps)
    if not t.min_kbps <= t.start_kbps <= t.max_kbps:
        raise ConfigError(
            "transport.start_kbps",
            f"between transport.min_kbps and max_kbps ({t.min_kbps:g}..{t.max_kbps:g})",
            t.start_kbps,
        )


def _field_map(obj: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


def _merge(obj: Any, data: Any, prefix: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip(".") or "(top level)", "a mapping of keys to values", data)
    fields = _field_map(obj)
    for key, value in data.items():
        path = f"{prefix}{key}"
        if not isinstance(key, str) or key not in fields:
            raise ConfigError(path, f"one of the keys {', '.join(fields)}", key)
        sub = getattr(obj, key)
        if dataclasses.is_dataclass(sub):
            if value is not None:  # an empty section in YAML reads as null: keep its defaults
                _merge(sub, value, f"{path}.")
        else:
            _set(obj, key, value, path)


def _set(obj: Any, key: str, value: Any, path: str) -> None:
    fields = _field_map(obj)
    if key not in fields:
        raise ConfigError(path, f"one of the keys {', '.join(fields)}", key)
    meta = fields[key].metadata
    if "kind" not in meta:
        raise ConfigError(path, "a section (a mapping)", value)
    setattr(obj, key, _check(meta, value, path))


def _check(meta: Mapping[str, Any], value: Any, path: str) -> Any:
    kind, expected, ok = meta["kind"], meta["expected"], meta["ok"]
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, expected, value)
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ConfigError(path, expected, value)
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(path, expected, value)
    elif kind == "str":
        if not isinstance(value, str):
            raise ConfigError(path, expected, value)
    elif kind == "optstr":
        if value is not None and not isinstance(value, str):
            raise ConfigError(path, expected, value)
    elif kind == "ice":
        value = _check_ice(value, path, expected)
    if ok is not None and not ok(value):
        raise ConfigError(path, expected, value)
    return value


def _check_ice(value: Any, path: str, expected: str) -> list:
    if not isinstance(value, list):
        raise ConfigError(path, expected, value)
    out: list = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if isinstance(item, str):
            item = {"urls": [item]}
        if not isinstance(item, Mapping):
            raise ConfigError(where, "a URL string or a {urls, username, credential} map", item)
        unknown = set(item) - {"urls", "username", "credential"}
        if unknown:
            raise ConfigError(
                f"{where}.{sorted(unknown)[0]}", "one of the keys urls, username, credential", sorted(unknown)[0]
            )
        urls = item.get("urls")
        urls = [urls] if isinstance(urls, str) else urls
        if (
            not isinstance(urls, list)
            or not urls
            or not all(isinstance(u, str) and re.match(r"(stun|stuns|turn|turns):\S+$", u) for u in urls)
        ):
            raise ConfigError(f"{where}.urls", "one or more stun:/turn: URLs", item.get("urls"))
        entry: dict[str, Any] = {"urls": urls}
        for k in ("username", "credential"):
            if k in item:
                if not isinstance(item[k], str):
                    raise ConfigError(f"{where}.{k}", "a string", item[k])
                entry[k] = item[k]
        out.append(entry)
    return out


def load_config(path: str | os.PathLike | None = None, *, default_path: str = DEFAULT_PATH) -> Config:
    """Read ``path`` (must exist), else ``default_path`` if it exists, else the built-in defaults."""
    if path is None:
        if not os.path.exists(default_path):
            return Config()
        path = default_path
    path = str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError("--config", "an existing YAML file", path) from None
    except OSError as exc:
        raise ConfigError("--config", "a readable YAML file", f"{path} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError("(file)", "valid YAML", f"{path}{where}: {getattr(exc, 'problem', exc)}") from None
    return Config.from_dict(data)


def iter_keys(obj: Any = None, prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf key path with its default, in declaration order (used to check config.yaml)."""
    obj = Config() if obj is None else obj
    out: list[tuple[str, Any]] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.extend(iter_keys(value, f"{prefix}{f.name}."))
        else:
            out.append((f"{prefix}{f.name}", value))
    return out
