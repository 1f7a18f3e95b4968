"""Test doubles. The fake agents stand in for ngrok and cloudflared as real executables.

The fake agents themselves import only the standard library (and `forwarder`), so this
module imports aiohttp inside the helpers that need it.

`install_agent` writes an executable named like the real binary (`ngrok`, `cloudflared`)
into a directory: a `#!<this interpreter>` script that runs the fake with its settings
(TLS file, record file, failure mode) in the environment variables the fake reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parents[2]
MODULES = {"ngrok": "tests.fakes.fake_ngrok", "cloudflared": "tests.fakes.fake_cloudflared"}


@dataclass(frozen=True)
class FakeAgent:
    """An installed fake agent: its executable and the file where it records what it saw."""

    path: Path
    record: Path

    def seen(self) -> dict[str, Any]:
        """What the last run of the agent recorded: argv, pid, environment facts, requests."""
        data: dict[str, Any] = json.loads(self.record.read_text(encoding="utf-8"))
        return data


def install_agent(binary: str, directory: Path, *, tls_file: Path, mode: str = "") -> FakeAgent:
    """Write the fake `binary` ("ngrok" or "cloudflared") into `directory` as an executable."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / binary
    record = directory / f"{binary}.record.json"
    settings = {
        "FAKE_AGENT_TLS": str(tls_file),
        "FAKE_AGENT_RECORD": str(record),
        "FAKE_AGENT_MODE": mode,
    }
    path.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"sys.path.insert(0, {str(REPO_DIR)!r})\n"
        f"os.environ.update({settings!r})\n"
        f"from {MODULES[binary]} import main\n"
        "sys.exit(main())\n",
        encoding="utf-8",
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return FakeAgent(path, record)


def is_running(pid: int) -> bool:
    """Whether a process with `pid` exists (an ended, reaped agent does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[str]:
    """A local aiohttp server on a free loopback port that answers with what reached it."""
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": dict(request.headers),
                "body": await request.text(),
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def fetch(
    url: str, client_ssl: ssl.SSLContext, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """POST b"hello" to `url`, trusting `client_ssl`; the status and the body."""
    from aiohttp import ClientSession

    async with (
        ClientSession() as session,
        session.post(url, data=b"hello", headers=headers, ssl=client_ssl) as response,
    ):
        return response.status, await response.text()
