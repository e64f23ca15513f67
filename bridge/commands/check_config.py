"""``oicp-bridge check-config``: validate the configuration and the certificates, one line per problem."""

from __future__ import annotations

import argparse
import os
import ssl
import time
from pathlib import Path

from lxml import etree

from bridge.commands import add_config_argument
from bridge.config import BridgeConfig, Protocol, config_path, load_config
from bridge.errors import ConfigError
from bridge.mapping import parse_overrides
from oicp import client_ssl_context, soap_endpoint
from oicp.errors import ConfigurationError
from oicp.wsdl import SOAP_PATH, ServiceSchema

HELP = "validate the configuration and certificates; exit 1 with one line per problem"
EXPIRY_WARNING_DAYS = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def certificate_expiry(path: Path) -> float | None:
    """The certificate's notAfter as epoch seconds, or None if it cannot be read."""
    try:
        decoded = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]  # stdlib's only PEM decoder
    except (OSError, ssl.SSLError, AttributeError):
        return None
    return float(ssl.cert_time_to_seconds(decoded["notAfter"]))


def check_soap(url: str) -> list[str]:
    """The SOAP transport's own needs: its shipped WSDL/XSD load offline, and the endpoint it will call."""
    try:
        ServiceSchema.load()
    except (OSError, etree.LxmlError) as exc:
        return [f"hubject.protocol = soap: the shipped WSDL/XSD cannot be loaded: {exc}"]
    endpoint = soap_endpoint(url)
    if not endpoint.endswith(SOAP_PATH) and "/ws/" not in endpoint:
        return [f"hubject.url: the SOAP endpoint would be {endpoint}, which is not a /ws/ service path"]
    return []


def check(config: BridgeConfig, now: float) -> tuple[list[str], list[str]]:
    """(problems, warnings) of a loaded configuration."""
    problems: list[str] = []
    warnings: list[str] = []
    hubject = config.hubject
    if not config.operators:
        problems.append("operators: no [[operators]] configured, so nothing would be pushed")
    if hubject.url.startswith("http://"):
        warnings.append(f"hubject.url: plain http ({hubject.url}) is for local tests only")
    elif not hubject.url.startswith("https://"):
        problems.append(f"hubject.url: must start with https:// (got {hubject.url!r})")
    if hubject.protocol is Protocol.SOAP:
        problems.extend(check_soap(hubject.url))
    if hubject.protocol is Protocol.REST and "/api/oicp" not in hubject.url:
        problems.append(
            "hubject.url: the OICP REST URL ends in /api/oicp, e.g. https://service-qa.hubject.com/api/oicp"
        )
    if hubject.url.startswith("https://"):
        if hubject.client_cert is None:
            problems.append(
                "hubject.client_cert: Hubject requires mutual TLS; set client_cert and client_key"
            )
        try:
            client_ssl_context(config.client_settings())
        except ConfigurationError as exc:
            problems.append(f"hubject: {exc}")
    if hubject.client_cert is not None:
        expiry = certificate_expiry(hubject.client_cert)
        if expiry is not None and expiry < now:
            problems.append(f"hubject.client_cert: {hubject.client_cert} expired")
        elif expiry is not None and expiry < now + EXPIRY_WARNING_DAYS * 86400:
            days = int((expiry - now) // 86400)
            warnings.append(f"hubject.client_cert: {hubject.client_cert} expires in {days} days")
    try:
        parse_overrides(config.mapping)
    except ValueError as exc:
        problems.append(f"mapping: {exc}")
    if not config.ocpi.receiver.tokens and not config.ocpi.sources:
        warnings.append(
            "ocpi: no pre-shared receiver tokens and no sources; only CPOs that register through "
            "the credentials module can send status"
        )
    if config.admin.token is None:
        warnings.append("admin.token: not set, so POST /resync (and 'oicp-bridge resync') is disabled")
    store_dir = config.store.sqlite_path.resolve().parent
    if store_dir.exists() and not os.access(store_dir, os.W_OK):
        problems.append(f"store.url: cannot write in {store_dir}")
    return problems, warnings


def run(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    try:
        config = load_config(path, require_file=True)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{path}: {problem}")
        return 1
    problems, warnings = check(config, time.time())
    for warning in warnings:
        print(f"{path}: warning: {warning}")
    for problem in problems:
        print(f"{path}: {problem}")
    if problems:
        return 1
    print(f"{path}: OK ({len(config.operators)} operator(s), protocol {config.hubject.protocol.value})")
    return 0
