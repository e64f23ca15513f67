"""The bridge's error hierarchy: ``BridgeError`` is the one root of every error the bridge raises on
purpose, so ``oicp-bridge run`` catches exactly it (and ``oicp.errors.OICPError`` from the library)::

    BridgeError
    ├── ConfigError             the configuration cannot work (one line per problem)
    ├── ListenError             a listener cannot bind its address
    ├── StoreError              the store could not do what was asked
    │   ├── StoreClosedError
    │   └── StoreLockedError    another daemon holds the store
    ├── ResyncRefusedError
    └── bridge.ocpi.errors.OcpiError    the OCPI side (its own tree there)
        ├── OcpiStatusError…    a request the receiver refuses, with its OCPI status code
        └── OcpiClientError…    the bridge as an OCPI client could not complete a call
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error raised by the bridge outside its OCPI package."""


class ConfigError(BridgeError):
    """The configuration cannot work; ``problems`` lists each problem as one readable line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class ListenError(BridgeError):
    """A listener (OCPI receiver, admin) cannot bind its address: in use, or not an address of this host."""


class StoreError(BridgeError):
    """The store could not do what was asked (disk full, file locked, corrupt database...)."""


class StoreClosedError(StoreError):
    """The store is not open (not yet, or already shut down)."""


class StoreLockedError(StoreError):
    """Another process holds the store's lock: one daemon per SQLite file (two would push one operator in
    parallel, which OICP forbids)."""


class ResyncRefusedError(BridgeError):
    """A fullLoad was refused by its guard (empty, or shrank beyond ``max_shrink``); ``--force`` overrides."""
