"""The JWKS server over real loopback sockets: routes, caching, CORS, swaps, fetch events, proxy."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace

import aiohttp
import pytest
from aiohttp import web

from devtunnel import server as server_module
from devtunnel.errors import ConfigError
from devtunnel.events import SELF_CHECK_HEADER, Fetch
from devtunnel.jwks import PRIVATE_MEMBERS, etag, jose_key, key_thumbprint, render_keys
from devtunnel.keys import KeyPair
from devtunnel.server import FetchLog, JwksServer, JwksStore, create_app
from tests.conftest import free_port
from tests.fakes import slow_app

DEFAULT_PATHS = ("/api/.well-known/jwks", "/jwks.json")


@dataclass
class Running:
    url: str
    store: JwksStore
    server: JwksServer
    events: list[Fetch] = field(default_factory=list)


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start(ec_pair: KeyPair) -> AsyncIterator[Start]:
    """Start devtunnel's app on a free loopback port; every server is stopped afterwards."""
    servers: list[JwksServer] = []

    async def starter(pair: KeyPair = ec_pair, **options: object) -> Running:
        store = JwksStore(pair)
        events: list[Fetch] = []
        options.setdefault("on_fetch", events.append)
        server = JwksServer(create_app(store, **options))  # type: ignore[arg-type]
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return Running(server.local_url, store, server, events)

    yield starter
    for server in servers:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# The JWKS routes


@pytest.mark.parametrize("path", DEFAULT_PATHS)
async def test_get_serves_the_jwks_on_both_default_paths(
    start: Start, http: aiohttp.ClientSession, ec_pair: KeyPair, path: str
) -> None:
    running = await start()
    async with http.get(running.url + path) as response:
        body = await response.read()
        headers = response.headers

    assert response.status == 200
    assert body == render_keys([ec_pair])
    assert headers["Content-Type"] == "application/json"
    assert headers["ETag"] == etag(body)
    assert headers["Cache-Control"] == "no-cache"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert json.loads(body)["keys"][0]["kid"] == "partner-ec"


async def test_head_sends_the_headers_without_a_body(
    start: Start, http: aiohttp.ClientSession, ec_pair: KeyPair
) -> None:
    running = await start()
    async with http.head(running.url + "/jwks.json") as response:
        body = await response.read()

    assert response.status == 200
    assert body == b""
    assert response.headers["Content-Length"] == str(len(render_keys([ec_pair])))
    assert response.headers["ETag"] == running.store.current.etag


async def test_custom_paths_replace_the_defaults(start: Start, http: aiohttp.ClientSession) -> None:
    running = await start(paths=["/keys", "/.well-known/jwks.json"])

    for path, status in [("/keys", 200), ("/.well-known/jwks.json", 200), ("/jwks.json", 404)]:
        async with http.get(running.url + path) as response:
            assert response.status == status, path


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [("{etag}", 304), ("W/{etag}", 304), ('"other", {etag}', 304), ("*", 304), ('"old"', 200)],
)
async def test_if_none_match_answers_304_only_for_the_current_etag(
    start: Start, http: aiohttp.ClientSession, if_none_match: str, status: int
) -> None:
    running = await start()
    header = if_none_match.format(etag=running.store.current.etag)
    async with http.get(running.url + "/jwks.json", headers={"If-None-Match": header}) as response:
        body = await response.read()

    assert response.status == status
    assert response.headers["ETag"] == running.store.current.etag
    assert response.headers["Cache-Control"] == "no-cache"
    assert (body == b"") is (status == 304)


async def test_max_age_makes_the_document_publicly_cacheable(
    start: Start, http: aiohttp.ClientSession
) -> None:
    running = await start(max_age=300)
    async with http.get(running.url + "/jwks.json") as response:
        assert response.headers["Cache-Control"] == "public, max-age=300"


async def test_preflight_allows_the_ngrok_skip_header(
    start: Start, http: aiohttp.ClientSession
) -> None:
    running = await start()
    preflight = {
        "Origin": "http://localhost:3000",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "ngrok-skip-browser-warning",
    }
    async with http.options(running.url + "/api/.well-known/jwks", headers=preflight) as response:
        await response.read()

    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "ngrok-skip-browser-warning" in allowed
    assert "GET" in response.headers["Access-Control-Allow-Methods"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_other_methods_get_405_with_allow(
    start: Start, http: aiohttp.ClientSession, method: str
) -> None:
    running = await start()
    async with http.request(method, running.url + "/jwks.json", data=b"{}") as response:
        document = await response.json()

    assert response.status == 405
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert method in document["error"]


async def test_unknown_path_gets_a_small_json_404(
    start: Start, http: aiohttp.ClientSession
) -> None:
    running = await start()
    async with http.get(running.url + "/.well-known/openid-configuration") as response:
        text = await response.text()

    assert response.status == 404
    assert response.headers["Content-Type"] == "application/json"
    assert text.count("\n") == 1
    assert json.loads(text) == {"error": "not found", "jwks_paths": list(DEFAULT_PATHS)}


async def test_healthz_answers_200(start: Start, http: aiohttp.ClientSession) -> None:
    running = await start()
    async with http.get(running.url + "/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_document_is_rendered_once_per_key_not_per_request(
    start: Start, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    renders: list[int] = []

    def counting_render(pairs: list[KeyPair]) -> bytes:
        renders.append(len(pairs))
        return render_keys(pairs)

    monkeypatch.setattr(server_module, "render_keys", counting_render)
    running = await start()
    for _ in range(20):
        async with http.get(running.url + "/jwks.json") as response:
            await response.read()

    assert renders == [1]


@pytest.mark.parametrize("pair_name", ["ec_pair", "rsa_pair"])
async def test_no_response_carries_a_private_member(
    start: Start, http: aiohttp.ClientSession, request: pytest.FixtureRequest, pair_name: str
) -> None:
    pair: KeyPair = request.getfixturevalue(pair_name)
    assert pair.private is not None
    secret = jose_key(pair.private).as_dict(private=True)["d"]
    running = await start(pair)

    bodies = []
    for path in (*DEFAULT_PATHS, "/healthz", "/nope"):
        for method in ("GET", "HEAD", "OPTIONS", "POST"):
            async with http.request(method, running.url + path) as response:
                bodies.append(await response.read())

    assert bodies
    for body in bodies:
        assert secret.encode() not in body
    for body in filter(None, bodies):
        document = json.loads(body)
        for key in document.get("keys", []):
            assert not PRIVATE_MEMBERS & key.keys()


# Swapping keys


async def test_swap_is_atomic_for_concurrent_clients(
    start: Start, http: aiohttp.ClientSession, ec_pair: KeyPair, rsa_pair: KeyPair
) -> None:
    running = await start(ec_pair)
    expected = {
        etag(render_keys([pair])): json.loads(render_keys([pair])) for pair in (ec_pair, rsa_pair)
    }
    swapping = True
    seen: list[str] = []

    async def client() -> None:
        while swapping:
            async with http.get(running.url + "/jwks.json") as response:
                body = await response.read()
            document = json.loads(body)
            assert response.headers["ETag"] == etag(body)
            assert document == expected[etag(body)]
            seen.append(document["keys"][0]["kid"])

    def swap_100_times() -> None:
        # From a thread, as a file watcher might: the swap must not depend on the loop.
        for number in range(100):
            running.store.swap(rsa_pair if number % 2 == 0 else ec_pair)

    clients = [asyncio.create_task(client()) for _ in range(8)]
    await asyncio.sleep(0.02)
    await asyncio.to_thread(swap_100_times)
    for _ in range(100):
        running.store.swap(rsa_pair)
        await asyncio.sleep(0)
        running.store.swap(ec_pair)
        await asyncio.sleep(0)
    swapping = False
    await asyncio.gather(*clients)

    assert {"partner-ec", "partner-rsa"} <= set(seen)


async def test_kid_change_alone_changes_the_etag_not_the_thumbprint(
    ec_pair: KeyPair,
) -> None:
    store = JwksStore(ec_pair)
    before = store.current
    store.swap(replace(ec_pair, kid="partner-2", partner_id="partner-2"))
    after = store.current

    assert after.etag != before.etag
    assert after.thumbprint == before.thumbprint == key_thumbprint(ec_pair.public)
    assert (after.kid, after.alg) == ("partner-2", "ES256")


async def test_swapped_key_is_served_with_its_new_etag(
    start: Start, http: aiohttp.ClientSession, ec_pair: KeyPair, rsa_pair: KeyPair
) -> None:
    running = await start(ec_pair)
    old = running.store.current.etag
    running.store.swap(rsa_pair)

    async with http.get(running.url + "/jwks.json", headers={"If-None-Match": old}) as response:
        body = await response.read()

    assert response.status == 200
    assert body == render_keys([rsa_pair])
    assert response.headers["ETag"] == etag(body) != old


# Fetch events


async def test_fetch_events_coalesce_per_client_agent_and_path(
    start: Start, http: aiohttp.ClientSession
) -> None:
    running = await start(flush_interval=60)
    url = running.url + "/jwks.json"
    tunnel = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1", "User-Agent": "jose/5"}
    for _ in range(5):
        async with http.get(url, headers=tunnel) as response:
            await response.read()
    etag_now = running.store.current.etag
    async with http.get(url, headers={**tunnel, "If-None-Match": etag_now}) as response:
        await response.read()
    async with http.get(url, headers={"User-Agent": "curl/8"}) as response:
        await response.read()
    async with http.head(running.url + "/api/.well-known/jwks", headers=tunnel) as response:
        await response.read()
    async with http.get(url, headers={SELF_CHECK_HEADER: "1", "User-Agent": "jose/5"}) as response:
        await response.read()
    async with http.options(url, headers=tunnel) as response:
        await response.read()

    assert running.events == []  # nothing before the flush: the hot path only counts
    await running.server.stop()  # shutting down flushes what is pending

    got = sorted((e.path, e.client, e.user_agent, e.status, e.count) for e in running.events)
    assert got == [
        ("/api/.well-known/jwks", "203.0.113.7", "jose/5", 200, 1),
        ("/jwks.json", "127.0.0.1", "curl/8", 200, 1),
        ("/jwks.json", "203.0.113.7", "jose/5", 304, 6),
    ]


async def test_fetch_events_are_emitted_each_interval_while_running(
    start: Start, http: aiohttp.ClientSession
) -> None:
    running = await start(flush_interval=0.02)
    async with http.get(running.url + "/jwks.json", headers={"User-Agent": "jwks-rsa"}) as resp:
        await resp.read()

    for _ in range(200):
        if running.events:
            break
        await asyncio.sleep(0.01)
    assert [(e.user_agent, e.count) for e in running.events] == [("jwks-rsa", 1)]


def test_failing_fetch_handler_is_logged_and_the_next_flush_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emitted: list[Fetch] = []

    def emit(event: Fetch) -> None:
        if not emitted:
            emitted.append(event)
            raise RuntimeError("screen gone")
        emitted.append(event)

    log = FetchLog(emit)
    log.record("/jwks.json", "198.51.100.1", "jose", 200)
    with caplog.at_level(logging.ERROR, logger="devtunnel.server"):
        log.flush()
    log.record("/jwks.json", "198.51.100.1", "jose", 200)
    log.flush()

    assert "fetch event handler failed for /jwks.json" in caplog.text
    assert len(emitted) == 2


async def test_without_a_fetch_handler_nothing_is_counted(
    start: Start, http: aiohttp.ClientSession
) -> None:
    running = await start(on_fetch=None)
    async with http.get(running.url + "/jwks.json") as response:
        assert response.status == 200
    await running.server.stop()
    assert running.events == []


# Settings that are refused


@pytest.mark.parametrize(
    ("options", "source"),
    [
        ({"paths": ["jwks.json"]}, "--path jwks.json"),
        ({"max_age": -1}, "--max-age"),
        ({"upstream": "localhost:3000"}, "--upstream localhost:3000"),
        ({"upstream": "ftp://example.test/"}, "--upstream ftp://example.test/"),
        ({"upstream": "http://[bad"}, "--upstream http://[bad"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_flag(
    ec_pair: KeyPair, options: dict[str, object], source: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(JwksStore(ec_pair), **options)  # type: ignore[arg-type]
    assert caught.value.source == source


async def test_port_in_use_is_a_config_error_naming_the_port(ec_pair: KeyPair) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = JwksServer(create_app(JwksStore(ec_pair)))
        with pytest.raises(ConfigError) as caught:
            await server.start("127.0.0.1", port)

    assert str(port) in str(caught.value)
    assert "in use" in str(caught.value)


async def test_host_that_cannot_be_bound_is_a_config_error_naming_it(ec_pair: KeyPair) -> None:
    server = JwksServer(create_app(JwksStore(ec_pair)))
    with pytest.raises(ConfigError) as caught:
        await server.start("192.0.2.1", 0)  # TEST-NET-1: no interface of this machine has it

    assert caught.value.source == "--host 192.0.2.1 --port 0"
    assert "cannot be listened on" in caught.value.fault


async def test_wildcard_host_gives_a_loopback_local_url(
    ec_pair: KeyPair, http: aiohttp.ClientSession
) -> None:
    server = JwksServer(create_app(JwksStore(ec_pair)))
    port = await server.start("0.0.0.0", 0)
    try:
        assert server.local_url == f"http://127.0.0.1:{port}"
        async with http.get(server.local_url + "/jwks.json") as response:
            assert response.status == 200
    finally:
        await server.stop()


async def test_stop_lets_a_request_in_flight_finish(
    ec_pair: KeyPair, http: aiohttp.ClientSession
) -> None:
    async with slow_app() as (upstream, arrived, release):
        server = JwksServer(create_app(JwksStore(ec_pair), upstream=upstream))
        await server.start("127.0.0.1", 0)
        request = asyncio.create_task(http.get(server.local_url + "/slow"))
        await arrived.wait()
        stopping = asyncio.create_task(server.stop())
        await asyncio.sleep(0.05)
        release.set()
        response = await request
        assert response.status == 200
        assert await response.text() == "finished"
        await stopping


# The upstream proxy


@dataclass
class Upstream:
    url: str
    runner: web.AppRunner
    seen: list[web.Request] = field(default_factory=list)

    async def stop(self) -> None:
        await self.runner.cleanup()


async def _run_upstream(app: web.Application) -> tuple[str, web.AppRunner]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"http://127.0.0.1:{site.port}", runner


@pytest.fixture
async def app_upstream() -> AsyncIterator[Upstream]:
    """The developer's app: echoes, statuses on demand, a redirect, and a record of requests."""
    seen: list[web.Request] = []

    async def hello(request: web.Request) -> web.Response:
        seen.append(request)
        return web.Response(
            text=f"hello {request.raw_path}", headers={"X-App": "yes", "Set-Cookie": "s=1"}
        )

    async def echo(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        response = web.StreamResponse(status=201)
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        async for chunk in request.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response

    async def status(request: web.Request) -> web.Response:
        seen.append(request)
        code = int(request.match_info["code"])
        headers = {"Location": "/elsewhere"} if 300 <= code < 400 else {}
        return web.Response(status=code, headers=headers)

    app = web.Application()
    app.router.add_get("/app/hello", hello)
    app.router.add_post("/echo", echo)
    app.router.add_route("*", "/status/{code}", status)
    url, runner = await _run_upstream(app)
    upstream = Upstream(url, runner, seen)
    yield upstream
    await upstream.stop()


async def test_upstream_serves_every_other_path(
    start: Start, http: aiohttp.ClientSession, app_upstream: Upstream
) -> None:
    running = await start(upstream=app_upstream.url)
    headers = {"Connection": "keep-alive, X-Hop", "X-Hop": "1", "X-End": "2"}
    async with http.get(running.url + "/app/hello?x=1&y=%20", headers=headers) as response:
        text = await response.text()

    assert response.status == 200
    assert text == "hello /app/hello?x=1&y=%20"
    assert response.headers["X-App"] == "yes"
    assert response.headers["Set-Cookie"] == "s=1"
    request = app_upstream.seen[0]
    assert request.headers["X-End"] == "2"
    assert "X-Hop" not in request.headers
    assert request.headers["X-Forwarded-For"] == "127.0.0.1"
    assert request.headers["X-Forwarded-Host"] == running.url.removeprefix("http://")


async def test_upstream_never_gets_the_jwks_paths(
    start: Start, http: aiohttp.ClientSession, app_upstream: Upstream, ec_pair: KeyPair
) -> None:
    running = await start(upstream=app_upstream.url)
    for path in DEFAULT_PATHS:
        async with http.get(running.url + path) as response:
            assert await response.read() == render_keys([ec_pair])
    assert app_upstream.seen == []


async def test_upstream_post_body_is_streamed_through(
    start: Start, http: aiohttp.ClientSession, app_upstream: Upstream
) -> None:
    running = await start(upstream=app_upstream.url)
    chunks = [bytes([n]) * 65536 for n in range(16)]

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk
            await asyncio.sleep(0)

    async with http.post(running.url + "/echo", data=body()) as response:
        echoed = await response.read()

    assert response.status == 201
    assert echoed == b"".join(chunks)
    assert app_upstream.seen[0].headers.get("Transfer-Encoding") == "chunked"


@pytest.mark.parametrize(
    ("method", "code"), [("GET", 204), ("GET", 302), ("PUT", 404), ("DELETE", 500)]
)
async def test_upstream_status_codes_pass_through_unfollowed(
    start: Start, http: aiohttp.ClientSession, app_upstream: Upstream, method: str, code: int
) -> None:
    running = await start(upstream=app_upstream.url)
    url = f"{running.url}/status/{code}"
    async with http.request(method, url, allow_redirects=False) as response:
        await response.read()

    assert response.status == code
    assert app_upstream.seen[0].method == method
    if code == 302:
        assert response.headers["Location"] == "/elsewhere"


async def test_dead_upstream_gives_a_one_line_json_502(
    start: Start, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    running = await start(upstream=dead)
    with caplog.at_level(logging.WARNING, logger="devtunnel.server"):
        async with http.get(running.url + "/app") as response:
            text = await response.text()
        async with http.get(running.url + "/jwks.json") as still_up:
            assert still_up.status == 200

    assert response.status == 502
    assert text.count("\n") == 1
    assert json.loads(text)["error"] == f"upstream {dead} unreachable"
    assert f"upstream {dead} unreachable" in caplog.text


async def test_upstream_that_breaks_off_cuts_the_connection(
    start: Start, http: aiohttp.ClientSession
) -> None:
    async def truncated(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        await response.write(b"partial")
        assert request.transport is not None
        request.transport.close()
        return response

    app = web.Application()
    app.router.add_get("/big", truncated)
    url, runner = await _run_upstream(app)
    try:
        running = await start(upstream=url)
        with pytest.raises(aiohttp.ClientPayloadError):
            async with http.get(running.url + "/big") as response:
                await response.read()
    finally:
        await runner.cleanup()
