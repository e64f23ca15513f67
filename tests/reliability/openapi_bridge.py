"""``docs/openapi-bridge.yaml`` loaded with openapi-core, and the check that a recorded answer conforms."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import parse_qsl

from openapi_core import OpenAPI
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.testing import MockRequest, MockResponse

from tests.reliability.ocpi_target import Exchange

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi-bridge.yaml"
HOST = "http://127.0.0.1:8081"  # the document's default server; recorded answers are checked as if there


@cache
def bridge_openapi() -> OpenAPI:
    """Loading validates the document itself (openapi-spec-validator) first."""
    return OpenAPI.from_file_path(str(SPEC_PATH))


def assert_conforms(exchange: Exchange) -> None:
    """The answer's status code, content type and body match the document's operation for the request.

    A path or method the document does not describe must have got the HTTP server's plain 404/405.
    """
    path, _, query = exchange.path.partition("?")
    if "/../" in path or path.endswith("/.."):
        return  # openapi-core resolves dot segments before matching; the receiver sees them as ids
    request = MockRequest(
        HOST,
        exchange.method.lower(),
        path,
        args=dict(parse_qsl(query)),
        data=exchange.request_body,
        content_type="application/json",
    )
    response = MockResponse(
        exchange.body, status_code=exchange.http_status, content_type=exchange.content_type
    )
    try:
        bridge_openapi().validate_response(request, response)
    except (PathNotFound, OperationNotFound):
        assert (exchange.http_status, exchange.content_type) in ((404, "text/plain"), (405, "text/plain")), (
            f"{exchange.method} {exchange.path} is not in docs/openapi-bridge.yaml but got "
            f"{exchange.http_status} {exchange.content_type}"
        )
