"""The receiver's config file (``snisd receive --config FILE``): YAML, checked key by key.

    listen: "0.0.0.0:8443"
    allow_open: false            # serve without any token off loopback (explicit opt-in)
    tls: {cert: server.pem, key: server.key}
    record_dir: /var/lib/snisd/received
    recording: {max_mb: 2000, min_free_mb: 1000}
    max_streams: 16
    max_frame_bytes: 8388608     # one tier of one frame, reassembled
    cors_origins: ["*"]          # origins allowed to use WHEP from a browser
    publishers:                  # publish scope, one token per stream source
      cam1:
        token: "..."
        forward: {url: "https://media.example.org/cam1/whip", token: "...", codec: h264, ca_file: null}
    viewers:                     # view scope: live view, WHEP, stats, metrics
      alice: {token: "..."}

Unknown keys and bad values raise ConfigError naming the key path (``publishers.cam1.forward.codec``),
the expected form and the value found, as the daemon's config does (snisd/config.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import ConfigError
from ..hostport import is_host_port
from ..reencode import CODECS
from .auth import PUBLISH, VIEW, Access, Grant
from .forward import ForwardTarget

MIN_TOKEN = 16  # characters: a config token is a secret, not a password someone types


@dataclass
class ReceiverConfig:
    listen: str | None = None
    allow_open: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    record_dir: str | None = None
    max_recording_bytes: int = 0
    min_free_bytes: int = 0
    max_streams: int = 16
    max_frame_bytes: int = 8 << 20
    cors_origins: tuple[str, ...] = ("*",)
    grants: list[Grant] = field(default_factory=list)
    forwards: dict[str, ForwardTarget] = field(default_factory=dict)

    def access(self) -> Access:
        return Access(self.grants)


def _keys(data: Any, path: str, allowed: tuple[str, ...]) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(path or "(top level)", "a mapping of keys to values", data)
    for k in data:
        if k not in allowed:
            raise ConfigError(f"{path}.{k}" if path else str(k), f"one of the keys {', '.join(allowed)}", k)
    return data


def _str(v: Any, path: str, expected: str = "a string", optional: bool = True) -> str | None:
    if v is None and optional:
        return None
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(path, expected, v)
    return v


def _num(v: Any, path: str, lo: float, hi: float, expected: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise ConfigError(path, expected, v)
    return v


def _token(v: Any, path: str) -> str:
    t = _str(v, path, f"a token string of at least {MIN_TOKEN} characters", optional=False)
    assert t is not None
    if len(t) < MIN_TOKEN:
        raise ConfigError(path, f"a token string of at least {MIN_TOKEN} characters", f"{len(t)} characters")
    return t


def parse_receiver_config(data: Any) -> ReceiverConfig:
    top = _keys(
        data if data is not None else {},
        "",
        (
            "listen",
            "allow_open",
            "tls",
            "record_dir",
            "recording",
            "max_streams",
            "max_frame_bytes",
            "cors_origins",
            "publishers",
            "viewers",
        ),
    )
    cfg = ReceiverConfig()
    if "listen" in top:
        if not isinstance(top["listen"], str) or not is_host_port(top["listen"]):
            raise ConfigError("listen", "HOST:PORT", top["listen"])
        cfg.listen = top["listen"]
    if "allow_open" in top:
        if not isinstance(top["allow_open"], bool):
            raise ConfigError("allow_open", "true or false", top["allow_open"])
        cfg.allow_open = top["allow_open"]
    if top.get("tls") is not None:
        tls = _keys(top["tls"], "tls", ("cert", "key"))
        cfg.tls_cert = _str(tls.get("cert"), "tls.cert", "a path to a PEM certificate (chain)", optional=False)
        cfg.tls_key = _str(tls.get("key"), "tls.key", "a path to a PEM private key", optional=False)
    cfg.record_dir = _str(top.get("record_dir"), "record_dir", "a directory path, or null")
    if top.get("recording") is not None:
        rec = _keys(top["recording"], "recording", ("max_mb", "min_free_mb"))
        cfg.max_recording_bytes = int(
            _num(rec.get("max_mb", 0), "recording.max_mb", 0, 1e9, "megabytes >= 0 (0: no limit)") * 1e6
        )
        cfg.min_free_bytes = int(
            _num(rec.get("min_free_mb", 0), "recording.min_free_mb", 0, 1e9, "megabytes >= 0 (0: no floor)") * 1e6
        )
    if "max_streams" in top:
        cfg.max_streams = int(_num(top["max_streams"], "max_streams", 1, 1024, "an integer 1..1024"))
    if "max_frame_bytes" in top:
        cfg.max_frame_bytes = int(
            _num(top["max_frame_bytes"], "max_frame_bytes", 1 << 10, 1 << 30, "bytes 1024..2**30")
        )
    if "cors_origins" in top:
        co = top["cors_origins"]
        if not isinstance(co, list) or not all(isinstance(o, str) and o for o in co):
            raise ConfigError("cors_origins", 'a list of origins ("*" for any, [] for none)', co)
        cfg.cors_origins = tuple(co)
    seen: dict[str, str] = {}
    for section, scope in (("publishers", PUBLISH), ("viewers", VIEW)):
        entries = top.get(section) or {}
        if not isinstance(entries, dict):
            raise ConfigError(section, "a mapping of names to {token: ...}", entries)
        for name, entry in entries.items():
            path = f"{section}.{name}"
            allowed = ("token", "forward") if scope == PUBLISH else ("token",)
            e = _keys(entry, path, allowed)
            token = _token(e.get("token"), f"{path}.token")
            if token in seen:
                raise ConfigError(
                    f"{path}.token", "a token no other publisher or viewer uses", f"same as {seen[token]}"
                )
            seen[token] = path
            cfg.grants.append(Grant(str(name), token, frozenset((scope,))))
            if e.get("forward") is not None:
                cfg.forwards[str(name)] = _forward(e["forward"], f"{path}.forward")
    return cfg


def _forward(data: Any, path: str) -> ForwardTarget:
    f = _keys(data, path, ("url", "token", "codec", "ca_file"))
    url = _str(f.get("url"), f"{path}.url", "an http(s):// WHIP URL", optional=False)
    assert url is not None
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{path}.url", "an http(s):// WHIP URL", url)
    codec = f.get("codec", "h264")
    if codec not in CODECS:
        raise ConfigError(f"{path}.codec", f"one of {', '.join(CODECS)}", codec)
    return ForwardTarget(
        url,
        _str(f.get("token"), f"{path}.token", "a bearer token string, or null"),
        codec,
        _str(f.get("ca_file"), f"{path}.ca_file", "a path to PEM CA certificates, or null"),
    )


def load_receiver_config(path: str | os.PathLike) -> ReceiverConfig:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError("--config", "an existing YAML file", str(path)) from None
    except OSError as exc:
        raise ConfigError("--config", "a readable YAML file", f"{path} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError("(file)", "valid YAML", f"{path}: {getattr(exc, 'problem', exc)}") from None
    return parse_receiver_config(data)
