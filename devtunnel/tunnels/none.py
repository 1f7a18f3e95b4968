"""No tunnel: the local URL only. A remote verifier such as AIR cannot reach it."""

from __future__ import annotations

import logging

from devtunnel.tunnels.base import Tunnel

logger = logging.getLogger(__name__)


class NoTunnel(Tunnel):
    """Serve on the local URL alone; `session` warns that remote verifiers cannot reach it."""

    name = "none"

    def __init__(self) -> None:
        super().__init__()
        self._open = False

    async def start(self, local_url: str) -> str:
        """Return `local_url` itself, without a trailing slash."""
        self._public_url = local_url.rstrip("/")
        self._open = True
        logger.info("no tunnel: %s is reachable from this machine only", self._public_url)
        return self._public_url

    async def stop(self) -> None:
        """Forget the URL; there is no agent to end."""
        self._public_url = None
        self._open = False

    def alive(self) -> bool:
        """True between start and stop: nothing can die."""
        return self._open
