"""SNIS-896: the analysis transform (LiteRT) and the stream state in Python around the native core
(`native/`, built by `pip install` as `snisd.codec._native`); docs/CODEC.md."""

from __future__ import annotations

import os


def _use_installed_core() -> None:
    """Run from a source checkout (e.g. `python -m snisd` in the clone's root) the core may only
    exist in the installed copy of this package, which pip built: import it from there."""
    here = os.path.dirname(os.path.abspath(__file__))
    if any(n.startswith("_native.") and n.endswith((".so", ".pyd")) for n in os.listdir(here)):
        return
    try:
        from importlib.metadata import distributions
    except ImportError:  # pragma: no cover
        return
    for dist in distributions(name="snisd"):
        installed = os.path.realpath(os.path.abspath(str(dist.locate_file("snisd/codec"))))
        if (
            installed != os.path.realpath(here)
            and os.path.isdir(installed)
            and any(n.startswith("_native.") for n in os.listdir(installed))
        ):
            __path__.append(installed)
            return


_use_installed_core()
