"""Workarounds for chatterbox-tts 0.1.7 and resemble-perth 1.0.1 on current packages.

1. resemble-perth imports ``pkg_resources`` (gone in setuptools >= 81). The import error is
   swallowed, ``perth.PerthImplicitWatermarker`` becomes None and building the model fails with
   "'NoneType' object is not callable" (chatterbox #198, Perth #11). When pkg_resources is
   missing we register a minimal stand-in with the one function perth calls.
2. numpy >= 2 promotes the float32 reference clip to float64 in loudness normalisation
   (NEP 50), and S3Tokenizer then fails "expected scalar type Double but found Float"
   (chatterbox #499). ``conditioning.py`` casts back to float32 after normalising.
"""

from __future__ import annotations

import importlib
import importlib.resources
import logging
import sys
import types

log = logging.getLogger("voxgate.chatterbox")


def ensure_pkg_resources() -> None:
    """Provide ``pkg_resources.resource_filename`` if setuptools no longer ships it."""
    try:
        import pkg_resources  # noqa: F401

        return
    except ImportError:
        pass
    shim = types.ModuleType("pkg_resources")

    def resource_filename(package: str, name: str) -> str:
        return str(importlib.resources.files(package) / name)

    shim.resource_filename = resource_filename  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = shim
    log.info("pkg_resources missing (setuptools>=81): using a resource_filename shim for perth")


def import_chatterbox(module: str = "tts_turbo") -> types.ModuleType:
    """Import ``chatterbox.<module>`` (Turbo's by default) with the watermarker working."""
    ensure_pkg_resources()
    import perth

    if perth.PerthImplicitWatermarker is None:  # pragma: no cover - depends on the install
        raise ImportError("resemble-perth could not load its watermarker (see compat.py)")
    return importlib.import_module(f"chatterbox.{module}")
