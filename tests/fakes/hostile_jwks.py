"""A JWKS server that gets everything wrong, one route per fault, on a free loopback port.

`check_jwks` is proved against it: each route stands for one way a JWKS URL
fails a remote verifier (or only a browser), and the good route for none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

from devtunnel.jwks import jose_key, jwks_document, public_jwk, render_keys
from devtunnel.keys import KeyPair

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What ngrok's free plan puts in front of browser-like requests (trimmed).
NGROK_WARNING_PAGE = """<!DOCTYPE html>
<html><head><title>ngrok</title></head>
<body><div id="root">You are about to visit this site, served by ngrok.
To skip this page, send an ngrok-skip-browser-warning request header.</div>
<p class="error-code">ERR_NGROK_6024</p></body></html>
"""
NGROK_OFFLINE_PAGE = """<!DOCTYPE html><html><body>
<p>The endpoint is online but the agent could not reach the upstream service.</p>
<p class="error-code">ERR_NGROK_8012</p></body></html>
"""
# A key no library can import, under another kid: verifiers never look at it.
_BROKEN_RSA = {"kty": "RSA", "n": "zz", "e": "AQAB", "kid": "retired"}
HOLD_SECONDS = 30  # the slow route answers after this, or when the server stops
BIG_BODY = 2 * 1024 * 1024


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    path: str
    user_agent: str
    headers: dict[str, str]


class HostileJwks:
    """Serve `pair`'s JWKS correctly at /good and wrongly everywhere else.

    `other` is a second key pair of the same algorithm: the wrong key. Use as
    `async with HostileJwks(pair, other) as server: server.url("/good")`.
    """

    def __init__(self, pair: KeyPair, other: KeyPair, *, tls: ssl.SSLContext | None = None) -> None:
        self.pair = pair
        self.other = other
        self.tls = tls
        self.seen: list[Seen] = []
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base = ""

    def url(self, path: str) -> str:
        return self.base + path

    def paths(self) -> list[str]:
        return [seen.path for seen in self.seen]

    async def __aenter__(self) -> HostileJwks:
        app = web.Application(middlewares=[self._record])
        for path, handler in self._routes().items():
            app.router.add_get(path, handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.seen.append(
            Seen(request.path, request.headers.get("User-Agent", ""), dict(request.headers))
        )
        return await handler(request)

    def _routes(self) -> dict[str, Handler]:
        good = public_jwk(self.pair)
        wrong = {**public_jwk(self.other), "kid": self.pair.kid}
        other_alg = "RS256" if self.pair.alg == "ES256" else "ES256"
        leaked = {**good, **_private_members(self.pair)}
        kid = self.pair.kid
        return {
            "/good": self._jwks(jwks_document([self.pair])),
            "/redirect": _redirect("/good"),
            "/status-500": _text("upstream exploded", status=500),
            "/ngrok-warning": _text(NGROK_WARNING_PAGE, content_type="text/html"),
            "/html": _text("<html><body>Welcome to my app</body></html>", "text/html"),
            "/not-json": _text("keys: none", content_type="text/plain"),
            "/too-big": _text(" " * BIG_BODY, content_type="application/json"),
            "/too-big-chunked": _chunked(b" " * 65536, BIG_BODY // 65536),
            "/ngrok-offline": _text(NGROK_OFFLINE_PAGE, "text/html", status=502),
            "/no-keys": self._jwks({"keys": []}),
            "/leaked-with-error": _text(
                json.dumps({"keys": [leaked]}), "application/json", status=500
            ),
            "/leaked-private-key": self._jwks({"keys": [leaked]}),
            "/other-kid": self._jwks({"keys": [{**good, "kid": "someone-else"}]}),
            "/duplicate-kid": self._jwks({"keys": [good, good]}),
            "/duplicate-kid-wrong-first": self._jwks({"keys": [wrong, good]}),
            "/wrong-key": self._jwks({"keys": [wrong]}),
            "/broken-neighbour": self._jwks({"keys": [_BROKEN_RSA, good]}),
            "/secret-key": self._jwks({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": kid}]}),
            "/wrong-alg": self._jwks({"keys": [{**good, "alg": other_alg}]}),
            "/encryption-key": self._jwks({"keys": [{**good, "use": "enc"}]}),
            "/long-cache": self._jwks(jwks_document([self.pair]), "public, max-age=3600"),
            "/slow": self._slow,
            "/browser-warning": self._browser_warning,
        }

    def _jwks(self, document: dict[str, Any], cache: str = "no-cache") -> Handler:
        body = json.dumps(document).encode("utf-8")

        async def handle(request: web.Request) -> web.StreamResponse:
            return web.Response(
                body=body,
                content_type="application/json",
                headers={"Cache-Control": cache, "ETag": '"v1"'},
            )

        return handle

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), HOLD_SECONDS)
        return web.Response(body=render_keys([self.pair]), content_type="application/json")

    async def _browser_warning(self, request: web.Request) -> web.StreamResponse:
        # ngrok's rule: a browser-like user agent without the skip header gets the page.
        browser = "Mozilla/" in request.headers.get("User-Agent", "")
        if browser and "ngrok-skip-browser-warning" not in request.headers:
            return web.Response(text=NGROK_WARNING_PAGE, content_type="text/html")
        return web.Response(body=render_keys([self.pair]), content_type="application/json")


def _text(text: str, content_type: str = "text/plain", *, status: int = 200) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(text=text, content_type=content_type, status=status)

    return handle


def _chunked(chunk: bytes, count: int) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()  # no Content-Length: the reader must stop by itself
        await response.prepare(request)
        for _ in range(count):
            await response.write(chunk)
        await response.write_eof()
        return response

    return handle


def _redirect(location: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(location)

    return handle


def _private_members(pair: KeyPair) -> dict[str, str]:
    """The private JWK members of the pair, as a careless template exports them."""
    assert pair.private is not None
    members = jose_key(pair.private).as_dict(private=True)
    return {name: str(value) for name, value in members.items() if name in ("d", "p", "q")}
