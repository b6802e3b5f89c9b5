"""HOST:PORT addresses, as written in the config and on the command line.

One parser for every listening socket (metrics endpoint, receiver): an IPv4 address, a host
name or a bracketed IPv6 address, a colon and a port 0-65535 (0: any free port).
"""

from __future__ import annotations

import re

_FORM = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]*):(\d{1,5})")


def parse_host_port(value: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """`value` as (host, port); an empty host is `default_host`. Raises ValueError naming the value."""
    m = _FORM.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None or int(m.group(2)) > 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (port 0-65535, IPv6 in brackets)")
    return m.group(1).strip("[]") or default_host, int(m.group(2))


def is_host_port(value: str) -> bool:
    try:
        parse_host_port(value)
    except ValueError:
        return False
    return True
