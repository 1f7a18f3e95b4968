"""The upstream proxy: every path that is not the JWKS goes on to the developer's app.

So one tunnel serves both the app and its JWKS. Method, end-to-end headers and
both bodies (streamed) pass through; hop-by-hop headers do not.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

from aiohttp import ClientError, ClientSession, ClientTimeout, DummyCookieJar, hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from devtunnel.errors import ConfigError

logger = logging.getLogger(__name__)

UPSTREAM_CONNECT_TIMEOUT = 10.0

# RFC 9110 §7.6.1: these describe one connection and are never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def upstream_url(text: str) -> URL:
    """The --upstream URL, or a ConfigError naming it when it is not an http(s) URL."""
    try:
        url = URL(text)
    except (ValueError, TypeError):
        url = URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"--upstream {text}",
            "is not an http(s) URL",
            "give the app's address, e.g. --upstream http://127.0.0.1:3000",
        )
    return url


class Upstream:
    """A reverse proxy to the developer's app: method, end-to-end headers, streamed bodies."""

    def __init__(self, base: URL) -> None:
        self.base = base
        self._prefix = str(base.with_query(None).with_fragment(None)).rstrip("/")
        self._session: ClientSession | None = None

    async def session_ctx(self, _app: web.Application) -> AsyncIterator[None]:
        """Own the client session for the app's lifetime (an aiohttp cleanup context)."""
        # No cookie jar: cookies belong to each browser, not to the proxy that many share.
        async with ClientSession(
            cookie_jar=DummyCookieJar(),
            auto_decompress=False,
            timeout=ClientTimeout(total=None, sock_connect=UPSTREAM_CONNECT_TIMEOUT),
        ) as session:
            self._session = session
            yield
        self._session = None

    async def forward(self, request: web.Request) -> web.StreamResponse:
        """Send `request` on to the upstream app and stream its answer back."""
        assert self._session is not None  # the cleanup context opened it
        target = URL(self._prefix + request.raw_path, encoded=True)
        try:
            answer = await self._session.request(
                request.method,
                target,
                headers=_request_headers(request),
                data=request.content if request.body_exists else None,
                allow_redirects=False,
                skip_auto_headers=(hdrs.USER_AGENT, hdrs.ACCEPT, hdrs.ACCEPT_ENCODING),
            )
        except (ClientError, OSError, TimeoutError) as exc:
            logger.warning("upstream %s unreachable: %s", self.base, exc or type(exc).__name__)
            # One line of JSON, as the server's own errors are.
            return web.json_response(
                {"error": f"upstream {self.base} unreachable", "detail": _reason(exc)},
                status=502,
                dumps=lambda document: json.dumps(document, separators=(",", ":")) + "\n",
            )

        async with answer:
            response = web.StreamResponse(
                status=answer.status, reason=answer.reason, headers=_end_to_end(answer.headers)
            )
            await response.prepare(request)
            try:
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
            except ClientError as exc:
                # The status line is sent: the only honest signal left is a cut connection.
                logger.warning("upstream %s broke off %s: %s", self.base, request.path, exc)
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
        return response


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _end_to_end(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    named = {
        name.strip().lower()
        for value in headers.getall(hdrs.CONNECTION, ())
        for name in value.split(",")
    }
    dropped = HOP_BY_HOP | named
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in dropped)


def _request_headers(request: web.Request) -> CIMultiDict[str]:
    headers = _end_to_end(request.headers)
    headers.popall(hdrs.HOST, None)
    peer = request.remote or ""
    forwarded = headers.get(hdrs.X_FORWARDED_FOR)
    headers[hdrs.X_FORWARDED_FOR] = f"{forwarded}, {peer}" if forwarded else peer
    headers.setdefault(hdrs.X_FORWARDED_HOST, request.host)
    headers.setdefault(hdrs.X_FORWARDED_PROTO, request.scheme)
    return headers
