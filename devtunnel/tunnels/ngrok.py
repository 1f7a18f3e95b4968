"""ngrok through pyngrok: find the agent, start it without showing the authtoken, open an endpoint.

devtunnel never writes the user's ngrok config: the agent is pointed at the user's
existing file (read only) or, where there is none, at a minimal file of devtunnel's own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyngrok import aio, installer, ngrok, process
from pyngrok.conf import PyngrokConfig
from pyngrok.exception import PyngrokError, PyngrokNgrokError, PyngrokNgrokHTTPError
from pyngrok.process import NgrokProcess

from devtunnel.errors import RunError
from devtunnel.tunnels.base import Tunnel, end_process

logger = logging.getLogger(__name__)

# pyngrok checks its start-up timeout only between two lines of the agent's log.
STARTUP_TIMEOUT = 15
# After that, the agent is ended, which wakes pyngrok from a read on a silent agent.
STARTUP_GRACE = 0.5
REQUEST_TIMEOUT = 4.0
MONITOR_JOIN_TIMEOUT = 1.0
MINIMAL_CONFIG = 'version: "3"\n'
# pyngrok's default name embeds the upstream URL, slashes included, and the name is the
# last segment of the endpoint's API path: a plain name keeps that path valid.
ENDPOINT_NAME = "devtunnel"
ERROR_CODE = re.compile(r"ERR_NGROK_\d+")
ENDPOINT_URL = re.compile(r"'(https?://[^']+)'")
INSTALL_HINT = "install ngrok (https://ngrok.com/download), or pass --ngrok-path"


class NgrokTunnel(Tunnel):
    """An ngrok endpoint served by a local ngrok agent that pyngrok starts and drives."""

    name = "ngrok"

    def __init__(
        self,
        *,
        ngrok_path: Path | None = None,
        domain: str | None = None,
        environ: Mapping[str, str] | None = None,
        startup_timeout: int = STARTUP_TIMEOUT,
    ) -> None:
        super().__init__()
        self._ngrok_path = ngrok_path
        self._domain = domain
        self._environ = os.environ if environ is None else environ
        self._startup_timeout = startup_timeout
        self._process: NgrokProcess | None = None
        self._endpoint: ngrok.NgrokTunnel | None = None
        self._own_config_dir: Path | None = None

    async def start(self, local_url: str) -> str:
        """Start the agent and open an endpoint towards `local_url`; return its public URL."""
        await self.stop()
        binary = await self._agent_binary()
        config = PyngrokConfig(
            ngrok_path=str(binary),
            config_path=str(self._config_file()),
            startup_timeout=self._startup_timeout,
            request_timeout=REQUEST_TIMEOUT,
        )
        # pyngrok would pass NGROK_AUTHTOKEN as `--authtoken`, where `ps` shows it to every
        # local user; the agent reads the same variable from the environment it inherits.
        config.auth_token = None

        options: dict[str, Any] = {}
        if self._domain:
            options["url"] = f"https://{self._domain}"
        began = time.monotonic()
        try:
            self._process = await self._start_agent(config)
            self._endpoint = await aio.connect(
                local_url, name=ENDPOINT_NAME, pyngrok_config=config, **options
            )
        except PyngrokError as exc:
            elapsed = time.monotonic() - began
            await self.stop()
            raise self._failure(exc, binary, elapsed) from exc

        self._public_url = str(self._endpoint.public_url).rstrip("/")
        logger.info("ngrok endpoint %s -> %s", self._public_url, local_url)
        return self._public_url

    async def stop(self) -> None:
        """Remove the endpoint, end the agent and forget it, so that a new start is fresh."""
        agent, endpoint = self._process, self._endpoint
        self._process, self._endpoint, self._public_url = None, None, None

        if agent is not None and endpoint is not None and agent.proc.poll() is None:
            try:
                await aio.api_request(
                    f"{agent.api_url}{endpoint.uri}", method="DELETE", timeout=REQUEST_TIMEOUT
                )
            except (PyngrokError, OSError) as exc:  # the agent may die while we ask
                logger.debug("could not remove endpoint %s: %s", endpoint.public_url, exc)
        if agent is not None:
            await asyncio.to_thread(_end_agent, agent)
        if self._own_config_dir is not None:
            shutil.rmtree(self._own_config_dir, ignore_errors=True)
            self._own_config_dir = None

    async def _start_agent(self, config: PyngrokConfig) -> NgrokProcess:
        starting = asyncio.ensure_future(aio.get_ngrok_process(config))
        done, _ = await asyncio.wait({starting}, timeout=self._startup_timeout + STARTUP_GRACE)
        if not done:
            hung = process._current_processes.get(config.ngrok_path)
            if hung is not None:
                logger.debug("agent %d is silent; ending it", hung.proc.pid)
                hung.proc.kill()
        return await starting

    def alive(self) -> bool:
        """pyngrok never reports the agent's death (its next call starts a new one): poll it."""
        return self._process is not None and self._process.proc.poll() is None

    async def _agent_binary(self) -> Path:
        """--ngrok-path, PYNGROK_NGROK_PATH, `ngrok` on PATH, else pyngrok's managed copy."""
        if self._ngrok_path is not None:
            return _executable(self._ngrok_path, "--ngrok-path")
        from_env = self._environ.get("PYNGROK_NGROK_PATH")
        if from_env:
            return _executable(Path(from_env), "PYNGROK_NGROK_PATH")
        on_path = shutil.which("ngrok", path=self._environ.get("PATH"))
        if on_path is not None:
            return Path(on_path)

        managed = Path(installer.get_default_ngrok_dir()) / installer.get_ngrok_bin()
        if not managed.exists():
            await _download_agent(managed)
        return _executable(managed, "ngrok")

    def _config_file(self) -> Path:
        existing = find_user_config(self._environ)
        if existing is not None:
            logger.debug("ngrok reads the user's config %s (devtunnel never writes it)", existing)
            return existing
        self._own_config_dir = Path(tempfile.mkdtemp(prefix="devtunnel-ngrok-"))
        own = self._own_config_dir / "ngrok.yml"
        own.write_text(MINIMAL_CONFIG, encoding="utf-8")
        logger.debug("no ngrok config found; the agent reads devtunnel's own %s", own)
        return own

    def _failure(self, exc: PyngrokError, binary: Path, elapsed: float) -> RunError:
        """The one RunError a user can act on, for whatever pyngrok raised."""
        code = _error_code(exc)
        if code == "ERR_NGROK_4018":
            return RunError(
                "ngrok",
                "the agent has no authtoken (ERR_NGROK_4018)",
                "set NGROK_AUTHTOKEN, or run `ngrok config add-authtoken <token>` once; "
                "the token is at https://dashboard.ngrok.com/get-started/your-authtoken",
            )
        if code == "ERR_NGROK_108":
            return RunError(
                "ngrok",
                "another agent session of this ngrok account is running (ERR_NGROK_108)",
                "stop the other ngrok agent (https://dashboard.ngrok.com/agents lists them), "
                "or use --tunnel cloudflared",
            )
        if code == "ERR_NGROK_334":
            return RunError(
                "--domain" if self._domain else "ngrok",
                f"{_endpoint_url(exc) or 'the endpoint'} is already online elsewhere "
                "(ERR_NGROK_334)",
                "stop the other agent that serves it, or pass another --domain",
            )
        if code is not None:
            return RunError(
                "ngrok",
                f"the agent refused: {self._scrub(_first_line(_error_text(exc)))}",
                f"see https://ngrok.com/docs/errors/{code.lower().replace('_', '-')}",
            )
        if isinstance(exc, PyngrokNgrokHTTPError):
            return RunError(
                "ngrok",
                f"the agent's API answered {exc.status_code} when opening the endpoint",
                "run with -vv to see the agent's log",
            )
        if isinstance(exc, PyngrokNgrokError):
            if elapsed >= self._startup_timeout:
                fault = f"the agent {binary} did not come up within {self._startup_timeout} s"
            else:
                fault = f"the agent {binary} exited during start-up"
            return RunError(
                "ngrok",
                fault,
                f"run `{binary} start --none --log stdout` to see why, or pass another "
                "--ngrok-path",
            )
        return RunError("ngrok", self._scrub(str(exc)), "fix or move aside that ngrok config")

    def _scrub(self, text: str) -> str:
        token = self._environ.get("NGROK_AUTHTOKEN")
        return text.replace(token, "[authtoken]") if token else text


def find_user_config(environ: Mapping[str, str]) -> Path | None:
    """The user's ngrok config file where the agent would look for it, if there is one."""
    home = Path(environ.get("HOME") or Path.home())
    candidates = [
        home / ".config" / "ngrok" / "ngrok.yml",
        home / "Library" / "Application Support" / "ngrok" / "ngrok.yml",
        home / ".ngrok2" / "ngrok.yml",
    ]
    xdg = environ.get("XDG_CONFIG_HOME")
    if xdg:
        candidates.insert(0, Path(xdg) / "ngrok" / "ngrok.yml")
    return next((path for path in candidates if path.is_file()), None)


def _executable(path: Path, source: str) -> Path:
    if path.is_dir():
        raise RunError(f"{source} {path}", "is a folder, not the agent binary", INSTALL_HINT)
    if not path.is_file():
        raise RunError(f"{source} {path}", "no such file", INSTALL_HINT)
    if not os.access(path, os.X_OK):
        raise RunError(f"{source} {path}", "not executable", f"run `chmod +x {path}`")
    return path


async def _download_agent(path: Path) -> None:
    logger.info("no ngrok agent found; downloading it to %s", path)
    # pyngrok draws its progress on stdout, which --json keeps for events.
    installer._print_progress_enabled = False
    try:
        await asyncio.to_thread(installer.install_ngrok, str(path), ngrok_version="3")
    except PyngrokError as exc:
        fault = f"no agent binary, and the download failed: {exc}"
        raise RunError("ngrok", fault, INSTALL_HINT) from exc


def _end_agent(agent: NgrokProcess) -> None:
    """End the agent, then drop pyngrok's cached process so the next start launches a new one."""
    monitor = agent._monitor_thread
    agent.stop_monitor_thread()
    end_process(agent.proc)
    ngrok.kill(agent.pyngrok_config)
    if monitor is not None:
        monitor.join(MONITOR_JOIN_TIMEOUT)
    if agent.proc.stdout is not None:
        agent.proc.stdout.close()


def _error_text(exc: PyngrokError) -> str:
    if isinstance(exc, PyngrokNgrokHTTPError):
        return exc.body
    if isinstance(exc, PyngrokNgrokError):
        if exc.ngrok_error:
            return exc.ngrok_error
        # pyngrok stops reading at the agent's exit and may not have kept the error: look back.
        errors = [log.err for log in exc.ngrok_logs if log.err and log.err != "nil"]
        if errors:
            return errors[-1]
    return str(exc)


def _error_code(exc: PyngrokError) -> str | None:
    match = ERROR_CODE.search(_error_text(exc))
    return match.group(0) if match else None


def _endpoint_url(exc: PyngrokError) -> str | None:
    match = ENDPOINT_URL.search(_error_text(exc))
    return match.group(1) if match else None


def _first_line(text: str) -> str:
    # The agent's errors arrive with literal "\n" pairs as well as real line breaks.
    return re.split(r"\\r|\\n|[\r\n]", text.strip(), maxsplit=1)[0].strip()
