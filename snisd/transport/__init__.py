"""WebRTC transport with WHIP signalling (docs/TRANSPORT.md, docs/VIEWING.md).

Sender side (the daemon):
  sender.py           the sender sink WhipSender (+ SenderPolicy, run_sender)
  whip.py             WHIP signalling client (WhipClient), http:// and https://
  estimator.py        the capacity estimate (delay gradient, loss bound, the sender's backlog)
  pacer.py            pacing of the outgoing messages against the estimate
  feedback.py         the tier controller: the tier set that fits the estimate
Both sides:
  channels.py         data-channel labels, message framing, per-tier fMP4 fragments
  clocksync.py        clock offset from control-channel pings; latency percentiles
  ice.py              ICE configuration (explicit servers, host-candidate addresses)
  errors.py           TransportError, WhipError
Receiver side (`snisd receive`):
  receiver.py         command line and serving loop (run_receiver, add_receiver_arguments)
  receiver_config.py  the receiver's YAML config (tokens, forwarding, limits, TLS)
  endpoint.py         the HTTP endpoint (Receiver): WHIP, stats, metrics
  auth.py             bearer tokens with publish/view scopes
  stream.py           one publisher session (Stream)
  assembly.py         frames rebuilt from per-tier samples, released in order
  delay.py            one-way delay trend and queueing estimate
  recording.py        a stream's recording with size and free-disk limits
  decoding.py         a stream's decoder thread
  framelog.py         per-frame JSON log and picture hash
  fanout.py           a stream's re-encoded video shared by viewers and the forwarder
  liveview.py         browser pages and WHEP playback
  forward.py          re-publishing a decoded stream to another WHIP server
  metrics.py          the receiver's Prometheus metrics
  warmup.py           the codec warm-up

aiortc and aiohttp are imported lazily, so importing this package costs nothing.
"""

from .errors import TransportError, WhipError

__all__ = [
    "TransportError",
    "WhipError",
    "WhipSender",
    "WhipClient",
    "run_sender",
    "run_receiver",
    "add_receiver_arguments",
]


def __getattr__(name: str):
    if name in ("WhipSender", "SenderPolicy", "run_sender"):
        from . import sender

        return getattr(sender, name)
    if name == "WhipClient":
        from . import whip

        return whip.WhipClient
    if name in ("run_receiver", "add_receiver_arguments"):
        from . import receiver

        return getattr(receiver, name)
    if name == "Receiver":
        from . import endpoint

        return endpoint.Receiver
    raise AttributeError(name)
