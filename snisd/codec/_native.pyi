"""Type stub of the native core's CPython binding (snisd/codec/native/pymodule.c)."""

from typing import Any

SIMD: str
ALIGN: int
LUMA_CTX: int
CHROMA_CTX: int
FRAC: int

class NativeError(Exception): ...

class Encoder:
    def __init__(
        self,
        width: int,
        height: int,
        tiers: int,
        tier_step_log2: int,
        threads: int,
        weights: bytes,
        tuning: tuple[int, ...] | None = ...,
        key_step_log2: int = ...,
    ) -> None: ...
    def predict(self, y: Any, u: Any, v: Any, frame_type: int, qp: int, ypad: Any, uvpad: Any) -> None: ...
    def code(
        self,
        latents: tuple[Any, Any, Any, Any],
        multipliers: tuple[bytes, bytes, bytes, bytes],
        zero_points: tuple[bytes, bytes, bytes, bytes],
    ) -> tuple[bytes, ...]: ...
    def intra_begin(self, y: Any, u: Any, v: Any, qp: int) -> None: ...
    def intra_band(
        self,
        band: int,
        latents: tuple[Any, Any, Any, Any] | None,
        multipliers: tuple[bytes, ...],
        zero_points: tuple[bytes, ...],
        ystrip: Any,
        uvstrip: Any,
    ) -> None: ...
    def reconstruction(self, tiers: int, y: Any, u: Any, v: Any) -> None: ...
    def stats(self) -> dict[str, float]: ...

class Decoder:
    def __init__(
        self,
        width: int,
        height: int,
        tiers: int,
        tier_step_log2: int,
        threads: int,
        weights: bytes,
        key_step_log2: int = ...,
    ) -> None: ...
    def decode(
        self, frame_type: int, qp: int, payloads: tuple[bytes, ...], show_tiers: int, y: Any, u: Any, v: Any
    ) -> None: ...
    def stats(self) -> dict[str, float]: ...

def step16(qp: int, tier: int, tiers: int, tier_step_log2: int) -> int: ...
def rc_code(decoding: bool, kinds: bytes, ctxs: bytes, values: bytes, data: bytes, init: bytes = ...) -> bytes: ...
