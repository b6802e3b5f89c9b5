"""A synthetic camera: a textured scene panning slowly, objects moving across it, sensor noise.

Deterministic: frame n depends only on (seed, size, n), so tests and benchmarks are repeatable.
Everything expensive is computed once in the constructor (a periodic 1/f texture per plane, object
sprites and a bank of noise fields); each frame is then a window copy, a few sprite pastes and one
in-place add, fast enough for 1080p30 in numpy alone.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..frame import Frame
from .source import Pacer, Source

_NOISE_BANK = 4
_OBJECTS = 4


def _fractal(shape: tuple[int, int], rng: np.random.Generator, slope: float = 1.6, low_cut: float = 1.0) -> np.ndarray:
    """Periodic noise with a 1/f**slope amplitude spectrum (natural images are close to slope 1..2).

    Returned as float32 scaled to zero mean and unit standard deviation. Because it is made in the
    Fourier domain it tiles seamlessly, which is what lets the pan wrap around without a seam.
    """
    h, w = shape
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None] * h
    fx = np.fft.rfftfreq(w).astype(np.float32)[None, :] * w
    radius = np.sqrt(fy * fy + fx * fx)
    amp = 1.0 / np.maximum(radius, low_cut) ** slope
    amp[0, 0] = 0.0
    phase = rng.uniform(0, 2 * np.pi, amp.shape).astype(np.float32)
    spec = amp * np.exp(1j * phase)
    img = np.fft.irfft2(spec, s=(h, w)).astype(np.float32)
    img -= img.mean()
    img /= img.std() + 1e-6
    return img


def _to_u8(x: np.ndarray, mean: float, spread: float, lo: int, hi: int) -> np.ndarray:
    return np.clip(x * spread + mean, lo, hi).astype(np.uint8)


class _Sprite:
    """One moving object: luma/chroma patches, masks, and a bouncing trajectory."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, index: int) -> None:
        size = max(8, int(min(width, height) * rng.uniform(0.12, 0.22))) & ~1
        sh, sw = size, (int(size * rng.uniform(0.8, 1.6)) & ~1)
        sw = min(sw, width - 2) & ~1
        sh = min(sh, height - 2) & ~1
        self.h, self.w = sh, sw
        yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
        cy, cx = (sh - 1) / 2, (sw - 1) / 2
        if index % 2 == 0:  # ellipse
            mask = ((yy - cy) / (sh / 2)) ** 2 + ((xx - cx) / (sw / 2)) ** 2 <= 1.0
        else:  # rounded rectangle
            r = min(sh, sw) * 0.2
            dy = np.maximum(np.abs(yy - cy) - (sh / 2 - r), 0)
            dx = np.maximum(np.abs(xx - cx) - (sw / 2 - r), 0)
            mask = dy * dy + dx * dx <= r * r
        tex = _fractal((sh, sw), rng, slope=1.2, low_cut=2.0)
        shade = 1.0 - 0.35 * (((yy - cy) / sh) ** 2 + ((xx - cx) / sw) ** 2)  # a little 3-D shading
        base = rng.uniform(60, 200)
        self.y = _to_u8((tex * 18 + base) * shade, 0.0, 1.0, 20, 235)
        self.mask = mask
        self.cmask = mask[0::2, 0::2]
        ch = (sh // 2, sw // 2)
        self.u = np.full(ch, int(rng.uniform(70, 186)), np.uint8)
        self.v = np.full(ch, int(rng.uniform(70, 186)), np.uint8)
        ctex = _fractal(ch, rng, slope=1.5, low_cut=2.0)
        self.u = _to_u8(ctex * 6 + self.u, 0.0, 1.0, 20, 235)
        self.v = _to_u8(-ctex * 6 + self.v, 0.0, 1.0, 20, 235)
        # trajectory: triangle waves in x and y with different periods (pixels per frame ~ 1..6)
        self.span_x = max(width - sw, 1)
        self.span_y = max(height - sh, 1)
        self.vx = rng.uniform(1.0, 6.0) * rng.choice((-1, 1))
        self.vy = rng.uniform(0.5, 3.0) * rng.choice((-1, 1))
        self.x0 = rng.uniform(0, self.span_x)
        self.y0 = rng.uniform(0, self.span_y)

    def position(self, n: int) -> tuple[int, int]:
        def bounce(p: float, span: int) -> int:
            p = p % (2 * span)
            return int(p if p < span else 2 * span - p)

        return bounce(self.y0 + self.vy * n, self.span_y) & ~1, bounce(self.x0 + self.vx * n, self.span_x) & ~1


class SyntheticScene:
    """Renders frame n of the scene; no pacing (see :class:`SyntheticSource` for that)."""

    def __init__(self, width: int, height: int, fps: float = 30.0, seed: int = 0, noise: float = 2.0) -> None:
        if width % 2 or height % 2 or width < 16 or height < 16:
            raise InputError(f"synthetic size must be even and at least 16x16, got {width}x{height}")
        self.width, self.height, self.fps = width, height, fps
        rng = np.random.default_rng(seed)
        # Background: a periodic texture one frame in size; a (2h, 2w) tiling makes every window a
        # plain slice. Mid-grey mean, kept inside 24..231 so that noise never needs clipping.
        tex = _fractal((height, width), rng, slope=1.7)
        edges = _fractal((height, width), rng, slope=1.0, low_cut=4.0)  # finer detail on top
        y = _to_u8(tex * 34 + edges * 8 + 124, 0.0, 1.0, 24, 231)
        self._y = np.tile(y, (2, 2))
        ch, cw = height // 2, width // 2
        ctex = _fractal((ch, cw), rng, slope=1.8)
        self._u = np.tile(_to_u8(ctex * 10 + 118, 0.0, 1.0, 24, 231), (2, 2))
        self._v = np.tile(_to_u8(-ctex * 8 + _fractal((ch, cw), rng, slope=1.8) * 6 + 136, 0.0, 1.0, 24, 231), (2, 2))
        self.sprites = [_Sprite(rng, width, height, i) for i in range(_OBJECTS)]
        # Sensor noise: a bank of zero-mean fields larger than the frame; frame n takes one at an
        # offset. Stored as uint8 two's complement so adding is a single wrapping in-place add.
        self.noise_on = noise > 0
        if self.noise_on:
            nh, nw = height + 64, width + 64
            # one field at a time: a float64 bank of 1080p fields at once would be ~150 MB
            self._noise = np.empty((_NOISE_BANK, nh, nw), np.uint8)
            for i in range(_NOISE_BANK):
                field = rng.normal(0.0, noise, (nh, nw))
                self._noise[i] = np.clip(np.round(field), -20, 20).astype(np.int8).view(np.uint8)

    def pan(self, n: int) -> tuple[int, int]:
        """Camera offset for frame n: a slow drift plus a gentle sway, wrapped to the texture."""
        t = n / self.fps
        ox = 18.0 * t + 40.0 * math.sin(t * 0.35) + 1.5 * math.sin(t * 2.1)
        oy = 6.0 * t + 25.0 * math.sin(t * 0.23 + 1.0) + 1.0 * math.sin(t * 2.9)
        return int(round(oy)) % self.height & ~1, int(round(ox)) % self.width & ~1

    def render(self, n: int, pts_us: int | None = None) -> Frame:
        h, w = self.height, self.width
        oy, ox = self.pan(n)
        y = self._y[oy : oy + h, ox : ox + w].copy()
        u = self._u[oy // 2 : oy // 2 + h // 2, ox // 2 : ox // 2 + w // 2].copy()
        v = self._v[oy // 2 : oy // 2 + h // 2, ox // 2 : ox // 2 + w // 2].copy()
        for s in self.sprites:
            py, px = s.position(n)
            np.copyto(y[py : py + s.h, px : px + s.w], s.y, where=s.mask)
            cy, cx = py // 2, px // 2
            np.copyto(u[cy : cy + s.h // 2, cx : cx + s.w // 2], s.u, where=s.cmask)
            np.copyto(v[cy : cy + s.h // 2, cx : cx + s.w // 2], s.v, where=s.cmask)
        if self.noise_on:
            k = (n * 2654435761) & 0xFFFFFFFF  # Knuth multiplicative hash: deterministic per frame
            bank = self._noise[k % _NOISE_BANK]
            ny, nx = (k >> 8) % 64, (k >> 16) % 64
            y += bank[ny : ny + h, nx : nx + w]
        if pts_us is None:
            pts_us = int(round(n * 1e6 / self.fps))
        return Frame(y, u, v, pts_us)


class SyntheticSource(Source):
    """The scene as a live camera: frames released at ``fps`` (a late reader skips frames)."""

    name = "synthetic"

    def __init__(
        self, width: int = 1280, height: int = 720, fps: float = 30.0, seed: int = 0, paced: bool = True
    ) -> None:
        self.width, self.height, self.fps = width, height, float(fps)
        self.seed = seed
        self.paced = paced
        self._scene: SyntheticScene | None = None
        self._pacer: Pacer | None = None
        self._n = -1

    def open(self) -> None:
        if self._scene is None:
            self._scene = SyntheticScene(self.width, self.height, self.fps, self.seed)
        self._pacer = Pacer(self.fps) if self.paced else None
        self._n = -1

    @property
    def dropped(self) -> int:
        return self._pacer.dropped if self._pacer else 0

    def read(self, timeout: float = 2.0) -> Frame:
        if self._scene is None:
            self.open()
        assert self._scene is not None
        if self._pacer is not None:
            n = self._pacer.next()
        else:
            n = self._n + 1
        self._n = n
        return self._scene.render(n)

    def close(self) -> None:
        self._pacer = None
