"""The interface every tunnel provider implements, and how a provider ends its agent."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import subprocess

logger = logging.getLogger(__name__)

# How long an agent gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 3.0


class Tunnel(abc.ABC):
    """A public HTTPS URL in front of a local server, kept open by an agent process.

    `session` calls `start` once, `alive` every second, and `stop` on the way out
    (or before starting again after the agent died). Failures raise RunError.
    """

    name: str

    def __init__(self) -> None:
        self._public_url: str | None = None

    @property
    def public_url(self) -> str | None:
        """The public base URL (https://..., no trailing slash) while the tunnel is open."""
        return self._public_url

    @abc.abstractmethod
    async def start(self, local_url: str) -> str:
        """Open the tunnel towards `local_url`; return the public base URL."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Remove the endpoint and end the agent. Safe to call twice, or after a failed start."""

    @abc.abstractmethod
    def alive(self) -> bool:
        """False once the agent has died. Cheap: `session` calls it every second."""


def end_process(proc: subprocess.Popen[str]) -> None:
    """End `proc` the polite way: SIGTERM, wait up to STOP_TIMEOUT seconds, then SIGKILL.

    Blocking; run it in a thread from async code.
    """
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        logger.warning("agent %d ignored SIGTERM for %g s; killing it", proc.pid, STOP_TIMEOUT)
        proc.kill()
        proc.wait()


async def end_async_process(proc: asyncio.subprocess.Process) -> None:
    """The same as `end_process`, for a process started with asyncio."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):  # it exited before the loop noticed
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
    except TimeoutError:
        logger.warning("agent %d ignored SIGTERM for %g s; killing it", proc.pid, STOP_TIMEOUT)
        proc.kill()
        await proc.wait()
