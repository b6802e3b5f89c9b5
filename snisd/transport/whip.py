"""WHIP signalling (RFC 9725): POST an SDP offer, read the `201 Created` answer and its
`Location`, DELETE that resource at the end.

Used by the sender sink (sender.py) and by the receiver's forwarder (forward.py). ``https://``
endpoints are verified against the system's CA certificates, or against `ca_file`'s when given
(a private CA).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from urllib.parse import urljoin, urlparse

from .errors import TransportError, WhipError

log = logging.getLogger("snisd.transport.whip")

SDP_TYPE = "application/sdp"


class WhipClient:
    """WHIP signalling against one endpoint URL."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0, ca_file: str | None = None) -> None:
        scheme = urlparse(url).scheme
        if scheme not in ("http", "https"):
            raise TransportError(f"WHIP endpoint {url!r}: expected an http:// or https:// URL")
        self.url = url
        self.token = token
        self.timeout = timeout
        self.ca_file = ca_file
        self._ssl: ssl.SSLContext | None = None
        if ca_file:
            try:
                self._ssl = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise TransportError(f"CA file {ca_file!r} is not usable: {exc}") from None

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = dict(extra or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def _http(self, timeout: float):
        import aiohttp

        connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl is not None else None
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout), connector=connector)

    async def publish(self, offer_sdp: str) -> tuple[str, str]:
        """POST the offer; returns (answer SDP, absolute resource URL). Raises WhipError/TransportError."""
        import aiohttp

        try:
            async with self._http(self.timeout) as http:
                async with http.post(
                    self.url, data=offer_sdp.encode(), headers=self._headers({"Content-Type": SDP_TYPE})
                ) as resp:
                    body = await resp.text(errors="replace")
                    if resp.status != 201:
                        raise WhipError(self.url, resp.status, resp.reason or "", body.strip()[:200])
                    ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                    if ctype != SDP_TYPE:
                        raise WhipError(
                            self.url,
                            resp.status,
                            resp.reason or "",
                            f"answer has Content-Type {ctype!r}, expected {SDP_TYPE}",
                        )
                    location = resp.headers.get("Location")
                    if not location:
                        raise WhipError(self.url, resp.status, resp.reason or "", "no Location header")
                    return body, urljoin(str(resp.url), location)
        except WhipError:
            raise
        except aiohttp.ClientConnectorCertificateError as exc:
            raise TransportError(
                f"WHIP endpoint {self.url}: certificate not trusted: {exc.certificate_error}"
            ) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise TransportError(f"cannot reach WHIP endpoint {self.url}: {type(exc).__name__}: {exc}") from None

    async def delete(self, resource: str, timeout: float = 2.0) -> int | None:
        """DELETE the session resource; returns the HTTP status (None when unreachable)."""
        import aiohttp

        try:
            async with self._http(timeout) as http:
                async with http.delete(resource, headers=self._headers()) as resp:
                    return resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.debug("DELETE %s failed: %s", resource, exc)
            return None
