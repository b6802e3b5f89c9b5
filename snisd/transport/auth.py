"""Who may do what on the receiver: bearer tokens with a scope, checked in constant time.

Two scopes: ``publish`` (POST/DELETE on /whip) and ``view`` (the live view, WHEP playback and the
stats). A publisher's token names its stream (the receiver config's ``publishers`` section), so
per-stream settings such as forwarding follow the token; a viewer's token cannot publish. With no
grant at all the receiver is open (it then binds to loopback unless told otherwise, receiver.py).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

PUBLISH = "publish"
VIEW = "view"
SCOPES = (PUBLISH, VIEW)


@dataclass(frozen=True)
class Grant:
    """One token and what it allows; `name` is the publisher's or viewer's name in the config."""

    name: str
    token: str
    scopes: frozenset[str]


OPEN = Grant("", "", frozenset(SCOPES))  # what everyone gets when no token is configured


class Access:
    """The grants of one receiver and the checks of a request against them."""

    def __init__(self, grants: list[Grant] | tuple[Grant, ...] = ()) -> None:
        self.grants = tuple(grants)

    @classmethod
    def single_token(cls, token: str | None) -> Access:
        """`--token T`: one token for both scopes (no token: open)."""
        return cls([Grant("token", token, frozenset(SCOPES))] if token else [])

    @property
    def open(self) -> bool:
        return not self.grants

    def match(self, presented: str | None) -> Grant | None:
        """The grant whose token equals `presented`, comparing against every grant in constant
        time (no early exit, so timing tells nothing about which token came close)."""
        if self.open:
            return OPEN
        if not presented:
            return None
        got = presented.encode()
        found = None
        for g in self.grants:
            if hmac.compare_digest(got, g.token.encode()):
                found = g
        return found

    def check(self, request, scope: str, allow_query: bool = False) -> tuple[Grant | None, int]:
        """(grant, 0) when `request` may act in `scope`; else (None, 401 no/unknown token or 403
        a valid token of another scope). `allow_query` also accepts ``?token=`` (pages a
        browser opens by URL)."""
        presented = None
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            presented = header[7:].strip()
        elif allow_query:
            presented = request.query.get("token")
        grant = self.match(presented)
        if grant is None:
            return None, 401
        if scope not in grant.scopes:
            return None, 403
        return grant, 0


def refusal(status: int):
    """The HTTP answer for a refused request (401 with a challenge, or 403)."""
    from aiohttp import web

    if status == 403:
        return web.Response(status=403, text="this token is not allowed to do that\n")
    return web.Response(
        status=401, text="missing or wrong bearer token\n", headers={"WWW-Authenticate": 'Bearer realm="snisd"'}
    )
