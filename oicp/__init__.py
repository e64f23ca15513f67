"""oicp: Hubject's Open InterCharge Protocol for EVSE status — clients, models, retry policy, simulator.

Everything a user needs is importable from here::

    from oicp import ActionType, ClientSettings, EvseStatus, EvseStatusRecord, OperatorID, RestClient

The modules whose names start with ``_`` are the implementation and may change in any release. Public
modules besides this one: ``oicp.errors``, ``oicp.ids``, ``oicp.models`` and ``oicp.codes`` (what the
names below are defined in), ``oicp.wsdl`` (the shipped SOAP service description) and ``oicp.simulator``
(a Hubject stand-in for tests; the ``simulator`` extra). See docs/oicp.md.
"""

from oicp._client import (
    PRODUCTION_URL,
    QA_URL,
    ClientSettings,
    EvseDataClient,
    EvseStatusClient,
    PushResult,
    WireRecord,
)
from oicp._rest import RestClient
from oicp._retry import RetryHook, RetryPolicy
from oicp._soap import SoapClient, soap_endpoint
from oicp._throttle import Throttle
from oicp._tls import client_ssl_context
from oicp.codes import RECORD_LEVEL_CODES, CodeInfo, Disposition, classify
from oicp.errors import (
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    HTTPStatusError,
    InvalidIDError,
    OICPError,
    RateLimitedError,
    RejectedError,
    RequestError,
    RequestTimeoutError,
    ResponseDecodeError,
    TLSError,
    TransportError,
)
from oicp.ids import EvseID, OperatorID, ProviderID
from oicp.models import (
    Acknowledgement,
    ActionType,
    EvseStatus,
    EvseStatusRecord,
    OperatorEvseStatus,
    PullEvseStatusRequest,
    PullEvseStatusResponse,
    PushEvseStatusRequest,
    StatusCode,
)

# The version of the ``oicp`` distribution (packaging/oicp reads it from here).
__version__ = "0.1.0"

__all__ = [
    "PRODUCTION_URL",
    "QA_URL",
    "RECORD_LEVEL_CODES",
    "Acknowledgement",
    "ActionType",
    "ClientSettings",
    "CodeInfo",
    "ConfigurationError",
    "ConnectError",
    "ConnectionLostError",
    "Disposition",
    "EvseDataClient",
    "EvseID",
    "EvseStatus",
    "EvseStatusClient",
    "EvseStatusRecord",
    "HTTPStatusError",
    "InvalidIDError",
    "OICPError",
    "OperatorEvseStatus",
    "OperatorID",
    "ProviderID",
    "PullEvseStatusRequest",
    "PullEvseStatusResponse",
    "PushEvseStatusRequest",
    "PushResult",
    "RateLimitedError",
    "RejectedError",
    "RequestError",
    "RequestTimeoutError",
    "ResponseDecodeError",
    "RestClient",
    "RetryHook",
    "RetryPolicy",
    "SoapClient",
    "StatusCode",
    "TLSError",
    "Throttle",
    "TransportError",
    "WireRecord",
    "__version__",
    "classify",
    "client_ssl_context",
    "soap_endpoint",
]
