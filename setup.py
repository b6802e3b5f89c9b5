"""Build of the native core (snisd.codec._native) with the system C compiler; the rest of the
package metadata lives in pyproject.toml."""

from __future__ import annotations

import glob
import os

from setuptools import Extension, setup

SRC = "snisd/codec/native"
CORE = sorted(glob.glob(os.path.join(SRC, "*.c")))

setup(
    ext_modules=[
        Extension(
            "snisd.codec._native",
            sources=CORE,
            include_dirs=[SRC],
            depends=sorted(glob.glob(os.path.join(SRC, "*.h"))),
            extra_compile_args=[
                "-O3",
                "-std=c11",
                "-fvisibility=hidden",
                "-Wall",
                "-Wextra",
                "-Wno-unused-parameter",
                "-Wno-missing-field-initializers",
            ],
            extra_link_args=["-pthread"],
        )
    ]
)
