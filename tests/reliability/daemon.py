"""``oicp-bridge run`` as a real subprocess for the reliability tests: a TOML config on free loopback
ports, output to a log file (never a pipe that could fill up and stall the daemon), ``kill -9``."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp

CPO_TOKEN = "reliability-cpo-token-5b1e"
ADMIN_TOKEN = "reliability-admin-token-9c3d"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DaemonConfig:
    folder: Path
    hubject_url: str
    extra: str = ""
    # OICP_BRIDGE_<SECTION>__<KEY> overrides of the file's keys (the environment wins, docs/contract.md)
    env: dict[str, str] = field(default_factory=dict)
    receiver_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)

    @property
    def path(self) -> Path:
        return self.folder / "oicp-bridge.toml"

    @property
    def db_path(self) -> Path:
        return self.folder / "bridge.db"

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def write(self) -> Path:
        self.path.write_text(
            f"""
[store]
url = "sqlite:///{self.db_path}"
[hubject]
url = "{self.hubject_url}"
connect_timeout = "1s"
timeout = "1s"
[[operators]]
operator_id = "DE*OBD"
[ocpi.receiver]
listen = "127.0.0.1:{self.receiver_port}"
[[ocpi.receiver.tokens]]
token = "{CPO_TOKEN}"
country_code = "DE"
party_id = "OBD"
[push]
flush_interval = "50ms"
shutdown_timeout = "5s"
max_retry_interval = "200ms"
retry_budget = "1s"
[resync]
interval = 0
[admin]
listen = "127.0.0.1:{self.admin_port}"
token = "{ADMIN_TOKEN}"
{self.extra}
""",
            encoding="utf-8",
        )
        return self.path


class Daemon:
    """One ``oicp-bridge run`` process; every start appends to the same log file."""

    def __init__(self, config: DaemonConfig, log_path: Path | None = None) -> None:
        self.config = config
        self.log_path = log_path or config.folder / "daemon.log"
        self.process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    async def start(self, *, within: float = 30.0) -> None:
        self.config.write()
        self._log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge",
            "run",
            "--config",
            str(self.config.path),
            "--log-format",
            "json",
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **self.config.env},
        )
        async with asyncio.timeout(within):
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"the daemon exited with {self.process.returncode}: {self.logs()}")
                try:
                    async with (
                        aiohttp.ClientSession() as session,
                        session.get(f"{self.config.admin_url}/health") as response,
                    ):
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)

    async def kill9(self) -> None:
        """SIGKILL: no drain, no cleanup, whatever the process was doing."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        self._close_log()

    async def stop(self) -> int:
        """SIGTERM and wait for the drain; the exit code."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), timeout=30)
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
