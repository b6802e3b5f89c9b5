"""Frame assembly: a frame's tier samples arrive on separate channels; release frames in order.

A frame is released as soon as all the tiers its sender sent are in, when a later frame's base
has arrived, or when its hold time (counted from its base's arrival) runs out: then it goes
with the prefix of tiers that made it. Enhancements that arrive after their frame was released
are ignored; stray enhancements without a base are forgotten after 2 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

MAX_SLOTS = 64
STRAY_S = 2.0


class Slot:
    """The samples of one frame (by fragment sequence number) collected so far."""

    __slots__ = ("seq", "samples", "first", "deadline", "expected")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.expected = 0  # tiers the sender sent for this frame (from the tier-0 header; 0: all)
        self.samples: dict[int, Any] = {}
        self.first = time.monotonic()
        self.deadline = 0.0

    def prefix(self) -> list:
        """The samples of tiers 0, 1, ... up to the first one missing."""
        out = []
        for t in range(len(self.samples)):
            if t not in self.samples:
                break
            out.append(self.samples[t])
        return out


class FrameAssembler:
    """Holds incomplete frames for `hold_s`; calls `on_release(slot, previous_seq)` in order."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, tiers: int, hold_s: float, on_release: Callable[[Slot, int], None]
    ) -> None:
        self.loop = loop
        self.tiers = tiers
        self.hold_s = hold_s
        self.on_release = on_release
        self.slots: dict[int, Slot] = {}
        self.last_seq = 0  # last frame released
        self._timer: asyncio.TimerHandle | None = None

    def add(self, seq: int, tier: int, sample: Any, frame_tiers: int) -> None:
        if seq <= self.last_seq:
            return  # a late enhancement for a frame already released
        slot = self.slots.get(seq)
        if slot is None:
            slot = self.slots[seq] = Slot(seq)
        slot.samples[tier] = sample
        if tier == 0:
            slot.deadline = time.monotonic() + self.hold_s
            slot.expected = frame_tiers
        self.pump()

    def pump(self) -> None:
        """Release frames in order: complete ones at once, incomplete ones at their deadline or
        as soon as a later frame's base has arrived."""
        now = time.monotonic()
        while self.slots:
            seq = min(self.slots)
            slot = self.slots[seq]
            if 0 not in slot.samples:
                if len(self.slots) > MAX_SLOTS or now - slot.first > STRAY_S:  # stray enhancement data
                    del self.slots[seq]
                    continue
                break
            complete = all(t in slot.samples for t in range(min(slot.expected or self.tiers, self.tiers)))
            newer_base = any(s > seq and 0 in self.slots[s].samples for s in self.slots)
            if not (complete or newer_base or now >= slot.deadline):
                self._arm(slot.deadline - now)
                break
            del self.slots[seq]
            self._release(slot)

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(max(delay, 0.001), self.pump)

    def _release(self, slot: Slot) -> None:
        previous, self.last_seq = self.last_seq, slot.seq
        self.on_release(slot, previous)

    def flush(self) -> None:
        """Release everything still held that has its base, in order (the stream is ending)."""
        if self._timer is not None:
            self._timer.cancel()
        for seq in sorted(self.slots):
            if 0 in self.slots[seq].samples:
                self._release(self.slots[seq])
        self.slots.clear()
