"""The OCPI versions this bridge speaks."""

from __future__ import annotations

from enum import StrEnum


class OcpiVersion(StrEnum):
    V2_1_1 = "2.1.1"
    V2_2_1 = "2.2.1"


# Most preferred first: when both sides speak several versions the highest common one is used
# (OCPI 2.2.1 version_information_endpoint, "Version information endpoint").
SUPPORTED_VERSIONS: tuple[OcpiVersion, ...] = (OcpiVersion.V2_2_1, OcpiVersion.V2_1_1)
