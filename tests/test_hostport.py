"""HOST:PORT parsing for the listen and metrics addresses."""

from __future__ import annotations

import pytest


def test_host_port_forms():
    from snisd.hostport import parse_host_port

    assert parse_host_port("127.0.0.1:9810") == ("127.0.0.1", 9810)
    assert parse_host_port("[::1]:8080") == ("::1", 8080)
    assert parse_host_port(":8080") == ("0.0.0.0", 8080)
    assert parse_host_port("localhost:0") == ("localhost", 0)  # any free port
    assert parse_host_port("cam.local:443", default_host="x") == ("cam.local", 443)
    for bad in ("9810", "host:65536", "host:port", "a b:1", "::1:80"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_host_port(bad)
