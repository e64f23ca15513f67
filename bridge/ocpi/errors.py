"""The OCPI side's error hierarchy. Every error the ``bridge.ocpi`` package raises derives from OcpiError.

``OcpiStatusError`` subclasses carry the OCPI ``status_code`` and the HTTP status the receiver answers
with (status_codes.asciidoc): the receiver turns any of them into an OCPI envelope, so one ``raise``
anywhere in request handling yields a correct, actionable answer and no change in the store.
"""

from __future__ import annotations

from bridge.errors import BridgeError


class OcpiError(BridgeError):
    """Base of every error raised by ``bridge.ocpi`` (under the bridge's one root, ``BridgeError``)."""


class OcpiStatusError(OcpiError):
    """A request the bridge refuses; ``status_code`` and ``http_status`` say how to answer it."""

    status_code = 2000  # Generic client error
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParametersError(OcpiStatusError):
    """2001 Invalid or missing parameters: wrong types, missing fields, unknown enum values..."""

    status_code = 2001
    # status_codes.asciidoc: a syntactically valid JSON request that reaches the OCPI layer MUST NOT get
    # an HTTP error, so field-level problems are HTTP 200 with OCPI 2001.
    http_status = 200


class MalformedJsonError(InvalidParametersError):
    """The body is not JSON (or not a JSON object): HTTP 400 as status_codes.asciidoc requires."""

    http_status = 400


class NotEnoughInformationError(OcpiStatusError):
    """2002 Not enough information (e.g. a PATCH that changes nothing)."""

    status_code = 2002
    http_status = 200


class UnknownLocationError(OcpiStatusError):
    """2003 Unknown Location: the Location, EVSE or Connector addressed is not known to the bridge."""

    status_code = 2003
    http_status = 404


class PartyMismatchError(InvalidParametersError):
    """The URL or body names a party other than the one the token is bound to."""

    http_status = 403


class AuthenticationError(OcpiStatusError):
    """Missing or unknown ``Authorization: Token ...``: HTTP 401 (transport_and_format, authorization)."""

    status_code = 2000
    http_status = 401


class BodyTooLargeError(InvalidParametersError):
    """The request body exceeds the receiver's limit: HTTP 413."""

    http_status = 413


class RequestTimeoutError(OcpiStatusError):
    """The request's body did not arrive in time ([ocpi.receiver] body_timeout): HTTP 408."""

    status_code = 2000
    http_status = 408


class UnsupportedVersionError(OcpiStatusError):
    """3002 Unsupported version (credentials: no common version)."""

    status_code = 3002
    http_status = 200


class ClientApiError(OcpiStatusError):
    """3001 Unable to use the client's API (credentials: the CPO's versions could not be fetched)."""

    status_code = 3001
    http_status = 200


class NoMatchingEndpointsError(OcpiStatusError):
    """3003 No matching endpoints (credentials: the CPO offers no credentials endpoint)."""

    status_code = 3003
    http_status = 200


class AlreadyRegisteredError(OcpiStatusError):
    """POST /credentials by a party that is already registered (credentials: use PUT to update): 405."""

    status_code = 2000
    http_status = 405


class NotRegisteredError(OcpiStatusError):
    """PUT/DELETE /credentials by a party that never registered: 405 (credentials, PUT/DELETE)."""

    status_code = 2000
    http_status = 405


class StoreUnavailableError(OcpiStatusError):
    """3000 Generic server error: the store cannot take the change now (disk full, file locked or
    read-only). HTTP 503 with ``Retry-After``: the CPO keeps the update and sends it again; the bridge
    never answers 1000 for a change it could not commit."""

    status_code = 3000
    http_status = 503


class OcpiClientError(OcpiError):
    """The bridge, as an OCPI client, could not complete a call to another party."""


class OcpiTransportError(OcpiClientError):
    """The other party could not be reached (connection refused, TLS, timeout)."""


class OcpiResponseError(OcpiClientError):
    """The other party answered, but not with a usable OCPI success response."""

    def __init__(
        self, message: str, *, http_status: int | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status_code = status_code


class RegistrationError(OcpiClientError):
    """Registering with a CPO (credentials module as client) failed; the message says at which step."""
