"""Typed errors of the WebRTC transport."""

from __future__ import annotations

from ..errors import SnisError


class TransportError(SnisError):
    """The stream cannot be sent or received: peer unreachable, signalling refused, bad message."""


class WhipError(TransportError):
    """A WHIP endpoint answered with an HTTP error (or an unusable success); carries the status."""

    def __init__(self, url: str, status: int, reason: str, detail: str = "") -> None:
        text = f"WHIP endpoint {url} answered {status} {reason}"
        if detail:
            text += f": {detail}"
        super().__init__(text)
        self.url = url
        self.status = status
        self.reason = reason

    @property
    def unauthorized(self) -> bool:
        return self.status in (401, 403)
