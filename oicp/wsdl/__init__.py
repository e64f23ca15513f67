"""The OICP 2.x SOAP EvseStatus service description shipped with this package, loaded offline.

``EvseStatus_V2.1.wsdl`` (SOAP 1.1, document/literal), ``EvseStatus_V2.1.xsd`` and ``CommonTypes_V2.1.xsd``
were written for this project from Hubject's public OICP message definitions (see README.md here and
docs/oicp.md, "SOAP (OICP 2.2)"). Nothing here touches the network: the files are read from the package,
and the zeep transport used to read them refuses anything outside this folder.

Both the client (``oicp._soap_codec``) and the simulator (``oicp.simulator.soap``) validate SOAP bodies
against the same schema, ``ServiceSchema``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from lxml import etree

from oicp._hints import SOAP_PATH
from oicp.errors import ConfigurationError

WSDL_DIR = Path(__file__).resolve().parent
WSDL_FILE = WSDL_DIR / "EvseStatus_V2.1.wsdl"
EVSE_STATUS_XSD = WSDL_DIR / "EvseStatus_V2.1.xsd"
COMMON_TYPES_XSD = WSDL_DIR / "CommonTypes_V2.1.xsd"

NS_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"  # SOAP 1.1
NS_EVSE_STATUS = "http://www.hubject.com/b2b/services/evsestatus/v2.1"
NS_COMMON_TYPES = "http://www.hubject.com/b2b/services/commontypes/v2.1"

__all__ = [
    "COMMON_TYPES_XSD",
    "EVSE_STATUS_XSD",
    "MESSAGES",
    "NS_COMMON_TYPES",
    "NS_EVSE_STATUS",
    "NS_SOAP_ENV",
    "OPERATION_BY_REQUEST",
    "SOAP_PATH",
    "WSDL_DIR",
    "WSDL_FILE",
    "ServiceSchema",
    "SoapOperation",
    "load_zeep_client",
    "safe_parser",
]


class SoapOperation(StrEnum):
    """The operations of the EvseStatus service; each is also its SOAPAction."""

    PUSH = "eRoamingPushEvseStatus"
    PULL = "eRoamingPullEvseStatus"
    PULL_BY_OPERATOR_ID = "eRoamingPullEvseStatusByOperatorID"
    PULL_BY_ID = "eRoamingPullEvseStatusById"


# operation: (request element, answer element), as in the WSDL's portType
MESSAGES: dict[SoapOperation, tuple[etree.QName, etree.QName]] = {
    SoapOperation.PUSH: (
        etree.QName(NS_EVSE_STATUS, "eRoamingPushEvseStatus"),
        etree.QName(NS_COMMON_TYPES, "eRoamingAcknowledgement"),
    ),
    SoapOperation.PULL: (
        etree.QName(NS_EVSE_STATUS, "eRoamingPullEvseStatus"),
        etree.QName(NS_EVSE_STATUS, "eRoamingEvseStatus"),
    ),
    SoapOperation.PULL_BY_OPERATOR_ID: (
        etree.QName(NS_EVSE_STATUS, "eRoamingPullEvseStatusByOperatorID"),
        etree.QName(NS_EVSE_STATUS, "eRoamingEvseStatus"),
    ),
    SoapOperation.PULL_BY_ID: (
        etree.QName(NS_EVSE_STATUS, "eRoamingPullEvseStatusById"),
        etree.QName(NS_EVSE_STATUS, "eRoamingEvseStatusById"),
    ),
}

OPERATION_BY_REQUEST: dict[str, SoapOperation] = {
    request.text: operation for operation, (request, _) in MESSAGES.items()
}


def safe_parser() -> etree.XMLParser:
    """An XML parser for untrusted input: no DTDs, entities or network access."""
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_blank_text=True
    )


@dataclass(frozen=True)
class ServiceSchema:
    """The shipped XSD (both namespaces), for validating the payload element of a SOAP Body."""

    schema: etree.XMLSchema

    @classmethod
    def load(cls) -> ServiceSchema:
        """Read the XSD from the package (blocking file I/O: call it off the event loop)."""
        try:
            document = etree.parse(str(EVSE_STATUS_XSD), safe_parser())
            return cls(etree.XMLSchema(document))
        except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
            raise ConfigurationError(f"the shipped XSD {EVSE_STATUS_XSD} cannot be loaded: {exc}") from exc

    def errors(self, payload: etree._Element) -> list[str]:
        """Schema violations of one Body payload element; empty when it is valid."""
        if self.schema.validate(payload):
            return []
        entries = cast("Iterable[Any]", self.schema.error_log)  # lxml-stubs leave _ErrorLog opaque
        return [f"line {error.line}: {error.message}" for error in entries]


def load_zeep_client() -> Any:
    """A zeep ``Client`` for the shipped WSDL, whose transport can read only this folder.

    Blocking file I/O: call it off the event loop. zeep is untyped, hence ``Any``.
    """
    import zeep
    from zeep.transports import Transport

    class OfflineTransport(Transport):
        """Loads the shipped WSDL/XSD files and nothing else; never sends anything."""

        def load(self, url: str) -> bytes:
            path = Path(url.removeprefix("file://")).resolve()
            if not path.is_relative_to(WSDL_DIR):
                raise ConfigurationError(f"refusing to load {url}: only the shipped WSDL/XSD files are read")
            return path.read_bytes()

        def post(self, address: str, message: Any, headers: Any) -> Any:
            raise ConfigurationError("the zeep transport is offline: oicp.SoapClient sends with aiohttp")

    settings = zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    try:
        transport = OfflineTransport()  # type: ignore[no-untyped-call]
        return zeep.Client(str(WSDL_FILE), transport=transport, settings=settings)  # type: ignore[no-untyped-call]
    except (OSError, zeep.exceptions.Error, etree.LxmlError) as exc:
        raise ConfigurationError(f"the shipped WSDL {WSDL_FILE} cannot be loaded: {exc}") from exc
