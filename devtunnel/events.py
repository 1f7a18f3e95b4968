"""The events that `up` and `serve` emit; `--json` prints each as one line.

Field names are part of the contract in DESIGN.md: add fields, never rename them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

# devtunnel's own requests carry this header, so the server leaves them out of `fetch` events.
SELF_CHECK_HEADER = "X-Devtunnel-Check"
# A server-side fetcher's user agent: ngrok's free plan shows browsers an HTML warning page.
USER_AGENT = "devtunnel-check/0.1 (JWKS verifier check)"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a warning), with a hint phrased as the fix."""

    code: str
    detail: str
    hint: str


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event: its name and when it happened."""

    name: ClassVar[str] = "event"
    time: str = field(default_factory=_now)

    def to_dict(self) -> dict[str, Any]:
        """The event as the JSON object of the event stream."""
        return {"event": self.name, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        """The event as one line of JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"))


@dataclass(frozen=True, kw_only=True)
class Ready(Event):
    """The server and tunnel are up: the URLs to register and the key they serve."""

    name: ClassVar[str] = "ready"
    public_url: str
    jwks_urls: list[str]
    local_url: str
    tunnel: str
    kid: str
    alg: str
    thumbprint: str
    url_changed: bool


@dataclass(frozen=True, kw_only=True)
class Check(Event):
    """One end-to-end check of a JWKS URL."""

    name: ClassVar[str] = "check"
    ok: bool
    url: str
    status: int | None
    latency_ms: float | None
    thumbprint: str | None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    requests: int = 0  # how many requests this check sent (the tunnel's quota counts them)
    propagation_ms: float | None = None  # after a reload: change seen → public URL serves it


@dataclass(frozen=True, kw_only=True)
class Reload(Event):
    """The key sources changed: the new keys are served (ok) or the last good ones kept."""

    name: ClassVar[str] = "reload"
    ok: bool
    thumbprint: str | None
    kid: str | None
    alg: str | None = None
    problems: list[Problem] = field(default_factory=list)
    source: str = ""


@dataclass(frozen=True, kw_only=True)
class Fetch(Event):
    """Requests for the JWKS that were not devtunnel's own, coalesced per second."""

    name: ClassVar[str] = "fetch"
    path: str
    client: str
    user_agent: str
    status: int
    count: int = 1


@dataclass(frozen=True, kw_only=True)
class Tunnel(Event):
    """The tunnel went down or came back."""

    name: ClassVar[str] = "tunnel"
    state: str  # "down" | "restarted"
    public_url: str | None
    url_changed: bool = False


@dataclass(frozen=True, kw_only=True)
class Stopped(Event):
    """The run ended."""

    name: ClassVar[str] = "stopped"
    reason: str
