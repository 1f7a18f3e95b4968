"""`devtunnel up` end to end: the real process, the real pyngrok path, the fake agent."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from devtunnel.jwks import key_thumbprint
from tests.conftest import free_port, write_env
from tests.fakes import FakeAgent, install_agent, is_running
from tests.upprocess import Event, UpProcess

TOKEN = "2upSECRETauthtokenQ_0987654321"
JWKS_PATHS = ["/api/.well-known/jwks", "/jwks.json"]


@pytest.fixture
def agent_env(ca_file: Path) -> dict[str, str]:
    """What `up` needs to trust the fake's HTTPS URL, and an authtoken to keep secret."""
    return {"SSL_CERT_FILE": str(ca_file), "NGROK_AUTHTOKEN": TOKEN}


def fake_ngrok(tmp_path: Path, tls_file: Path, mode: str = "") -> FakeAgent:
    return install_agent("ngrok", tmp_path / "bin", tls_file=tls_file, mode=mode)


@pytest.fixture
def signing_key(isolated: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    write_env(isolated / ".env.local", key, "partner-1")
    return key


@pytest.fixture
def local_up(
    isolated: Path, signing_key: ec.EllipticCurvePrivateKey
) -> Iterator[tuple[UpProcess, Event]]:
    """`up --tunnel none` on the signing key, past its first check; it must stop with 0."""
    up = UpProcess(["--tunnel", "none", "--interval", "3600"], isolated)
    try:
        ready = up.wait_for("ready")
        up.wait_for("check")
        yield up, ready
    finally:
        assert up.stop() == 0


def get_json(url: str, context: ssl.SSLContext | None = None) -> dict[str, object]:
    request = urllib.request.Request(url, headers={"User-Agent": "test-verifier/1"})
    with urllib.request.urlopen(request, timeout=5, context=context) as response:
        data: dict[str, object] = json.loads(response.read())
        return data


def test_up_serves_the_key_through_the_tunnel_checks_it_and_stops_clean(
    isolated: Path,
    tmp_path: Path,
    tls_file: Path,
    agent_env: dict[str, str],
    ca_file: Path,
    signing_key: ec.EllipticCurvePrivateKey,
) -> None:
    agent = fake_ngrok(tmp_path, tls_file)
    up = UpProcess(["--ngrok-path", str(agent.path), "--interval", "3600"], isolated, agent_env)
    try:
        ready = up.wait_for("ready")
        public = str(ready["public_url"])
        assert public.startswith("https://localhost:")
        assert ready["jwks_urls"] == [public + path for path in JWKS_PATHS]
        assert ready["tunnel"] == "ngrok"
        assert (ready["kid"], ready["alg"]) == ("partner-1", "ES256")
        assert ready["thumbprint"] == key_thumbprint(signing_key.public_key())
        assert ready["url_changed"] is True

        check = up.wait_for("check")
        assert check["ok"] is True, check["problems"]
        assert check["url"] == ready["jwks_urls"][0]
        assert check["status"] == 200
        assert check["thumbprint"] == ready["thumbprint"]
        assert check["requests"] == 2  # the verifier's fetch and one browser probe

        # An outside verifier fetching through the tunnel shows as a fetch event.
        document = get_json(ready["jwks_urls"][1], ssl.create_default_context(cafile=ca_file))
        assert [key["kid"] for key in document["keys"]] == ["partner-1"]  # type: ignore[attr-defined]
        fetch = up.wait_for("fetch")
        assert (fetch["path"], fetch["user_agent"], fetch["status"]) == (
            "/jwks.json",
            "test-verifier/1",
            200,
        )
        agent_pid = agent.seen()["pid"]
    finally:
        code = up.stop(signal.SIGINT)

    assert code == 0
    assert up.events[-1]["event"] == "stopped"
    assert not is_running(agent_pid)
    seen = agent.seen()
    assert TOKEN not in " ".join(seen["argv"])
    assert seen["authtoken_in_env"] is True
    assert TOKEN not in "".join(up.stdout_lines) + up.stderr
    assert "Traceback" not in up.stderr


def test_sigterm_stops_up_with_exit_0_and_no_agent_left(
    isolated: Path, tmp_path: Path, tls_file: Path, agent_env: dict[str, str]
) -> None:
    agent = fake_ngrok(tmp_path, tls_file)
    up = UpProcess(["--ngrok-path", str(agent.path), "--interval", "3600"], isolated, agent_env)
    try:
        up.wait_for("check")
        agent_pid = agent.seen()["pid"]
    finally:
        code = up.stop(signal.SIGTERM)

    assert code == 0
    assert up.events[-1] == {**up.events[-1], "event": "stopped", "reason": "signal"}
    assert not is_running(agent_pid)


def test_once_checks_once_and_exits_0(
    isolated: Path, tmp_path: Path, tls_file: Path, agent_env: dict[str, str]
) -> None:
    agent = fake_ngrok(tmp_path, tls_file)
    up = UpProcess(["--ngrok-path", str(agent.path), "--once"], isolated, agent_env)

    assert up.wait() == 0
    assert [event["event"] for event in up.events] == ["ready", "check", "stopped"]
    assert up.events[1]["ok"] is True
    assert not is_running(agent.seen()["pid"])


def test_a_crashed_agent_is_noticed_restarted_and_checked(
    isolated: Path, tmp_path: Path, tls_file: Path, agent_env: dict[str, str]
) -> None:
    agent = fake_ngrok(tmp_path, tls_file, mode="crash_after=1.5")
    up = UpProcess(["--ngrok-path", str(agent.path), "--interval", "3600"], isolated, agent_env)
    try:
        ready = up.wait_for("ready")
        up.wait_for("check")
        down = up.wait_for("tunnel")
        assert (down["state"], down["public_url"]) == ("down", ready["public_url"])
        restarted = up.wait_for("tunnel", lambda e: e["state"] == "restarted")
        # The fake's URL has a fresh port each start, so the URL changed.
        assert restarted["url_changed"] is True
        assert restarted["public_url"] != ready["public_url"]
        check = up.wait_for("check")
        assert check["ok"] is True
        assert check["url"].startswith(restarted["public_url"])
    finally:
        assert up.stop() == 0
    assert "warning: the ngrok tunnel died; restarting it" in up.stderr
    assert "lvl=" not in up.stderr  # the agent's raw log lines stay off the screen


def test_a_failed_restart_is_tried_again_after_a_longer_wait(
    isolated: Path, tmp_path: Path, tls_file: Path, agent_env: dict[str, str]
) -> None:
    # The fake dies a second after its first start and refuses its second (ERR_NGROK_108).
    agent = fake_ngrok(tmp_path, tls_file, mode="flaky")
    up = UpProcess(["--ngrok-path", str(agent.path), "--interval", "3600"], isolated, agent_env)
    try:
        up.wait_for("ready")
        up.wait_for("tunnel", lambda e: e["state"] == "down")
        restarted = up.wait_for("tunnel", lambda e: e["state"] == "restarted")
        check = up.wait_for("check", lambda e: e["url"].startswith(restarted["public_url"]))
        assert check["ok"] is True
    finally:
        assert up.stop() == 0
    assert "tunnel restart failed (ngrok: another agent session" in up.stderr
    assert "next try in 2 s" in up.stderr
    assert agent.record.with_suffix(".starts").read_text() == "3"


@pytest.mark.parametrize(
    ("mode", "fault"),
    [
        ("4018", "the agent has no authtoken (ERR_NGROK_4018)"),
        ("108", "another agent session of this ngrok account is running (ERR_NGROK_108)"),
        ("334", "is already online elsewhere (ERR_NGROK_334)"),
        ("exit", "ngrok"),
    ],
)
def test_ngrok_failures_are_one_message_and_a_hint(
    isolated: Path,
    tmp_path: Path,
    tls_file: Path,
    agent_env: dict[str, str],
    mode: str,
    fault: str,
) -> None:
    agent = fake_ngrok(tmp_path, tls_file, mode=mode)
    up = UpProcess(["--ngrok-path", str(agent.path)], isolated, agent_env)

    assert up.wait() == 1
    error, hint = up.stderr.strip().splitlines()[-2:]
    assert error.startswith("devtunnel: error: ")
    assert fault in error
    assert hint.startswith("  hint: ")
    assert "Traceback" not in up.stderr
    assert TOKEN not in up.stderr
    assert up.events[-1]["event"] == "stopped"


def test_a_missing_agent_binary_is_named(isolated: Path, agent_env: dict[str, str]) -> None:
    up = UpProcess(["--ngrok-path", str(isolated / "no-ngrok")], isolated, agent_env)

    assert up.wait() == 1
    assert f"--ngrok-path {isolated / 'no-ngrok'}: no such file" in up.stderr
    assert "Traceback" not in up.stderr


def test_up_without_keys_serves_an_ephemeral_key_and_says_so(isolated: Path) -> None:
    up = UpProcess(["--tunnel", "none", "--once"], isolated)

    assert up.wait() == 0
    ready = up.events[0]
    assert (ready["kid"], ready["alg"], ready["tunnel"]) == ("devtunnel-local", "ES256", "none")
    assert "ephemeral ES256 key" in up.stderr
    assert up.events[1]["ok"] is True


def test_url_unchanged_on_the_second_run_in_a_directory(
    isolated: Path, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    port = str(free_port())
    first = UpProcess(["--tunnel", "none", "--port", port, "--once"], isolated)
    assert first.wait() == 0
    second = UpProcess(["--tunnel", "none", "--port", port, "--once"], isolated)
    assert second.wait() == 0

    assert first.events[0]["url_changed"] is True
    assert second.events[0]["url_changed"] is False


def test_a_bad_key_at_start_is_exit_2_before_anything_starts(isolated: Path) -> None:
    (isolated / ".env.local").write_text("PARTNER_PRIVATE_KEY=bm90IGEga2V5\n")
    up = UpProcess(["--tunnel", "none"], isolated)

    assert up.wait() == 2
    assert up.events == []
    assert "PARTNER_PRIVATE_KEY in .env.local" in up.stderr


def test_keygen_force_while_up_runs_is_reloaded_and_proved_live(
    isolated: Path, tmp_path: Path, tls_file: Path, agent_env: dict[str, str]
) -> None:
    (isolated / ".env.local").write_text("NEXT_PUBLIC_PARTNER_ID=partner-1\n")
    subprocess.run([sys.executable, "-m", "devtunnel", "keygen"], cwd=isolated, check=True)
    agent = fake_ngrok(tmp_path, tls_file)
    up = UpProcess(["--ngrok-path", str(agent.path), "--interval", "3600"], isolated, agent_env)
    try:
        ready = up.wait_for("ready")
        up.wait_for("check")
        subprocess.run(
            [sys.executable, "-m", "devtunnel", "keygen", "--force"], cwd=isolated, check=True
        )

        reload = up.wait_for("reload")
        assert reload["ok"] is True
        assert reload["kid"] == "partner-1"
        assert reload["thumbprint"] != ready["thumbprint"]
        assert reload["source"] == str(isolated / ".env.local")
        check = up.wait_for("check")
        assert check["ok"] is True
        assert check["thumbprint"] == reload["thumbprint"]
        assert check["propagation_ms"] is not None
        assert 0 < check["propagation_ms"] < 5000
    finally:
        assert up.stop() == 0
    assert (isolated / ".env.local.bak").exists()


def test_a_broken_write_keeps_the_last_good_keys_then_a_fix_is_served(
    isolated: Path, local_up: tuple[UpProcess, Event]
) -> None:
    up, ready = local_up
    env = isolated / ".env.local"
    good = env.read_text()

    env.write_text(good[: len(good) // 2])
    failed = up.wait_for("reload")
    assert failed["ok"] is False
    assert failed["thumbprint"] == ready["thumbprint"]
    [problem] = failed["problems"]
    assert problem["code"] == "config"
    assert "PARTNER_PRIVATE_KEY in .env.local" in problem["detail"]
    served = get_json(ready["jwks_urls"][0])
    assert served["keys"][0]["kid"] == "partner-1"  # type: ignore[index]

    rotated = ec.generate_private_key(ec.SECP256R1())
    write_env(env, rotated, "partner-2")
    fixed = up.wait_for("reload")
    assert fixed["ok"] is True
    assert (fixed["kid"], fixed["thumbprint"]) == (
        "partner-2",
        key_thumbprint(rotated.public_key()),
    )
    check = up.wait_for("check")
    assert check["ok"] is True
    assert check["thumbprint"] == fixed["thumbprint"]


def test_a_partner_id_change_changes_the_kid(
    isolated: Path, local_up: tuple[UpProcess, Event]
) -> None:
    up, ready = local_up
    env = isolated / ".env.local"
    env.write_text(env.read_text().replace("partner-1", "partner-renamed"))

    reload = up.wait_for("reload")
    assert (reload["ok"], reload["kid"]) == (True, "partner-renamed")
    assert reload["thumbprint"] == ready["thumbprint"]
    check = up.wait_for("check")
    assert check["ok"] is True
    served = get_json(ready["jwks_urls"][1])
    assert served["keys"][0]["kid"] == "partner-renamed"  # type: ignore[index]


def test_no_watch_ignores_key_changes(
    isolated: Path, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    up = UpProcess(["--tunnel", "none", "--no-watch", "--interval", "3600"], isolated)
    try:
        ready = up.wait_for("ready")
        up.wait_for("check")
        write_env(isolated / ".env.local", ec.generate_private_key(ec.SECP256R1()), "other")
        with pytest.raises(AssertionError, match="no 'reload' event"):
            up.wait_for("reload", timeout=1.0)
        served = get_json(ready["jwks_urls"][0])
        assert served["keys"][0]["kid"] == "partner-1"  # type: ignore[index]
    finally:
        assert up.stop() == 0


def test_interval_must_be_positive(isolated: Path) -> None:
    up = UpProcess(["--tunnel", "none", "--interval", "0"], isolated)

    assert up.wait() == 2
    assert "argument --interval: 0 must be above 0 seconds" in up.stderr


def test_environment_is_not_mutated_by_the_fixture() -> None:
    # The tests above hand NGROK_AUTHTOKEN only to their child processes.
    assert "NGROK_AUTHTOKEN" not in os.environ


def test_up_through_a_cloudflared_quick_tunnel(
    isolated: Path, tmp_path: Path, tls_file: Path, agent_env: dict[str, str]
) -> None:
    agent = install_agent("cloudflared", tmp_path / "bin", tls_file=tls_file)
    up = UpProcess(["--tunnel", "cloudflared", "--cloudflared-path", str(agent.path), "--once"],
                   isolated, agent_env)  # fmt: skip

    assert up.wait() == 0
    ready, check, stopped = up.events
    assert ready["tunnel"] == "cloudflared"
    assert ready["public_url"].startswith("https://localhost:")
    assert check["ok"] is True, check["problems"]
    assert check["url"] == ready["jwks_urls"][0]
    assert stopped["reason"] == "once"
    assert not is_running(agent.seen()["pid"])
