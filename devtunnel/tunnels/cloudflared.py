"""cloudflared quick tunnels: no account, a new https://<words>.trycloudflare.com each run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from devtunnel.errors import RunError
from devtunnel.tunnels.base import Tunnel, end_async_process

logger = logging.getLogger(__name__)
agent_logger = logging.getLogger(f"{__name__}.agent")

# Seconds from launch to the first registered edge connection; Cloudflare usually needs 2-5.
REGISTER_TIMEOUT = 30.0
# The URL sits alone in an ASCII box: "|  https://<words>.trycloudflare.com  |".
BANNER_URL = re.compile(r"\|\s+(https://\S+?)/?\s+\|")
REGISTERED = "Registered tunnel connection"
INSTALL_HINT = (
    "install cloudflared (https://developers.cloudflare.com/cloudflare-one/connections/"
    "connect-networks/downloads/), or pass --cloudflared-path"
)


class CloudflaredTunnel(Tunnel):
    """A quick tunnel run by a cloudflared child process, read from its stderr log."""

    name = "cloudflared"

    def __init__(
        self,
        *,
        cloudflared_path: Path | None = None,
        environ: Mapping[str, str] | None = None,
        register_timeout: float = REGISTER_TIMEOUT,
    ) -> None:
        super().__init__()
        self._cloudflared_path = cloudflared_path
        self._environ = os.environ if environ is None else environ
        self._register_timeout = register_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._banner_url: str | None = None
        self._last_error = ""
        self._registered = asyncio.Event()

    async def start(self, local_url: str) -> str:
        """Launch cloudflared; return the banner's URL once an edge connection is registered.

        Probing a new trycloudflare.com name before then gets NXDOMAIN, which resolvers
        cache for tens of minutes: so start() waits for the registered line.
        """
        await self.stop()
        binary = self._binary()
        self._banner_url, self._last_error = None, ""
        self._registered = asyncio.Event()
        self._proc = await asyncio.create_subprocess_exec(
            str(binary),
            "tunnel",
            "--no-autoupdate",
            "--url",
            local_url,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=dict(self._environ),
        )
        logger.debug("cloudflared started, pid %d", self._proc.pid)
        self._reader = asyncio.create_task(self._read_log(self._proc), name="cloudflared-log")

        registered = asyncio.create_task(self._registered.wait())
        try:
            await asyncio.wait(
                {registered, self._reader},
                timeout=self._register_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            registered.cancel()
        if self._registered.is_set() and self._banner_url is not None:
            self._public_url = self._banner_url
            logger.info("cloudflared tunnel %s -> %s", self._public_url, local_url)
            return self._public_url

        failure = self._failure(binary)
        await self.stop()
        raise failure

    async def stop(self) -> None:
        """End cloudflared (SIGTERM, wait, SIGKILL) and the task that reads its log."""
        proc, reader = self._proc, self._reader
        self._proc, self._reader, self._public_url = None, None, None
        if proc is not None:
            await end_async_process(proc)
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    def alive(self) -> bool:
        """True while cloudflared runs."""
        return self._proc is not None and self._proc.returncode is None

    def _binary(self) -> Path:
        if self._cloudflared_path is not None:
            path = self._cloudflared_path
            if not path.is_file() or not os.access(path, os.X_OK):
                raise RunError(f"--cloudflared-path {path}", "no executable file", INSTALL_HINT)
            return path
        found = shutil.which("cloudflared", path=self._environ.get("PATH"))
        if found is None:
            raise RunError("cloudflared", "not found on PATH", INSTALL_HINT)
        return Path(found)

    async def _read_log(self, proc: asyncio.subprocess.Process) -> None:
        """Drain cloudflared's stderr for as long as it runs, so that the pipe never fills."""
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            agent_logger.debug("%s", line)
            if " ERR " in f" {line} ":
                self._last_error = line.split(" ERR ", 1)[-1].strip()
            if self._banner_url is None and (match := BANNER_URL.search(line)):
                self._banner_url = match.group(1)
            elif REGISTERED in line:
                self._registered.set()
        await proc.wait()

    def _failure(self, binary: Path) -> RunError:
        proc = self._proc
        if proc is not None and proc.returncode is not None:
            detail = f": {self._last_error}" if self._last_error else ""
            return RunError(
                "cloudflared",
                f"exited with code {proc.returncode} before the tunnel was up{detail}",
                f"run `{binary} tunnel --url http://127.0.0.1:8080` to see why; "
                "trycloudflare.com limits how often quick tunnels are made",
            )
        if self._banner_url is None:
            fault = f"printed no tunnel URL within {self._register_timeout:g} s"
        else:
            fault = (
                f"registered no connection for {self._banner_url} in {self._register_timeout:g} s"
            )
        return RunError(
            "cloudflared",
            fault,
            "check that this network lets cloudflared reach Cloudflare (port 7844, UDP and TCP)",
        )
