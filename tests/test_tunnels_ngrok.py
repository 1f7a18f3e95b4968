"""The ngrok provider, through the real pyngrok code path, against the fake agent."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pyngrok import installer
from pyngrok.exception import PyngrokNgrokInstallError

from devtunnel.errors import RunError
from devtunnel.tunnels import NgrokTunnel, base, make_tunnel
from tests.fakes import FakeAgent, echo_server, fetch, install_agent, is_running

TOKEN = "2abcSECRETauthtokenXYZ_1234567890"
InstallAgent = Callable[..., FakeAgent]


@pytest.fixture
def agent_factory(tmp_path: Path, tls_file: Path) -> InstallAgent:
    def install(mode: str = "", directory: str = "bin", binary: str = "ngrok") -> FakeAgent:
        return install_agent(binary, tmp_path / directory, tls_file=tls_file, mode=mode)

    return install


@pytest.fixture
def client_ssl(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


@pytest.fixture
async def local_url() -> AsyncIterator[str]:
    async with echo_server() as url:
        yield url


@pytest.fixture
async def tunnel_factory() -> AsyncIterator[Callable[..., NgrokTunnel]]:
    """Make tunnels whose agents start fast or fail fast; every one is stopped afterwards."""
    tunnels: list[NgrokTunnel] = []

    def make(**kwargs: Any) -> NgrokTunnel:
        kwargs.setdefault("startup_timeout", 5)
        tunnel = NgrokTunnel(**kwargs)
        tunnels.append(tunnel)
        return tunnel

    yield make
    for tunnel in tunnels:
        await tunnel.stop()


async def test_public_url_reaches_the_local_server(
    agent_factory: InstallAgent,
    tunnel_factory: Callable[..., NgrokTunnel],
    local_url: str,
    client_ssl: ssl.SSLContext,
) -> None:
    agent = agent_factory()
    tunnel = tunnel_factory(ngrok_path=agent.path)

    public_url = await tunnel.start(local_url)

    assert public_url.startswith("https://localhost:")
    assert tunnel.public_url == public_url
    assert tunnel.alive()
    status, body = await fetch(f"{public_url}/jwks.json?x=1", client_ssl)
    assert status == 200
    assert '"path": "/jwks.json?x=1"' in body
    assert '"body": "hello"' in body
    assert '"X-Forwarded-For": "127.0.0.1"' in body
    assert agent.seen()["endpoint_requests"] == [
        {"name": "devtunnel", "upstream": {"url": local_url}}
    ]


async def test_domain_is_asked_for_as_an_https_url(
    agent_factory: InstallAgent, tunnel_factory: Callable[..., NgrokTunnel], local_url: str
) -> None:
    agent = agent_factory()
    tunnel = tunnel_factory(ngrok_path=agent.path, domain="jwks-dev.ngrok-free.app")

    public_url = await tunnel.start(local_url)

    assert public_url == "https://jwks-dev.ngrok-free.app"
    [request] = agent.seen()["endpoint_requests"]
    assert request["url"] == "https://jwks-dev.ngrok-free.app"


async def test_authtoken_reaches_the_agent_only_through_its_environment(
    *,
    agent_factory: InstallAgent,
    tunnel_factory: Callable[..., NgrokTunnel],
    local_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NGROK_AUTHTOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="pyngrok")  # the CLI's tests may have quietened it
    agent = agent_factory()
    tunnel = tunnel_factory(ngrok_path=agent.path)

    await tunnel.start(local_url)
    await tunnel.stop()

    seen = agent.seen()
    assert seen["authtoken_in_env"] is True
    assert "--authtoken" not in seen["argv"]
    assert not any(TOKEN in arg for arg in seen["argv"])
    assert "started tunnel" in caplog.text  # the agent's own lines were relayed
    assert TOKEN not in caplog.text
    out, err = capfd.readouterr()
    assert TOKEN not in out + err


async def test_agent_lines_are_relayed_through_the_pyngrok_logger(
    agent_factory: InstallAgent,
    tunnel_factory: Callable[..., NgrokTunnel],
    local_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pyngrok")
    tunnel = tunnel_factory(ngrok_path=agent_factory().path)

    await tunnel.start(local_url)

    relayed = [r.getMessage() for r in caplog.records if r.name == "pyngrok.process.ngrok"]
    assert any('msg="tunnel session started"' in line for line in relayed)


@pytest.mark.parametrize(
    ("mode", "fault", "hint"),
    [
        ("4018", "the agent has no authtoken (ERR_NGROK_4018)", "set NGROK_AUTHTOKEN"),
        ("108", "another agent session of this ngrok account is running", "stop the other"),
        (
            "334",
            "https://fake-words-here.ngrok-free.app is already online elsewhere (ERR_NGROK_334)",
            "pass another --domain",
        ),
        ("exit", "exited during start-up", "start --none --log stdout"),
    ],
)
async def test_each_agent_failure_has_its_own_message(
    *,
    agent_factory: InstallAgent,
    tunnel_factory: Callable[..., NgrokTunnel],
    local_url: str,
    mode: str,
    fault: str,
    hint: str,
) -> None:
    agent = agent_factory(mode)
    tunnel = tunnel_factory(ngrok_path=agent.path)

    with pytest.raises(RunError) as caught:
        await tunnel.start(local_url)

    assert caught.value.source == "ngrok"
    assert fault in caught.value.fault
    assert hint in caught.value.hint
    assert not tunnel.alive()
    assert tunnel.public_url is None
    assert not is_running(agent.seen()["pid"])


async def test_a_silent_agent_is_ended_after_the_startup_timeout(
    agent_factory: InstallAgent, tunnel_factory: Callable[..., NgrokTunnel], local_url: str
) -> None:
    agent = agent_factory("silent")
    tunnel = tunnel_factory(ngrok_path=agent.path, startup_timeout=1)

    with pytest.raises(RunError) as caught:
        await tunnel.start(local_url)

    assert caught.value.fault == f"the agent {agent.path} did not come up within 1 s"
    assert not is_running(agent.seen()["pid"])


async def test_endpoint_already_online_names_the_domain_flag(
    agent_factory: InstallAgent, tunnel_factory: Callable[..., NgrokTunnel], local_url: str
) -> None:
    tunnel = tunnel_factory(ngrok_path=agent_factory("334").path, domain="taken.ngrok.app")

    with pytest.raises(RunError) as caught:
        await tunnel.start(local_url)

    assert caught.value.source == "--domain"
    assert caught.value.fault.startswith("https://taken.ngrok.app is already online")


async def test_agent_crash_is_seen_within_two_seconds(
    agent_factory: InstallAgent, tunnel_factory: Callable[..., NgrokTunnel], local_url: str
) -> None:
    tunnel = tunnel_factory(ngrok_path=agent_factory("crash_after=0.2").path)
    await tunnel.start(local_url)
    assert tunnel.alive()

    for _ in range(40):
        if not tunnel.alive():
            break
        await asyncio.sleep(0.05)

    assert not tunnel.alive()


async def test_start_after_a_crash_launches_a_fresh_agent(
    agent_factory: InstallAgent,
    tunnel_factory: Callable[..., NgrokTunnel],
    local_url: str,
    client_ssl: ssl.SSLContext,
) -> None:
    agent = agent_factory("crash_after=0.2")
    tunnel = tunnel_factory(ngrok_path=agent.path)
    first_url = await tunnel.start(local_url)
    first_pid = agent.seen()["pid"]
    for _ in range(40):
        if not is_running(first_pid):
            break
        await asyncio.sleep(0.05)

    second_url = await tunnel.start(local_url)

    assert agent.seen()["pid"] != first_pid
    assert second_url != first_url
    assert (await fetch(second_url, client_ssl))[0] == 200


async def test_stop_ends_the_agent_and_can_be_repeated(
    agent_factory: InstallAgent, tunnel_factory: Callable[..., NgrokTunnel], local_url: str
) -> None:
    agent = agent_factory()
    tunnel = tunnel_factory(ngrok_path=agent.path)
    await tunnel.start(local_url)
    pid = agent.seen()["pid"]

    await tunnel.stop()
    await tunnel.stop()

    assert not is_running(pid)
    assert not tunnel.alive()
    assert tunnel.public_url is None


async def test_an_agent_that_ignores_sigterm_is_killed(
    agent_factory: InstallAgent,
    tunnel_factory: Callable[..., NgrokTunnel],
    local_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(base, "STOP_TIMEOUT", 0.2)
    agent = agent_factory("stubborn")
    tunnel = tunnel_factory(ngrok_path=agent.path)
    await tunnel.start(local_url)

    await tunnel.stop()

    assert not is_running(agent.seen()["pid"])


async def test_the_users_ngrok_config_is_never_created(
    agent_factory: InstallAgent,
    tunnel_factory: Callable[..., NgrokTunnel],
    local_url: str,
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    agent = agent_factory()
    tunnel = tunnel_factory(ngrok_path=agent.path)

    await tunnel.start(local_url)
    own_config = config_of(agent)
    assert own_config.read_bytes() == b'version: "3"\n'
    await tunnel.stop()

    assert not (home / ".config" / "ngrok").is_dir()
    assert not (home / ".ngrok2").is_dir()
    assert not own_config.is_file()


async def test_an_existing_user_config_is_read_and_left_unchanged(
    agent_factory: InstallAgent,
    tunnel_factory: Callable[..., NgrokTunnel],
    local_url: str,
    tmp_path: Path,
) -> None:
    user_config = tmp_path / "home" / ".config" / "ngrok" / "ngrok.yml"
    user_config.parent.mkdir(parents=True)
    user_config.write_text('version: "2"\nauthtoken: from-the-file\nregion: eu\n')
    before = user_config.read_bytes(), user_config.stat().st_mtime_ns
    agent = agent_factory()
    tunnel = tunnel_factory(ngrok_path=agent.path)

    await tunnel.start(local_url)
    await tunnel.stop()

    assert config_of(agent) == user_config
    assert (user_config.read_bytes(), user_config.stat().st_mtime_ns) == before
    assert sorted(p.name for p in user_config.parent.iterdir()) == ["ngrok.yml"]


async def test_legacy_user_config_is_found(
    agent_factory: InstallAgent,
    tunnel_factory: Callable[..., NgrokTunnel],
    local_url: str,
    tmp_path: Path,
) -> None:
    legacy = tmp_path / "home" / ".ngrok2" / "ngrok.yml"
    legacy.parent.mkdir()
    legacy.write_text("authtoken: from-the-file\n")
    agent = agent_factory()

    await tunnel_factory(ngrok_path=agent.path).start(local_url)

    assert config_of(agent) == legacy


async def test_a_config_pyngrok_cannot_drive_is_reported(
    agent_factory: InstallAgent,
    tunnel_factory: Callable[..., NgrokTunnel],
    local_url: str,
    tmp_path: Path,
) -> None:
    user_config = tmp_path / "home" / ".config" / "ngrok" / "ngrok.yml"
    user_config.parent.mkdir(parents=True)
    user_config.write_text('version: "3"\nagent:\n  log_format: json\n')

    with pytest.raises(RunError) as caught:
        await tunnel_factory(ngrok_path=agent_factory().path).start(local_url)

    assert "log_format" in caught.value.fault
    assert "ngrok config" in caught.value.hint


@pytest.mark.parametrize(
    ("flag", "env", "on_path", "winner"),
    [
        ("flag", "env", "path", "flag"),
        (None, "env", "path", "env"),
        (None, None, "path", "path"),
    ],
)
async def test_agent_binary_is_chosen_flag_then_variable_then_path(
    *,
    agent_factory: InstallAgent,
    local_url: str,
    flag: str | None,
    env: str | None,
    on_path: str,
    winner: str,
) -> None:
    agents = {name: agent_factory(directory=name) for name in ("flag", "env", "path")}
    environ = dict(os.environ, PATH=str(agents["path"].path.parent))
    if env:
        environ["PYNGROK_NGROK_PATH"] = str(agents[env].path)
    tunnel = make_tunnel("ngrok", ngrok_path=agents[flag].path if flag else None, environ=environ)
    try:
        await tunnel.start(local_url)
    finally:
        await tunnel.stop()

    assert [name for name, agent in agents.items() if agent.record.exists()] == [winner]


async def test_pyngrok_managed_agent_is_used_when_present(
    agent_factory: InstallAgent, tunnel_factory: Callable[..., NgrokTunnel], local_url: str
) -> None:
    managed = agent_factory(directory="home/.config/ngrok")
    tunnel = tunnel_factory(environ=dict(os.environ, PATH=""))

    await tunnel.start(local_url)

    assert agent_seen_path(managed) == str(managed.path)


def config_of(agent: FakeAgent) -> Path:
    argv = agent.seen()["argv"]
    return Path(argv[argv.index("--config") + 1])


def agent_seen_path(agent: FakeAgent) -> str:
    return str(agent.seen()["argv"][0])


async def test_missing_agent_that_cannot_be_downloaded_says_how_to_install(
    tunnel_factory: Callable[..., NgrokTunnel],
    local_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[str] = []

    def no_network(ngrok_path: str, **kwargs: Any) -> None:
        attempts.append(ngrok_path)
        raise PyngrokNgrokInstallError("An error occurred while downloading ngrok: no network")

    monkeypatch.setattr(installer, "install_ngrok", no_network)
    tunnel = tunnel_factory(environ=dict(os.environ, PATH=""))

    with pytest.raises(RunError) as caught:
        await tunnel.start(local_url)

    assert attempts == [str(tmp_path / "home" / ".config" / "ngrok" / "ngrok")]
    assert "the download failed" in caught.value.fault
    assert "--ngrok-path" in caught.value.hint


@pytest.mark.parametrize("executable", [False, True])
async def test_a_named_agent_that_is_missing_or_not_executable_is_refused(
    tunnel_factory: Callable[..., NgrokTunnel], local_url: str, tmp_path: Path, executable: bool
) -> None:
    path = tmp_path / "ngrok"
    if executable:
        path.write_text("not a program")
    tunnel = tunnel_factory(ngrok_path=path)

    with pytest.raises(RunError) as caught:
        await tunnel.start(local_url)

    assert caught.value.source == f"--ngrok-path {path}"
    assert caught.value.fault == ("not executable" if executable else "no such file")


async def test_a_folder_named_as_the_agent_is_refused(
    tunnel_factory: Callable[..., NgrokTunnel], local_url: str, tmp_path: Path
) -> None:
    tunnel = tunnel_factory(ngrok_path=tmp_path)

    with pytest.raises(RunError) as caught:
        await tunnel.start(local_url)

    assert (caught.value.source, caught.value.fault) == (
        f"--ngrok-path {tmp_path}",
        "is a folder, not the agent binary",
    )


async def test_browsers_get_the_warning_page_unless_they_skip_it(
    agent_factory: InstallAgent,
    tunnel_factory: Callable[..., NgrokTunnel],
    local_url: str,
    client_ssl: ssl.SSLContext,
) -> None:
    tunnel = tunnel_factory(ngrok_path=agent_factory("interstitial").path)
    public_url = await tunnel.start(local_url)
    browser = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"}

    _, page = await fetch(public_url, client_ssl, browser)
    _, skipped = await fetch(public_url, client_ssl, {**browser, "ngrok-skip-browser-warning": "1"})
    _, server_side = await fetch(public_url, client_ssl, {"User-Agent": "jose/5"})

    assert "ERR_NGROK_6024" in page
    assert '"method": "POST"' in skipped
    assert '"method": "POST"' in server_side
