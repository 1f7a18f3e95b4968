"""`devtunnel up`: run the server, the tunnel, the watcher and the check loop; stop cleanly.

The session wires the parts and emits events; it never formats text. Every task it
starts, it also cancels and awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp

from devtunnel.check import CheckResult, check_jwks
from devtunnel.config import DEFAULT_CHECK_INTERVAL_S, Settings
from devtunnel.errors import DevtunnelError, RunError
from devtunnel.events import Event, Ready, Reload, Stopped, Tunnel
from devtunnel.files import atomic_write
from devtunnel.keys import KeyPair
from devtunnel.server import JwksServer, JwksStore, create_app
from devtunnel.tunnels import Tunnel as TunnelProvider
from devtunnel.tunnels import make_tunnel
from devtunnel.watch import KeyChange, reload_keys, watch_files

logger = logging.getLogger(__name__)

TUNNEL_POLL_S = 1.0  # how often the tunnel's process is looked at (pyngrok never says it died)
RESTART_BACKOFF_S = (1.0, 30.0)  # first and longest wait between restarts, doubling
PROPAGATION_TIMEOUT_S = 10.0  # how long a rotation may take to show through the tunnel
PROPAGATION_RETRY_S = 0.2


@dataclass(frozen=True)
class UpOptions:
    """What `devtunnel up` was asked to do."""

    host: str
    port: int
    paths: Sequence[str]
    tunnel: str = "ngrok"
    domain: str | None = None
    ngrok_path: Path | None = None
    cloudflared_path: Path | None = None
    interval: float = DEFAULT_CHECK_INTERVAL_S
    watch: bool = True
    poll: bool = False
    upstream: str | None = None
    once: bool = False


Emit = Callable[[Event], None]
Note = Callable[[str, str], None]


class Session:
    """One run of `devtunnel up`."""

    def __init__(
        self,
        options: UpOptions,
        *,
        settings: Settings,
        resolve: Callable[[], Settings],
        pair: KeyPair,
        emit: Emit,
        note: Note,
    ) -> None:
        self.options = options
        self._watch_paths = settings.watch_paths()
        self._resolve = resolve
        self._emit = emit
        self._note = note
        self._pair = pair
        self._store = JwksStore(pair)
        self._server = JwksServer(
            create_app(self._store, paths=options.paths, upstream=options.upstream, on_fetch=emit)
        )
        self._tunnel: TunnelProvider = make_tunnel(
            options.tunnel,
            ngrok_path=options.ngrok_path,
            cloudflared_path=options.cloudflared_path,
            domain=options.domain,
        )
        self._stop = asyncio.Event()
        self._check_now = asyncio.Event()
        self._pending_rotation: tuple[KeyChange, str] | None = None
        self._public_url = ""
        self._browser_probe = True

    @property
    def jwks_urls(self) -> list[str]:
        """The URLs to register: the public URL with each path."""
        return [self._public_url + path for path in self.options.paths]

    def stop(self) -> None:
        """Ask the run to end (the signal handlers call this)."""
        self._stop.set()

    async def run(self) -> int:
        """Run until stopped (or once); return the exit code."""
        try:
            return await self._run()
        except DevtunnelError as exc:
            self._emit(Stopped(reason=f"error: {exc}"))
            raise

    async def _run(self) -> int:
        async with contextlib.AsyncExitStack() as stack:
            await self._server.start(self.options.host, self.options.port)
            stack.push_async_callback(self._server.stop)
            stack.push_async_callback(self._tunnel.stop)
            self._public_url = await self._tunnel.start(self._server.local_url)
            self._announce()

            client = await stack.enter_async_context(aiohttp.ClientSession())
            if self.options.once:
                result = await self._check(client)
                self._emit(Stopped(reason="once"))
                return 0 if result.ok else 1

            tasks = [
                asyncio.create_task(self._check_loop(client), name="check-loop"),
                asyncio.create_task(self._watch_tunnel(), name="tunnel-monitor"),
            ]
            if self.options.watch:
                tasks.append(asyncio.create_task(self._watch_keys(), name="key-watcher"))
            try:
                await self._stop.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        self._emit(Stopped(reason="signal"))
        return 0

    # Startup

    def _announce(self) -> None:
        previous = _load_last_url()
        _save_last_url(self._public_url)
        snapshot = self._store.current
        if self._pair.ephemeral:
            self._note(
                f"no key configured: serving an ephemeral {self._pair.alg} key made in memory; "
                "a JWT signed elsewhere will not verify (`devtunnel keygen` makes a lasting one)",
                "warning",
            )
        self._emit(
            Ready(
                public_url=self._public_url,
                jwks_urls=self.jwks_urls,
                local_url=self._server.local_url,
                tunnel=self._tunnel.name,
                kid=snapshot.kid,
                alg=snapshot.alg,
                thumbprint=snapshot.thumbprint,
                url_changed=previous != self._public_url,
            )
        )

    # The check loop

    async def _check_loop(self, client: aiohttp.ClientSession) -> None:
        while True:
            await self._check(client)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._check_now.wait(), self.options.interval)
            self._check_now.clear()

    async def _check(self, client: aiohttp.ClientSession) -> CheckResult:
        rotation, self._pending_rotation = self._pending_rotation, None
        url = self.jwks_urls[0]
        result = await check_jwks(
            url,
            pair=self._pair,
            browser_probe=self._browser_probe,
            session=client,
        )
        requests = result.requests
        propagation_ms: float | None = None

        if rotation is not None:
            change, expected = rotation
            deadline = time.monotonic() + PROPAGATION_TIMEOUT_S
            while result.thumbprint != expected and time.monotonic() < deadline:
                await asyncio.sleep(PROPAGATION_RETRY_S)
                result = await check_jwks(url, pair=self._pair, browser_probe=False, session=client)
                requests += result.requests
            if result.thumbprint == expected:
                propagation_ms = round((time.monotonic() - change.seen_at) * 1000, 1)

        # The browser probe asks about the tunnel, not the keys: once per tunnel is enough.
        self._browser_probe = False
        self._emit(replace(result.to_event(), requests=requests, propagation_ms=propagation_ms))
        return result

    # The tunnel monitor

    async def _watch_tunnel(self) -> None:
        while True:
            await asyncio.sleep(TUNNEL_POLL_S)
            if self._tunnel.alive():
                continue
            logger.warning("the %s tunnel died; restarting it", self._tunnel.name)
            self._emit(Tunnel(state="down", public_url=self._public_url))
            await self._restart_tunnel()

    async def _restart_tunnel(self) -> None:
        delay, longest = RESTART_BACKOFF_S
        while True:
            await asyncio.sleep(delay)
            with contextlib.suppress(RunError):
                await self._tunnel.stop()
            try:
                url = await self._tunnel.start(self._server.local_url)
            except RunError as exc:
                delay = min(delay * 2, longest)
                logger.warning("tunnel restart failed (%s); next try in %.0f s", exc, delay)
                continue
            changed = url != self._public_url
            self._public_url = url
            _save_last_url(url)
            self._emit(Tunnel(state="restarted", public_url=url, url_changed=changed))
            self._browser_probe = True
            self._check_now.set()
            return

    # Key rotation

    async def _watch_keys(self) -> None:
        async for change in watch_files(self._watch_paths, self._stop, poll=self.options.poll):
            result = reload_keys(self._resolve, self._pair)
            if result.pair is None:
                self._emit(
                    Reload(
                        ok=False,
                        thumbprint=self._store.current.thumbprint,
                        kid=self._store.current.kid,
                        alg=self._store.current.alg,
                        problems=result.problems,
                        source=change.source,
                    )
                )
                continue

            self._pair = result.pair
            self._store.swap(result.pair)
            snapshot = self._store.current
            self._emit(
                Reload(
                    ok=True,
                    thumbprint=snapshot.thumbprint,
                    kid=snapshot.kid,
                    alg=snapshot.alg,
                    source=change.source,
                )
            )
            self._pending_rotation = (change, snapshot.thumbprint)
            self._check_now.set()


def _state_file() -> Path:
    # One small file per project directory, outside the project (nothing to .gitignore).
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    key = hashlib.sha256(str(Path.cwd().resolve()).encode()).hexdigest()[:16]
    return base / "devtunnel" / f"{key}.json"


def _load_last_url() -> str | None:
    try:
        data = json.loads(_state_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    url = data.get("public_url") if isinstance(data, dict) else None
    return url if isinstance(url, str) else None


def _save_last_url(url: str) -> None:
    path = _state_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({"public_url": url, "cwd": str(Path.cwd())}).encode())
    except OSError as exc:
        logger.warning("could not remember the URL in %s: %s", path, exc.strerror)
