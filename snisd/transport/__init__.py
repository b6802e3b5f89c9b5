"""WebRTC transport with WHIP signalling (docs/TRANSPORT.md).

whip.py      WHIP client and the sender sink (WhipSender, run_sender)
receiver.py  the WHIP endpoint behind `snisd receive` (run_receiver, add_receiver_arguments)
channels.py  data-channel labels, message framing, per-tier fMP4 fragments
ice.py       ICE configuration (explicit servers, host-candidate addresses)
errors.py    TransportError, WhipError

aiortc and aiohttp are imported lazily, so importing this package costs nothing.
"""

from .errors import TransportError, WhipError

__all__ = ["TransportError", "WhipError", "WhipSender", "run_sender", "run_receiver", "add_receiver_arguments"]


def __getattr__(name: str):
    if name in ("WhipSender", "WhipClient", "run_sender"):
        from . import whip

        return getattr(whip, name)
    if name in ("run_receiver", "add_receiver_arguments", "Receiver"):
        from . import receiver

        return getattr(receiver, name)
    raise AttributeError(name)
