"""The simulated CPO's errors (part of the OCPI package's hierarchy)."""

from __future__ import annotations

from bridge.ocpi.errors import OcpiError


class CpoSimError(OcpiError):
    """Base of the simulated CPO's errors."""
