"""Request a JWKS URL the way a remote verifier does; `check` judges what comes back.

AIR Kit fetches the exact registered URL from its servers, as jose's
`createRemoteJWKSet` does: a server-side user agent, no redirects followed, a
short timeout, and a body read no further than a JWKS needs. `Fetcher` sends
that request. Two side requests feed the check's warnings: a browser's request
for the same URL (tunnels put pages in front of browsers only) and a lookup of
the host (an address AIR's servers cannot reach).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from devtunnel import problems
from devtunnel.config import DEFAULT_CHECK_TIMEOUT_S
from devtunnel.errors import ConfigError
from devtunnel.events import SELF_CHECK_HEADER, USER_AGENT, Problem

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = DEFAULT_CHECK_TIMEOUT_S
MAX_BODY = 1024 * 1024  # a JWKS is a few kB; read no further than this
_CHUNK = 64 * 1024

_OWN_REQUEST = {SELF_CHECK_HEADER: "1"}
VERIFIER_HEADERS = {"User-Agent": USER_AGENT, "Accept": "application/json", **_OWN_REQUEST}
# What a browser sends, minus `ngrok-skip-browser-warning`: ngrok's free plan answers it with
# an HTML warning page (ERR_NGROK_6024), https://ngrok.com/docs/errors/err_ngrok_6024/
BROWSER_HEADERS = {
    "User-Agent": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0 Safari/537.36"
    ),
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    **_OWN_REQUEST,
}
# Pages that tunnels put in front of the real response, by a marker each one carries.
_INTERSTITIALS = (
    ("ERR_NGROK_6024", "ngrok's browser warning page (ERR_NGROK_6024)"),
    ("ngrok-skip-browser-warning", "ngrok's browser warning page"),
    ("loca.lt", "localtunnel's reminder page"),
    ("cf-chl", "a Cloudflare challenge page"),
)

_CA_HINT = "give a PEM file of CA certificates"


def parse_url(url: str) -> URL:
    """The URL to check; raises ConfigError unless it is a full http(s) URL."""
    try:
        target = URL(url)
    except (ValueError, TypeError):
        target = URL()
    if target.scheme not in ("http", "https") or not target.host:
        raise ConfigError(
            f"URL {url}",
            "is not an http:// or https:// URL",
            "give the full JWKS URL, e.g. https://your-domain.ngrok-free.app/jwks.json",
        )
    return target


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """The TLS trust for a check: the system store, plus `$SSL_CERT_FILE`, plus `ca_file`."""
    context = ssl.create_default_context()
    extra = [("SSL_CERT_FILE (environment)", os.environ.get("SSL_CERT_FILE") or None)]
    extra.append((f"--ca-file {ca_file}", str(ca_file) if ca_file is not None else None))
    for source, path in extra:
        if path is None:
            continue
        try:
            context.load_verify_locations(cafile=path)
        except FileNotFoundError:
            raise ConfigError(source, "no such file", _CA_HINT) from None
        except (ssl.SSLError, OSError, ValueError):
            raise ConfigError(source, "holds no usable PEM certificate", _CA_HINT) from None
    return context


@asynccontextmanager
async def open_session(
    given: aiohttp.ClientSession | None,
) -> AsyncIterator[aiohttp.ClientSession]:
    """The given session, left open; without one, a new session closed on exit."""
    if given is not None:
        yield given
        return
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass(frozen=True)
class Response:
    """One answer as read: status, headers, the body up to MAX_BODY, and how long it took."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    too_big: bool
    latency_ms: float

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()

    def looks_html(self) -> bool:
        return "html" in self.content_type or self.body.lstrip()[:1] == b"<"

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def interstitial(self) -> str | None:
        """The tunnel's page this HTML answer is, by name; None for any other answer."""
        if not self.looks_html():
            return None
        text = self.text()
        return next((name for marker, name in _INTERSTITIALS if marker in text), None)


@dataclass(frozen=True)
class Fetcher:
    """GET requests as a verifier sends them: exact URL, one time limit, the check's TLS trust."""

    http: aiohttp.ClientSession
    seconds: float
    context: ssl.SSLContext | None

    async def get(self, url: str, headers: Mapping[str, str]) -> Response | Problem:
        """The answer to one GET, or the problem that kept it from arriving whole."""
        started = time.perf_counter()
        try:
            async with self.http.get(
                url,
                headers=dict(headers),
                allow_redirects=False,  # AIR fetches the exact URL: a redirect is a failure
                timeout=aiohttp.ClientTimeout(total=self.seconds),
                ssl=self.context if self.context is not None else True,
            ) as response:
                body, too_big = await _read_limited(response)
        except TimeoutError:
            return problems.timeout(self.seconds)
        except aiohttp.ClientSSLError as exc:
            return problems.tls_error(exc)
        except (aiohttp.ClientError, OSError) as exc:
            return problems.unreachable(url, exc)

        latency = (time.perf_counter() - started) * 1000
        logger.debug("GET %s: %d, %d bytes, %.0f ms", url, response.status, len(body), latency)
        return Response(
            response.status,
            response.reason or "",
            response.headers,  # case-insensitive, as HTTP header names are
            body,
            too_big,
            round(latency, 1),
        )


async def _read_limited(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    if (response.content_length or 0) > MAX_BODY:
        return b"", True
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            return b"".join(chunks)[:MAX_BODY], True
    return b"".join(chunks), False


async def browser_warning(fetcher: Fetcher, url: str) -> Problem | None:
    """A warning when a browser asking for `url` is shown an HTML page instead of the JWKS."""
    fetched = await fetcher.get(url, BROWSER_HEADERS)
    if isinstance(fetched, Problem):
        logger.debug("browser probe of %s failed: %s", url, fetched.detail)
        return None
    if not fetched.looks_html():
        return None
    page = fetched.interstitial() or "an HTML page"
    return problems.browser_interstitial(page, fetched.status)


async def address_warning(target: URL, seconds: float) -> Problem | None:
    """A warning when `target`'s host is, or resolves to, an address off the internet."""
    host = target.host or ""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            async with asyncio.timeout(seconds):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, target.port, type=socket.SOCK_STREAM
                )
        except (OSError, TimeoutError):
            return None  # the fetch reports the host as unreachable
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]

    inner = sorted({address for address in addresses if not address.is_global}, key=str)
    if not inner:
        return None
    kind = _address_kind(inner[0])
    if host == str(inner[0]):
        detail = f"{host} is {kind}"
    else:
        detail = f"{host} resolves to {', '.join(map(str, inner))} ({kind})"
    return problems.not_public(detail)


def _address_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if address.is_loopback:
        return "a loopback address"
    if address.is_private:
        return "a private address"
    return "not a public address"
