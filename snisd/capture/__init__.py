"""Camera sources: Pi CSI (picamera2), V4L2 USB cameras, video files and a synthetic scene.

:func:`open_source` turns a ``--camera`` spec into a :class:`Source`:

* ``0``, ``1`` ...   Pi camera N if picamera2 sees one, else ``/dev/videoN``
* ``picamera:N``     Pi camera N (picamera2)
* ``/dev/videoN``, ``v4l2:/dev/videoN`` or ``v4l2:N``   a V4L2 device
* ``file:PATH``      a video file, looped and paced at its frame rate
* ``synthetic``      the synthetic scene (``synthetic:SEED`` for another seed)
"""

from __future__ import annotations

from ..errors import InputError
from .source import ReconnectingSource, Source, SourceError, SourceTimeout

__all__ = ["Source", "SourceError", "SourceTimeout", "ReconnectingSource", "open_source", "parse_spec"]


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a camera spec into (kind, argument); kind is picamera|v4l2|file|synthetic|auto."""
    spec = str(spec).strip()
    if not spec:
        raise InputError("empty camera spec")
    if spec.isdigit():
        return "auto", spec
    if spec.startswith("/dev/"):
        return "v4l2", spec
    kind, _, arg = spec.partition(":")
    if kind in ("picamera", "v4l2", "file", "synthetic"):
        if kind == "picamera" and not arg:
            arg = "0"
        if kind in ("file", "v4l2") and not arg:
            raise InputError(f"camera spec {spec!r} needs a path after '{kind}:'")
        if kind == "synthetic" and arg and not arg.isdigit():
            raise InputError(f"camera spec {spec!r}: the synthetic seed must be a number")
        return kind, arg
    raise InputError(f"unknown camera spec {spec!r}: use N, picamera:N, /dev/videoN, file:PATH or synthetic")


def make_source(
    spec: str, width: int = 1280, height: int = 720, fps: float = 30.0, pixel_format: str = "auto"
) -> Source:
    """The bare source for ``spec`` (not opened, no reconnect)."""
    kind, arg = parse_spec(spec)
    if kind == "auto":
        from . import picamera

        if picamera.camera_count() > int(arg):
            kind = "picamera"
        else:
            kind = "v4l2"
    if kind == "picamera":
        from .picamera import PiCameraSource

        return PiCameraSource(int(arg), width, height, fps)
    if kind == "v4l2":
        from .v4l2 import V4l2Source

        return V4l2Source(arg, width, height, fps, pixel_format)
    if kind == "file":
        from .file import FileSource

        return FileSource(arg, width, height)
    from .synthetic import SyntheticSource

    return SyntheticSource(width, height, fps, seed=int(arg or 0))


def open_source(
    spec: str,
    width: int = 1280,
    height: int = 720,
    fps: float = 30.0,
    *,
    pixel_format: str = "auto",
    read_timeout: float = 2.0,
    reconnect: bool = True,
) -> Source:
    """Build the source for ``spec``, open it and return it.

    Live cameras (Pi and V4L2) come wrapped in :class:`ReconnectingSource`, so a camera that vanishes
    or stalls for ``read_timeout`` seconds is reopened with exponential backoff. For a file source,
    ``width``/``height`` of 0 keep the clip's own size.
    """
    kind, _ = parse_spec(spec)
    if reconnect and kind in ("auto", "picamera", "v4l2"):
        source: Source = ReconnectingSource(
            lambda: make_source(spec, width, height, fps, pixel_format), read_timeout=read_timeout
        )
    else:
        source = make_source(spec, width, height, fps, pixel_format)
    source.open()
    return source
