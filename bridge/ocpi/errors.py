"""The OCPI side's error hierarchy. Every error the ``bridge.ocpi`` package raises derives from OcpiError."""

from __future__ import annotations


class OcpiError(Exception):
    """Base of every error raised by ``bridge.ocpi``."""
