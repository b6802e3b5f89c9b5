"""YUV4MPEG2 writer: the decoder's output format, readable by ffmpeg, x264 and VMAF tools."""

from __future__ import annotations

from fractions import Fraction
from typing import BinaryIO

from .frame import Frame


class Y4mWriter:
    """Writes I420 frames with a 'C420jpeg'-free plain 4:2:0 header (colour range: limited)."""

    def __init__(self, out: BinaryIO, width: int, height: int, fps: Fraction) -> None:
        self.out = out
        self.size = (width, height)
        rate = f"F{fps.numerator}:{fps.denominator}"
        out.write(f"YUV4MPEG2 W{width} H{height} {rate} Ip A1:1 C420 XCOLORRANGE=LIMITED\n".encode("ascii"))

    def write(self, frame: Frame) -> None:
        if (frame.width, frame.height) != self.size:
            raise ValueError(f"frame {frame.width}x{frame.height} does not match stream {self.size}")
        self.out.write(b"FRAME\n")
        self.out.write(frame.to_i420())
