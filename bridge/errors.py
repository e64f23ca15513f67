"""The bridge's error hierarchy (the OCPI side has its own under ``bridge.ocpi.errors``)."""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error raised by the bridge outside its OCPI package."""


class ConfigError(BridgeError):
    """The configuration cannot work; ``problems`` lists each problem as one readable line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class StoreError(BridgeError):
    """The store could not do what was asked (disk full, file locked, corrupt database...)."""


class StoreClosedError(StoreError):
    """The store is not open (not yet, or already shut down)."""


class ResyncRefusedError(BridgeError):
    """A fullLoad was refused by its guard (empty, or shrank beyond ``max_shrink``); ``--force`` overrides."""
