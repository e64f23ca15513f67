"""A throwaway PostgreSQL server for the tests, from Debian's packages (``postgresql``).

``PgServer`` runs ``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/<version>/bin`` on a temporary data
directory. ``initdb`` refuses to run as root, so as root the server runs as the unprivileged ``postgres``
user (created when missing, as Debian's package does). It listens on 127.0.0.1 and a free port only (no
Unix socket), with ``trust`` authentication: nothing but this host can reach it, and it holds only test data.

``.ci/run`` starts one server for the whole run and exports its URL as ``OICP_BRIDGE_TEST_PG_URL``::

    python -m tests.pg_server start DATA_DIR   # prints the URL
    python -m tests.pg_server stop DATA_DIR

Without that variable the ``pg_url`` fixture (``tests/conftest.py``) starts a server for the session.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SERVICE_USER = "postgres"
START_TIMEOUT_S = 60


class PgUnavailableError(RuntimeError):
    """No PostgreSQL server binaries on this machine (or they cannot be run)."""


def find_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb`` and ``pg_ctl``."""
    found = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise PgUnavailableError(
            "no PostgreSQL server found (/usr/lib/postgresql/*/bin/initdb): install Debian's `postgresql`"
            " package, or set OICP_BRIDGE_TEST_PG_URL to a server the tests may create databases on"
        )
    return found[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _service_user() -> str | None:
    """The user to run the server as: ``postgres`` when we are root (created if missing), else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
        )
    return SERVICE_USER


@dataclass
class PgServer:
    """One PostgreSQL cluster in ``data_dir``; ``start()``, ``stop()``, ``start()`` again keeps its data."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    bindir: Path = field(default_factory=find_bindir)
    scratch: Path | None = None  # a folder of its own that destroy() removes as well

    @property
    def url(self) -> str:
        return f"postgresql://{SERVICE_USER}@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://{SERVICE_USER}@127.0.0.1:{self.port}/{name}"

    @property
    def _log(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.server.log"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        user = _service_user()
        try:
            return subprocess.run(
                argv, check=True, capture_output=True, text=True, user=user, timeout=START_TIMEOUT_S
            )
        except subprocess.CalledProcessError as exc:
            log = self._log.read_text(errors="replace")[-2000:] if self._log.exists() else ""
            raise PgUnavailableError(
                f"{Path(argv[0]).name} failed (exit {exc.returncode}): {exc.stderr.strip()}\n{log}"
            ) from exc

    def start(self) -> None:
        user = _service_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir.chmod(0o700)
            if user is not None:
                record = pwd.getpwnam(user)
                os.chown(self.data_dir, record.pw_uid, record.pw_gid)
                # the server writes its log beside the data directory
                self._log.touch()
                os.chown(self._log, record.pw_uid, record.pw_gid)
                # the server user must be able to reach the data directory through its parents
                parent = self.data_dir.parent
                parent.chmod(parent.stat().st_mode | 0o711)
            self._run(
                str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SERVICE_USER,
                "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions",
            )  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"
        self._run(
            str(self.bindir / "pg_ctl"), "start", "-w", "-t", str(START_TIMEOUT_S), "-D", str(self.data_dir),
            "-l", str(self._log), "-o", options,
        )  # fmt: skip
        self._wait_accepting()

    def _wait_accepting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    message = f"PostgreSQL did not accept connections on port {self.port}"
                    raise PgUnavailableError(message) from None
                time.sleep(0.05)

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server (``immediate``: as if it crashed; its data stays for the next ``start``)."""
        with contextlib.suppress(PgUnavailableError):
            self._run(str(self.bindir / "pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.data_dir))

    def destroy(self) -> None:
        self.stop(mode="immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self._log.unlink(missing_ok=True)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def temporary_server() -> PgServer:
    """A started server in a new temporary folder (outside pytest's 0700 root-owned tmp tree, which the
    ``postgres`` user could not enter)."""
    folder = Path(tempfile.mkdtemp(prefix="oicp-pg-"))
    server = PgServer(folder / "data", scratch=folder)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return server


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.pg_server start|stop DATA_DIR", file=sys.stderr)
        return 2
    command, data_dir = argv[0], Path(argv[1]).absolute()
    port_file = data_dir.parent / f"{data_dir.name}.port"
    try:
        if command == "start":
            server = PgServer(data_dir)
            server.start()
            port_file.write_text(str(server.port))
            print(server.url)
        else:
            port = int(port_file.read_text()) if port_file.exists() else 0
            PgServer(data_dir, port=port).destroy()
            port_file.unlink(missing_ok=True)
    except PgUnavailableError as exc:
        print(f"PostgreSQL for the tests: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
