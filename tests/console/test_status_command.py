"""``oicp-bridge status`` reads the store (a SQLite file, or PostgreSQL) when no daemon answers: the
overall state, and a polled feed gone stale."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path

from tests.engines import build_engine

SOURCE = "https://cpo.example/ocpi/versions"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_status_shows_a_polled_feed_silent_past_the_threshold_as_stale(
    tmp_path: Path, engine_url: str
) -> None:
    db = build_engine(engine_url)
    await db.open()
    last_poll = time.time() - 3600
    await db.write(
        lambda conn: conn.execute(
            "INSERT INTO ocpi_sender_poll (source, last_success_at, last_error, last_error_at) "
            "VALUES (?, ?, ?, ?)",
            (SOURCE, last_poll, "GET https://cpo.example/ocpi/versions: connection refused", last_poll + 60),
        )
    )
    await db.close()
    config = tmp_path / "oicp-bridge.toml"
    config.write_text(
        f'[store]\nurl = "{engine_url}"\n'
        '[[operators]]\noperator_id = "DE*OBD"\n'
        f'[[ocpi.sources]]\nversions_url = "{SOURCE}"\ntoken = "t"\n'
        '[ocpi]\nstale_after = "30m"\n'
        f'[admin]\nlisten = "127.0.0.1:{free_port()}"\n',  # nothing answers there: read from the file
        encoding="utf-8",
    )
    code, out, err = await cli("status", "--config", str(config))
    assert code == 2, err  # not running (Nagios-style exit status)
    assert out.splitlines()[1].startswith(
        "needs a look: source https://cpo.example/ocpi/versions silent for 1 h"
    )
    assert f"{SOURCE} (poll): STALE" in out
    assert "connection refused" in out
    code, out, _ = await cli("status", "--config", str(config), "--json")
    body = json.loads(out)
    if engine_url.startswith("postgresql"):  # the lease rows: no replica leads anything (none runs)
        assert [(x["kind"], x["name"], x["leader"]) for x in body["leaders"]] == [
            ("operator", "DE*OBD", None),
            ("source", SOURCE, None),
        ]
    (feed,) = body["feeds"]
    assert feed["stale"] is True
    assert feed["failing"] is True
