"""The cloudflared provider against the fake cloudflared executable."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from devtunnel.errors import RunError
from devtunnel.tunnels import CloudflaredTunnel, base, make_tunnel
from devtunnel.tunnels.cloudflared import BANNER_URL
from tests.fakes import FakeAgent, echo_server, fetch, install_agent, is_running
from tests.fakes.fake_cloudflared import banner

InstallAgent = Callable[..., FakeAgent]


@pytest.fixture
def agent_factory(tmp_path: Path, tls_file: Path) -> InstallAgent:
    def install(mode: str = "", directory: str = "bin") -> FakeAgent:
        return install_agent("cloudflared", tmp_path / directory, tls_file=tls_file, mode=mode)

    return install


@pytest.fixture
async def local_url() -> AsyncIterator[str]:
    async with echo_server() as url:
        yield url


@pytest.fixture
async def tunnel_factory() -> AsyncIterator[Callable[..., CloudflaredTunnel]]:
    """Make tunnels; every one is stopped afterwards, whatever the test did."""
    tunnels: list[CloudflaredTunnel] = []

    def make(**kwargs: Any) -> CloudflaredTunnel:
        tunnel = CloudflaredTunnel(**kwargs)
        tunnels.append(tunnel)
        return tunnel

    yield make
    for tunnel in tunnels:
        await tunnel.stop()


def test_the_url_is_read_from_cloudflareds_real_banner() -> None:
    lines = [
        f"2025-01-01T00:00:00Z INF {line}" for line in banner("https://a-b-c.trycloudflare.com")
    ]

    found = [m.group(1) for line in lines if (m := BANNER_URL.search(line))]

    assert found == ["https://a-b-c.trycloudflare.com"]


async def test_start_waits_for_registration_and_reaches_the_local_server(
    agent_factory: InstallAgent,
    tunnel_factory: Callable[..., CloudflaredTunnel],
    local_url: str,
    ca_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="devtunnel.tunnels.cloudflared")
    agent = agent_factory()
    tunnel = tunnel_factory(cloudflared_path=agent.path)

    public_url = await tunnel.start(local_url)

    assert public_url.startswith("https://localhost:")
    assert tunnel.alive()
    assert any("Registered tunnel connection" in r.getMessage() for r in caplog.records)
    assert agent.seen()["argv"][1:] == ["tunnel", "--no-autoupdate", "--url", local_url]
    status, body = await fetch(
        f"{public_url}/api/.well-known/jwks", ssl.create_default_context(cafile=str(ca_file))
    )
    assert status == 200
    assert '"path": "/api/.well-known/jwks"' in body


async def test_stop_ends_cloudflared_and_can_be_repeated(
    agent_factory: InstallAgent, tunnel_factory: Callable[..., CloudflaredTunnel], local_url: str
) -> None:
    agent = agent_factory()
    tunnel = tunnel_factory(cloudflared_path=agent.path)
    await tunnel.start(local_url)

    await tunnel.stop()
    await tunnel.stop()

    assert not is_running(agent.seen()["pid"])
    assert not tunnel.alive()
    assert tunnel.public_url is None


async def test_exit_at_start_says_why(
    agent_factory: InstallAgent, tunnel_factory: Callable[..., CloudflaredTunnel], local_url: str
) -> None:
    tunnel = tunnel_factory(cloudflared_path=agent_factory("exit").path)

    with pytest.raises(RunError) as caught:
        await tunnel.start(local_url)

    assert caught.value.fault == (
        "exited with code 1 before the tunnel was up: "
        "failed to unmarshal quick Tunnel: invalid character 'e' looking for value"
    )
    assert "to see why" in caught.value.hint
    assert not tunnel.alive()


async def test_a_tunnel_that_never_registers_times_out_and_is_ended(
    agent_factory: InstallAgent, tunnel_factory: Callable[..., CloudflaredTunnel], local_url: str
) -> None:
    agent = agent_factory("never_register")
    tunnel = tunnel_factory(cloudflared_path=agent.path, register_timeout=0.8)

    with pytest.raises(RunError) as caught:
        await tunnel.start(local_url)

    assert caught.value.fault.startswith("registered no connection for https://localhost:")
    assert caught.value.fault.endswith(" in 0.8 s")
    assert "port 7844" in caught.value.hint
    assert not is_running(agent.seen()["pid"])


async def test_cloudflared_ignoring_sigterm_is_killed(
    agent_factory: InstallAgent,
    tunnel_factory: Callable[..., CloudflaredTunnel],
    local_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(base, "STOP_TIMEOUT", 0.2)
    agent = agent_factory("stubborn")
    tunnel = tunnel_factory(cloudflared_path=agent.path)
    await tunnel.start(local_url)

    await tunnel.stop()

    assert not is_running(agent.seen()["pid"])


async def test_a_crash_is_seen_within_two_seconds(
    agent_factory: InstallAgent, tunnel_factory: Callable[..., CloudflaredTunnel], local_url: str
) -> None:
    tunnel = tunnel_factory(cloudflared_path=agent_factory("crash_after=0.2").path)
    await tunnel.start(local_url)

    for _ in range(40):
        if not tunnel.alive():
            break
        await asyncio.sleep(0.05)

    assert not tunnel.alive()


async def test_the_flag_wins_over_path(agent_factory: InstallAgent, local_url: str) -> None:
    flagged, on_path = agent_factory(directory="flag"), agent_factory(directory="path")
    tunnel = make_tunnel(
        "cloudflared",
        cloudflared_path=flagged.path,
        environ=dict(os.environ, PATH=str(on_path.path.parent)),
    )
    try:
        await tunnel.start(local_url)
    finally:
        await tunnel.stop()

    assert flagged.record.is_file()
    assert not on_path.record.is_file()


async def test_cloudflared_is_found_on_path(agent_factory: InstallAgent, local_url: str) -> None:
    agent = agent_factory()
    tunnel = make_tunnel("cloudflared", environ=dict(os.environ, PATH=str(agent.path.parent)))
    try:
        await tunnel.start(local_url)
    finally:
        await tunnel.stop()

    assert agent.seen()["argv"][0] == str(agent.path)


async def test_a_missing_binary_says_how_to_install(tmp_path: Path) -> None:
    on_path = make_tunnel("cloudflared", environ={"PATH": str(tmp_path)})
    named = make_tunnel("cloudflared", cloudflared_path=tmp_path / "cloudflared")

    with pytest.raises(RunError) as not_found:
        await on_path.start("http://127.0.0.1:9")
    with pytest.raises(RunError) as missing:
        await named.start("http://127.0.0.1:9")

    assert (not_found.value.source, not_found.value.fault) == ("cloudflared", "not found on PATH")
    assert missing.value.source == f"--cloudflared-path {tmp_path / 'cloudflared'}"
    assert "install cloudflared" in missing.value.hint
