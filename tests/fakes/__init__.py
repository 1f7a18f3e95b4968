"""Test doubles. The fake agents stand in for ngrok and cloudflared as real executables.

The fake agents themselves import only the standard library (and `forwarder`), so this
module imports aiohttp inside the helpers that need it.

`install_agent` writes an executable named like the real binary (`ngrok`, `cloudflared`)
into a directory: a `#!<this interpreter>` script that runs the fake with its settings
(TLS file, record file, failure mode) in the environment variables the fake reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devtunnel.keys import PrivateKey

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


def install_ngrok_with_ca(directory: Path, *, mode: str = "") -> tuple[FakeAgent, Path]:
    """A fake ngrok in `directory/bin` whose HTTPS certificate comes from a new test CA.

    Returns the agent and the CA's PEM file, to trust through SSL_CERT_FILE.
    """
    import trustme

    ca = trustme.CA()
    ca_file, tls_file = directory / "ca.pem", directory / "agent-tls.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(tls_file))
    return install_agent("ngrok", directory / "bin", tls_file=tls_file, mode=mode), ca_file


def env_text(private: PrivateKey, partner_id: str) -> str:
    """Env-file lines as AIR's examples hold a key pair: one-line PEMs with literal \\n escapes."""
    from devtunnel.keys import private_pem, public_pem

    pem = private_pem(private).strip().replace("\n", "\\n")
    pub = public_pem(private.public_key()).strip().replace("\n", "\\n")
    return (
        f"NEXT_PUBLIC_PARTNER_ID={partner_id}\n"
        f'PARTNER_PRIVATE_KEY="{pem}"\nPARTNER_PUBLIC_KEY="{pub}"\n'
    )


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


@contextlib.asynccontextmanager
async def slow_app() -> AsyncIterator[tuple[str, asyncio.Event, asyncio.Event]]:
    """An app on a free loopback port whose GET /slow waits: (base URL, arrived, release).

    `arrived` is set when a request reaches it; it answers "finished" once `release` is set.
    """
    from aiohttp import web

    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(_request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="finished")

    app = web.Application()
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site.port}", arrived, release
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
