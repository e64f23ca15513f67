"""What an operator can do about a failure: the one hint table of the library.

Hints are attached to ``RequestError.hint`` where Hubject's answer (HTTP status or StatusCode) says enough
to point at a fix. Each text is here once; ``CodeInfo.hint`` (``oicp.codes``) reads the same table.
Pure: no I/O.
"""

from __future__ import annotations

from typing import Literal

WireFormat = Literal["rest", "soap"]  # which codec is asking: REST and SOAP differ in a few hints

# Hubject's 2.x SOAP services live under /ws/ on the same host as the REST API (/api/oicp).
SOAP_PATH = "/ws/HubjectEvseStatus_V2.1"

_NOT_LINKED = (
    "{who} is not linked to this client certificate, or the certificate is not registered "
    "for this Hubject environment (QA and production have separate certificates)"
)

# code: what to do (OICP 2.3 CPO 03, CodeType; the texts follow Hubject's support pages).
CODE_HINTS: dict[str, str] = {
    "017": _NOT_LINKED.format(who="the OperatorID or ProviderID in the URL"),
    "018": "an EvseID does not belong to the OperatorID it was pushed for",
    "210": "there is no valid contract for this service between Hubject and the operator",
    "603": "Hubject has no EVSE data for this EvseID: push the EVSE data (eRoamingPushEvseData) first",
    "604": "the EvseID is not in Hubject's format; check the operator prefix and the 'E' separator",
}

NO_CLIENT_CERT = (
    "no client certificate is configured, and Hubject requires mutual TLS: set client_cert and client_key"
)


def hint_for(
    *,
    status: int | None,
    code: str | None,
    url: str,
    operator_id: str | None = None,
    protocol: WireFormat = "rest",
) -> str | None:
    """The hint for an HTTP status and/or a StatusCode, or None when there is nothing useful to say."""
    if status == 401 or code == "017":
        if operator_id:
            return _NOT_LINKED.format(who=f"OperatorID {operator_id}")
        return CODE_HINTS["017"]
    if status == 403:
        return "Hubject refused this source address: ask Hubject support to allow-list your egress IP"
    if status == 404:
        if protocol == "soap":
            return f"Hubject's EvseStatus SOAP endpoint is https://<host>{SOAP_PATH} (got {url})"
        if "/api/oicp" not in url:
            return "the Hubject URL should end in /api/oicp, e.g. https://service-qa.hubject.com/api/oicp"
    if status == 429:
        return "Hubject rate limit reached (Acceptable Use Policy: 2000 PushEVSEStatus calls per minute)"
    return CODE_HINTS.get(code) if code is not None else None
