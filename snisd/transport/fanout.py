"""One stream's re-encoded video, shared by everyone who consumes it.

`Fanout` owns the stream's LiveEncoder (snisd/reencode.py) and hands each encoded picture to
every subscribed `PacketTrack` - a live-view viewer or the forwarder's outgoing track - which
aiortc only packetizes (RTCRtpSender.pack). The encoder runs while anyone is subscribed. A
track that falls behind skips to the next keyframe; a new one asks for a keyframe.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..reencode import LiveEncoder

log = logging.getLogger("snisd.transport.fanout")

VIEWER_QUEUE = 30  # packets a track may lag behind before it skips to the next keyframe


def packet_track_class():
    """The PacketTrack class (built lazily: aiortc is imported only when it is needed)."""
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    class PacketTrack(MediaStreamTrack):
        """A video track of already-encoded packets from a stream's Fanout."""

        kind = "video"

        def __init__(self, on_stop=None) -> None:
            super().__init__()
            self.queue: asyncio.Queue = asyncio.Queue()
            self.waiting_key = True
            self._on_stop = on_stop

        def offer(self, packets, keyframe: bool) -> bool:
            """Queue a frame's packets; returns False when this track needs a keyframe."""
            if self.readyState != "live":
                return True
            if self.waiting_key and not keyframe:
                return False
            if self.queue.qsize() >= VIEWER_QUEUE:
                self.waiting_key = True
                while not self.queue.empty():
                    self.queue.get_nowait()
                return keyframe
            self.waiting_key = False
            for p in packets:
                self.queue.put_nowait(p)
            return True

        async def recv(self):
            if self.readyState != "live":
                raise MediaStreamError
            item = await self.queue.get()
            if item is None:
                raise MediaStreamError
            return item

        def stop(self) -> None:
            if self.readyState == "live":
                self.queue.put_nowait(None)
            super().stop()
            if self._on_stop is not None:
                self._on_stop(self)

    return PacketTrack


_track_cls = None


def new_track(on_stop=None):
    global _track_cls
    if _track_cls is None:
        _track_cls = packet_track_class()
    return _track_cls(on_stop)


class Fanout:
    """The re-encoder of one stream and the tracks it feeds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fps: float, codec: str = "vp8") -> None:
        self.encoder = LiveEncoder(loop, self._fan_out, fps, codec)
        self.tracks: set[Any] = set()

    @property
    def codec(self) -> str:
        return self.encoder.codec

    def put(self, frame) -> None:
        """Decoder thread: the latest decoded picture."""
        self.encoder.put(frame)

    def subscribe(self, track) -> None:
        self.tracks.add(track)
        self.encoder.start()
        self.encoder.request_keyframe()

    def unsubscribe(self, track) -> None:
        self.tracks.discard(track)
        if not self.tracks:
            self.encoder.stop()

    def _fan_out(self, packets, keyframe: bool) -> None:
        need_key = False
        for track in list(self.tracks):
            if not track.offer(packets, keyframe):
                need_key = True
        if need_key:
            self.encoder.request_keyframe()

    def close(self) -> None:
        self.encoder.stop()
        self.tracks.clear()
