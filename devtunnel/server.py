"""The JWKS server: the document on its paths, an atomic hot swap, fetch events, an upstream proxy.

The JWKS bytes, their ETag and the response headers are computed once per key
change; a request only reads the current snapshot and sends it. A `fetch`
event is coalesced per client, user agent and path each second, so on the hot
path it costs one dict update. With an upstream, every other path goes to the
developer's app, so one tunnel serves both the app and its JWKS.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from aiohttp import hdrs, web
from multidict import CIMultiDict

from devtunnel.config import DEFAULT_PATHS
from devtunnel.errors import ConfigError
from devtunnel.events import SELF_CHECK_HEADER, Fetch
from devtunnel.jwks import JWKS_MEDIA_TYPE, etag, key_thumbprint, render_keys
from devtunnel.keys import KeyPair
from devtunnel.proxy import Upstream, upstream_url

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8787
HEALTH_PATH = "/healthz"
FETCH_FLUSH_INTERVAL = 1.0  # seconds: at most one fetch event per client, agent and path
SHUTDOWN_TIMEOUT = 10.0  # seconds that in-flight requests get to finish on stop

ALLOWED_METHODS = "GET, HEAD, OPTIONS"
# ngrok's free plan shows browsers an HTML page unless this header is sent, so a
# browser app fetching the JWKS through the tunnel needs a preflight that allows it.
ALLOWED_REQUEST_HEADERS = "ngrok-skip-browser-warning, If-None-Match, Cache-Control"
PREFLIGHT_MAX_AGE = "86400"

FetchHandler = Callable[[Fetch], None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Snapshot:
    """One JWKS document as served: its exact bytes, their ETag, and the key it publishes."""

    body: bytes
    etag: str
    thumbprint: str
    kid: str
    alg: str


class JwksStore:
    """The JWKS document being served.

    `swap` computes the whole new snapshot first and then replaces the reference
    in one assignment, so every response carries the whole old document or the
    whole new one, never a mix.
    """

    def __init__(self, pair: KeyPair) -> None:
        self._current = _snapshot(pair)

    @property
    def current(self) -> Snapshot:
        """The snapshot to serve now."""
        return self._current

    def swap(self, pair: KeyPair) -> None:
        """Serve the JWKS of `pair` from the next request on."""
        snapshot = _snapshot(pair)
        self._current = snapshot
        logger.info(
            "serving kid %s (%s, thumbprint %s)", snapshot.kid, snapshot.alg, snapshot.thumbprint
        )


def _snapshot(pair: KeyPair) -> Snapshot:
    body = render_keys([pair])
    return Snapshot(body, etag(body), key_thumbprint(pair.public), pair.kid, pair.alg)


class FetchLog:
    """Counts JWKS requests per path, client and user agent; `flush` emits one event per group.

    `status` in an event is the status of the last request of its group.
    """

    def __init__(self, emit: FetchHandler) -> None:
        self._emit = emit
        self._pending: dict[tuple[str, str, str], list[int]] = {}

    def record(self, path: str, client: str, user_agent: str, status: int) -> None:
        """Count one request; this runs on every JWKS request, so it stays a dict update."""
        key = (path, client, user_agent)
        entry = self._pending.get(key)
        if entry is None:
            self._pending[key] = [1, status]
        else:
            entry[0] += 1
            entry[1] = status

    def flush(self) -> None:
        """Emit one `fetch` event for each group counted since the last flush."""
        pending, self._pending = self._pending, {}
        for (path, client, user_agent), (count, status) in pending.items():
            event = Fetch(
                path=path, client=client, user_agent=user_agent, status=status, count=count
            )
            try:
                self._emit(event)
            except Exception:
                # The handler is the caller's; a failure there must not end the flush loop.
                logger.exception("fetch event handler failed for %s", path)

    async def run(self, interval: float = FETCH_FLUSH_INTERVAL) -> None:
        """Flush every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.flush()


def create_app(
    store: JwksStore,
    *,
    paths: Sequence[str] = DEFAULT_PATHS,
    max_age: int | None = None,
    upstream: str | None = None,
    on_fetch: FetchHandler | None = None,
    flush_interval: float = FETCH_FLUSH_INTERVAL,
) -> web.Application:
    """The aiohttp app serving `store` on `paths`, and `upstream` (if any) on every other path.

    Raises ConfigError for a path that does not start with `/`, a negative
    `max_age` or an upstream that is not an http(s) URL.
    """
    paths = _check_paths(paths)
    if max_age is not None and max_age < 0:
        raise ConfigError("--max-age", f"is {max_age}", "give a number of seconds, 0 or more")
    app = web.Application()

    routes = _JwksRoutes(store, max_age)
    fetch_log = FetchLog(on_fetch) if on_fetch is not None else None
    for path in paths:
        _add_methods(app, path, get=routes.handler(path, fetch_log))
    if HEALTH_PATH not in paths:
        _add_methods(app, HEALTH_PATH, get=_health)

    if upstream is not None:
        proxy = Upstream(upstream_url(upstream))
        app.cleanup_ctx.append(proxy.session_ctx)
        app.router.add_route("*", "/{tail:.*}", proxy.forward)
    else:
        app.router.add_route("*", "/{tail:.*}", _not_found_handler(paths))

    if fetch_log is not None:
        app.cleanup_ctx.append(_flush_ctx(fetch_log, flush_interval))
    return app


def _check_paths(paths: Sequence[str]) -> tuple[str, ...]:
    for path in paths:
        if not path.startswith("/"):
            raise ConfigError(f"--path {path}", "does not start with /", f"write it as /{path}")
    return tuple(dict.fromkeys(paths))


def _add_methods(app: web.Application, path: str, *, get: Handler) -> None:
    resource = app.router.add_resource(path)
    resource.add_route(hdrs.METH_GET, get)
    resource.add_route(hdrs.METH_HEAD, get)
    resource.add_route(hdrs.METH_OPTIONS, _preflight)
    resource.add_route(hdrs.METH_ANY, _method_not_allowed)


def _flush_ctx(
    fetch_log: FetchLog, interval: float
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def flushing(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(fetch_log.run(interval), name="devtunnel-fetch-flush")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            fetch_log.flush()

    return flushing


class _JwksRoutes:
    """The JWKS handlers, with the response headers prepared once per snapshot."""

    def __init__(self, store: JwksStore, max_age: int | None) -> None:
        self._store = store
        self._cache_control = "no-cache" if max_age is None else f"public, max-age={max_age}"
        self._prepared = self._prepare(store.current)

    def handler(self, path: str, fetch_log: FetchLog | None) -> Handler:
        """The GET and HEAD handler for one JWKS path."""
        store = self._store

        async def serve_jwks(request: web.Request) -> web.Response:
            snapshot = store.current
            prepared = self._prepared
            if prepared[0] is not snapshot:
                prepared = self._prepared = self._prepare(snapshot)

            headers = request.headers
            if_none_match = headers.get(hdrs.IF_NONE_MATCH)
            if if_none_match is not None and _etag_matches(if_none_match, snapshot.etag):
                status, response = 304, web.Response(status=304, headers=prepared[2])
            else:
                status, response = 200, web.Response(body=snapshot.body, headers=prepared[1])

            if fetch_log is not None and SELF_CHECK_HEADER not in headers:
                # The first X-Forwarded-For entry is the client a tunnel saw; else the peer.
                forwarded = headers.get(hdrs.X_FORWARDED_FOR)
                client = forwarded.split(",", 1)[0].strip() if forwarded else request.remote or ""
                fetch_log.record(path, client, headers.get(hdrs.USER_AGENT, ""), status)
            return response

        return serve_jwks

    def _prepare(self, snapshot: Snapshot) -> tuple[Snapshot, CIMultiDict[str], CIMultiDict[str]]:
        not_modified = CIMultiDict(
            {
                hdrs.ETAG: snapshot.etag,
                hdrs.CACHE_CONTROL: self._cache_control,
                hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: "*",
                hdrs.ACCESS_CONTROL_EXPOSE_HEADERS: "ETag",
            }
        )
        ok = CIMultiDict(not_modified)
        ok[hdrs.CONTENT_TYPE] = JWKS_MEDIA_TYPE
        return snapshot, ok, not_modified


def _etag_matches(if_none_match: str, current: str) -> bool:
    # RFC 9110 §13.1.2: If-None-Match compares weakly, so a W/ prefix still matches.
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == current:
            return True
    return False


_NOT_ALLOWED_HEADERS = CIMultiDict(
    {hdrs.ALLOW: ALLOWED_METHODS, hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: "*"}
)
_PREFLIGHT_HEADERS = CIMultiDict(
    {
        hdrs.ALLOW: ALLOWED_METHODS,
        hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: "*",
        hdrs.ACCESS_CONTROL_ALLOW_METHODS: ALLOWED_METHODS,
        hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_REQUEST_HEADERS,
        hdrs.ACCESS_CONTROL_MAX_AGE: PREFLIGHT_MAX_AGE,
    }
)


async def _preflight(_request: web.Request) -> web.Response:
    return web.Response(status=204, headers=_PREFLIGHT_HEADERS)


async def _method_not_allowed(request: web.Request) -> web.Response:
    return _json_response(
        405,
        {"error": f"method {request.method} not allowed", "allow": ALLOWED_METHODS},
        _NOT_ALLOWED_HEADERS,
    )


async def _health(_request: web.Request) -> web.Response:
    return _json_response(200, {"status": "ok"})


def _not_found_handler(paths: Sequence[str]) -> Handler:
    body = _json_line({"error": "not found", "jwks_paths": list(paths)})

    async def not_found(_request: web.Request) -> web.Response:
        return web.Response(status=404, body=body, content_type=JWKS_MEDIA_TYPE)

    return not_found


def _json_line(document: Mapping[str, object]) -> bytes:
    return (json.dumps(document, separators=(",", ":")) + "\n").encode("utf-8")


def _json_response(
    status: int, document: Mapping[str, object], headers: CIMultiDict[str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=_json_line(document), headers=headers, content_type=JWKS_MEDIA_TYPE
    )


# Running the app


class JwksServer:
    """Runs an app from `create_app` on a host and port, and stops it gracefully."""

    def __init__(self, app: web.Application, *, shutdown_timeout: float = SHUTDOWN_TIMEOUT) -> None:
        self._app = app
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._host = ""
        self._port = 0

    async def start(self, host: str, port: int) -> int:
        """Listen on `host` and `port` (0: any free port); return the bound port.

        Raises ConfigError naming the port when it is in use, or the host when
        it cannot be bound.
        """
        # aiohttp's access log costs time on every request: only keep it when asked for.
        access = logging.getLogger("aiohttp.access")
        runner = web.AppRunner(
            self._app,
            handle_signals=False,
            access_log=access if access.isEnabledFor(logging.DEBUG) else None,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise _bind_error(host, port, exc) from None

        self._runner = runner
        self._host = host
        self._port = site.port
        logger.info("listening on %s", self.local_url)
        return self._port

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, flush pending fetch events."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            logger.info("stopped listening on port %d", self._port)

    @property
    def port(self) -> int:
        """The bound port (0 before start)."""
        return self._port

    @property
    def local_url(self) -> str:
        """`http://host:port`, with a loopback address in place of a wildcard host."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self._host, self._host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._port}"


def _bind_error(host: str, port: int, exc: OSError) -> ConfigError:
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            f"port {port}",
            f"is already in use on {host}",
            "stop what listens there, or pass another --port (0 picks a free one)",
        )
    return ConfigError(
        f"--host {host} --port {port}",
        f"cannot be listened on ({exc.strerror or exc})",
        "use --host 127.0.0.1, or a port above 1023",
    )
