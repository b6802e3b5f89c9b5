"""Encoder presets: named sets of encoder-only tuning that trade encode time for bits, in the
manner of x264/x265's `--preset`. The stream syntax is the same for every preset: any decoder
plays any of them. `realtime` is the live default; the slower ones are for recordings.

docs/BENCHMARKS.md gives each preset's measured speed and BD-rate."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:
    from .encoder import Tuning

DEFAULT_PRESET = "realtime"

# Overrides of Tuning's defaults (which are `realtime`), from fastest to slowest.
PRESETS: dict[str, dict[str, int]] = {
    "realtime": {},
    "fast": {"me_exit_q4": 6, "search_range": 96, "mb_rd": 4, "split": 1, "split8": 0, "obmc": 1},
    "medium": {
        "me_exit_q4": 0,
        "search_range": 128,
        "skip_sad_q8": 4,
        "mb_rd": 4,
        "split": 1,
        "split8": 1,
        "subpel": 2,
        "obmc": 1,
    },
}


# What a stream sent to a peer changes on top of its preset, for its delay: the network may drop
# its enhancement tiers, so a key picture keeps its base coarse where its residual against the key
# reference is above 3 pixels (on natural video almost always; a fine base carries the whole key
# picture in tier 0, a burst a link carrying only the base cannot take within the frame budget),
# the skip threshold stays at 1/32 of the step (at 1/16 the steady-link test's 95th-percentile
# base delay rose above its bound), and keyframes and key pictures are not coded finer than the
# P-frames (their qp offsets 0: the frames the frame budget caps are those whose delay sets the
# worst case; docs/ADAPTATION.md). docs/BENCHMARKS.md, "The key picture's base". Adaptive
# quantisation stays off: under the live sender's rate control it measured −0.5 … −3.0 % on the
# still camera and +1.3 … +2.0 % on tree's lower prefixes (docs/BENCHMARKS.md, "Adaptive
# quantisation"), too little to change what the link tests were tuned with. The still-camera split
# and blend of `realtime` (split 4, split8 4, obmc 2: docs/BENCHMARKS.md, "Still-camera motion tools") stay
# off too: in the live sender they gain 1.3-2.5 % on the still camera and cost tree's lower
# prefixes up to 5.5 % (docs/ADAPTATION.md).
LIVE: dict[str, int] = {
    "key_sad_q4": 48,
    "skip_sad_q8": 8,
    "key_qp": 0,
    "key_picture_qp": 0,
    "aq_strength": 0,
    "split": 3,
    "split8": 0,
    "obmc": 0,
}


def preset_names() -> list[str]:
    return list(PRESETS)


def tuning_for(preset: str = DEFAULT_PRESET, overrides: Sequence[str] = (), live: bool = False) -> Tuning:
    """The tuning of a preset (with `live`, of a stream sent to a peer: `LIVE` on top), then
    `NAME=INT` overrides (`snisd encode --tune`)."""
    from .encoder import Tuning  # here, so that reading a config does not load the codec

    if preset not in PRESETS:
        raise InputError(f"preset {preset!r}: expected one of {', '.join(PRESETS)}")
    tuning = dataclasses.replace(Tuning(), **PRESETS[preset])
    if live:
        tuning = dataclasses.replace(tuning, **LIVE)
    return tuning.with_overrides(overrides)
