"""Which local addresses ICE offers as host candidates.

aioice offers every address of every interface except 127.0.0.1. Two uses need control over
that: tests and benchmarks that must keep traffic on the loopback interface (or inside a test
network namespace), and boards with several interfaces where only one should carry video.
`restrict_host_addresses(["127.0.0.1"])` (or the environment variable SNISD_ICE_ADDRESSES,
comma-separated) makes ICE offer exactly the given addresses, loopback included.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

log = logging.getLogger("snisd.transport")

ENV_VAR = "SNISD_ICE_ADDRESSES"
_original = None


def restrict_host_addresses(addresses: Iterable[str] | None) -> None:
    """Offer only `addresses` as ICE host candidates in this process (None or empty: undo)."""
    global _original
    import aioice.ice as ice

    if _original is None:
        _original = ice.get_host_addresses
    wanted = [a.strip() for a in (addresses or []) if a.strip()]
    if not wanted:
        ice.get_host_addresses = _original
        return

    def only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in wanted if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    ice.get_host_addresses = only
    log.debug("ICE host candidates restricted to %s", ", ".join(wanted))


def apply_environment() -> None:
    """Apply SNISD_ICE_ADDRESSES when it is set."""
    value = os.environ.get(ENV_VAR, "")
    if value.strip():
        restrict_host_addresses(value.split(","))


def rtc_configuration(ice_servers: Iterable | None):
    """An RTCConfiguration with exactly the given servers (never aiortc's public STUN default).

    Entries are URLs ("stun:host:port", "turn:host") or maps {urls, username, credential}.
    """
    from aiortc import RTCConfiguration, RTCIceServer

    servers = []
    for s in ice_servers or []:
        if isinstance(s, str):
            servers.append(RTCIceServer(urls=s))
        else:
            servers.append(RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential")))
    return RTCConfiguration(iceServers=servers)
