"""Suite-wide secret check: no test secret may appear in anything the suite logs.

A pytest plugin (its hooks are imported into ``tests/conftest.py``; ``-p tests.secret_scan`` loads it on
its own). It collects, for the whole session:

* every ``logging`` record (a handler on the root logger, root level INFO as in production; structlog's
  stdlib route ends there too),
* what pytest captured per test phase: stdout/stderr (structlog's default and configured ``PrintLogger``
  write there) and the captured log,
* at the end, every ``*.log`` file under the session's temp folder (the daemon subprocesses of
  ``tests/reliability`` write their stdout/stderr there).

At session end it searches all of it for the known test secrets (the literal tokens the tests use, plus
whatever a test adds through the ``secrets_registry`` fixture), each also in the base64 form OCPI 2.2.1
sends it in (a header that reaches an exception repr shows up that way), and the PEM marker
``PRIVATE KEY``; any hit is reported and makes the run fail (exit status 1).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PEM_MARKER = "PRIVATE KEY"
MIN_SECRET_LENGTH = 8  # shorter strings would match ordinary words
# The literal tokens the test suite and benchmarks configure (tests/ocpi/conftest.py TOKENS are added too).
LITERAL_TEST_SECRETS = (
    "token-b-for-bridge",
    "poll-token-123",
    "not-the-token",
    "sim-token",
    "cpo-token-b-for-the-bridge",
    "reliability-cpo-token-5b1e",
    "reliability-admin-token-9c3d",
    "e2e-cpo-token",
    "daemon-cpo-token",
    "daemon-admin-token",
    "bench-cpo-token",
    "bench-admin-token",
)


class SecretRegistry:
    """The secrets no output may contain; tests add theirs with ``secrets_registry.add(...)``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        if len(secret) >= MIN_SECRET_LENGTH:
            self._secrets.add(secret)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._secrets))

    def __contains__(self, secret: object) -> bool:
        return secret in self._secrets


class _Collector(logging.Handler):
    def __init__(self, scan: SecretScan) -> None:
        super().__init__(logging.NOTSET)
        self.scan = scan
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.scan.add(f"log record {record.name}", self.format(record))
        except (TypeError, ValueError) as exc:  # a record whose message cannot be formatted
            self.scan.add(f"log record {record.name}", f"{record.msg!r} {record.args!r} ({exc})")


@dataclass
class Finding:
    where: str
    what: str  # the secret, masked

    def __str__(self) -> str:
        return f"{self.what} in {self.where}"


def mask(secret: str) -> str:
    return secret if secret == PEM_MARKER else f"{secret[:4]}…({len(secret)} chars)"


def encoded_forms(secret: str) -> list[tuple[str, str]]:
    """(needle, how to name it): the secret as is and base64-encoded as in ``Authorization: Token``. The
    encoding's tail depends on what follows the secret (a stray byte), so the stable prefix is searched."""
    encoded = base64.b64encode(secret.encode()).decode()
    stable = encoded[: len(secret) // 3 * 4]
    return [(secret, mask(secret)), (stable, f"base64 of {mask(secret)}")]


@dataclass
class SecretScan:
    registry: SecretRegistry
    chunks: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.handler = _Collector(self)

    def add(self, where: str, text: str) -> None:
        if text:
            self.chunks.append((where, text))

    def add_files(self, folder: Path, pattern: str = "*.log") -> None:
        for path in sorted(folder.rglob(pattern)):
            if path.is_file():
                self.add(str(path), path.read_text(encoding="utf-8", errors="replace"))

    def findings(self) -> list[Finding]:
        needles = [form for secret in self.registry for form in encoded_forms(secret)]
        needles.append((PEM_MARKER, PEM_MARKER))
        found: dict[tuple[str, str], Finding] = {}
        for where, text in self.chunks:
            for needle, name in needles:
                if needle in text:
                    found.setdefault((where, needle), Finding(where, name))
        return list(found.values())

    def attach(self) -> None:
        root = logging.getLogger()
        if self.handler not in root.handlers:  # code under test may replace the root handlers
            root.addHandler(self.handler)


SCAN_KEY = pytest.StashKey[SecretScan]()


def default_registry() -> SecretRegistry:
    from tests.ocpi.conftest import TOKENS  # the pre-shared tokens of the OCPI tests

    return SecretRegistry([*LITERAL_TEST_SECRETS, *TOKENS.values()])


# --- the plugin ------------------------------------------------------------------------------------------


class SecretScanPlugin:
    """The hooks that feed the scan during the session and judge it at the end."""

    def __init__(self, scan: SecretScan) -> None:
        self.scan = scan
        self.basetemp: Path | None = None

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.scan.attach()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for title, content in report.sections:
            self.scan.add(f"{report.nodeid} ({title})", content)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        logging.getLogger().removeHandler(self.scan.handler)
        if self.basetemp is not None and self.basetemp.exists():
            self.scan.add_files(self.basetemp)
        findings = self.scan.findings()
        if not findings:
            return
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.section("secret scan", sep="=", red=True, bold=True)
            reporter.write_line("SECRET LEAK: test secrets appear in the suite's output:")
            for finding in findings:
                reporter.write_line(f"  {finding}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


PLUGIN_NAME = "oicp-bridge-secret-scan"


def pytest_configure(config: pytest.Config) -> None:
    scan = SecretScan(default_registry())
    config.stash[SCAN_KEY] = scan
    root = logging.getLogger()
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)  # what production logs (bridge.logs.configure_logging's default)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # as in production
    scan.attach()
    config.pluginmanager.register(SecretScanPlugin(scan), PLUGIN_NAME)


@pytest.fixture(scope="session", autouse=True)
def _secret_scan_basetemp(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tell the scan where the session's temp folder is: the daemons' log files are under it."""
    plugin = pytestconfig.pluginmanager.get_plugin(PLUGIN_NAME)
    if isinstance(plugin, SecretScanPlugin):
        plugin.basetemp = tmp_path_factory.getbasetemp()


@pytest.fixture(scope="session")
def secrets_registry(pytestconfig: pytest.Config) -> SecretRegistry:
    """Add a secret a test uses (token, key password) so the session-end scan looks for it."""
    return pytestconfig.stash[SCAN_KEY].registry
