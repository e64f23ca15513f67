"""OCPI → OICP EVSE data, pure: the mapping tables, ``map_evse`` and its settings (issue 14).

A data lane calls ``map_evse`` (or ``map_location``) with the stored OCPI objects and the operator's
``RecordSettings``, keeps ``record.canonical_hash()`` to tell whether Hubject needs an update, and runs
``oicp.evse_data.validate_records`` on a batch before sending it.
"""

from bridge.evse_data.mapping import (
    MappedEvse,
    NotPushable,
    NotPushableReason,
    map_evse,
    map_location,
    summarise,
)
from bridge.evse_data.settings import EvseDataSettings, RecordSettings, normalise_hotline

__all__ = [
    "EvseDataSettings",
    "MappedEvse",
    "NotPushable",
    "NotPushableReason",
    "RecordSettings",
    "map_evse",
    "map_location",
    "normalise_hotline",
    "summarise",
]
