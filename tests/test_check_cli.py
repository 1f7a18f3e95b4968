"""`devtunnel check`: one line per stage and a verdict, or one JSON event; exit 0, 1 or 2."""

from __future__ import annotations

import asyncio
import io
import json
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import ec

from devtunnel.cli import main
from devtunnel.jwks import key_thumbprint
from devtunnel.keys import KeyPair
from tests.conftest import free_port, write_env
from tests.fakes.hostile_jwks import HostileJwks


class TtyBuffer(io.StringIO):
    """A stdout that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
async def hostile(ec_pair: KeyPair) -> AsyncIterator[HostileJwks]:
    other = ec.generate_private_key(ec.SECP256R1())
    wrong = KeyPair(other.public_key(), other, "ES256", ec_pair.kid, ec_pair.kid)
    async with HostileJwks(ec_pair, wrong) as server:
        yield server


@pytest.fixture
def env_file(ec_pair: KeyPair, isolated: Path) -> Path:
    assert ec_pair.private is not None
    return write_env(isolated / ".env.local", ec_pair.private, partner_id=ec_pair.kid)


async def devtunnel(*argv: str) -> int:
    # The server runs on this test's loop; the command runs its own loop in a thread.
    return await asyncio.to_thread(main, list(argv))


async def test_passing_check_prints_each_stage_and_exits_0(
    hostile: HostileJwks, env_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = hostile.url("/good")

    code = await devtunnel("check", url)

    out = capsys.readouterr().out
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == f"checking {url}"
    assert [line.split()[:2] for line in lines[1:9]] == [
        ["✓", "reachable"], ["✓", "status"], ["✓", "body"], ["✓", "safety"],
        ["✓", "kid"], ["✓", "key"], ["✓", "alg"], ["✓", "signature"],
    ]  # fmt: skip
    assert "\033[" not in out  # not a terminal: no colour
    assert "! warning  not_https:" in out and "! warning  not_public:" in out
    assert lines[-1] == "OK: a remote verifier can use this JWKS"


async def test_failing_check_prints_the_failed_stage_with_its_fix_and_exits_1(
    hostile: HostileJwks, env_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await devtunnel("check", hostile.url("/other-kid"))

    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    failed = next(index for index, line in enumerate(lines) if line.startswith("✗"))
    assert lines[failed].split()[:3] == ["✗", "kid", "kid_not_found:"]
    assert lines[failed + 1].strip().startswith("fix: serve the key with kid 'partner-ec'")
    assert lines[-1] == "FAILED: 1 problem (kid_not_found)"


async def test_json_prints_exactly_one_check_event(
    hostile: HostileJwks, env_file: Path, ec_pair: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await devtunnel("check", hostile.url("/wrong-key"), "--json")

    out = capsys.readouterr().out
    assert code == 1
    assert out.count("\n") == 1
    event = json.loads(out)
    assert event["event"] == "check"
    assert event["ok"] is False
    assert event["status"] == 200
    assert [p["code"] for p in event["problems"]] == ["key_mismatch", "invalid_signature"]
    assert key_thumbprint(ec_pair.public) in event["problems"][0]["detail"]
    assert [w["code"] for w in event["warnings"]] == ["not_https", "not_public"]
    assert event["requests"] == 2  # the JWKS itself came back, so the browser probe ran


async def test_partner_id_alone_checks_the_kid(
    hostile: HostileJwks, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await devtunnel("check", hostile.url("/good"), "--partner-id", "someone-else")

    assert code == 1
    assert "kid_not_found: no key has kid 'someone-else'" in capsys.readouterr().out


async def test_without_keys_or_partner_id_checks_the_structure(
    hostile: HostileJwks, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await devtunnel("check", hostile.url("/good"))

    out = capsys.readouterr().out
    assert code == 0
    assert "✓ kid" not in out
    assert "structure only" in out.splitlines()[-1]


async def test_colour_only_on_a_terminal_and_never_with_no_color(
    hostile: HostileJwks, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = TtyBuffer()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert await devtunnel("check", hostile.url("/good")) == 0
    assert "\033[32m✓\033[0m reachable" in terminal.getvalue()

    monkeypatch.setenv("NO_COLOR", "1")
    plain = TtyBuffer()
    monkeypatch.setattr(sys, "stdout", plain)
    assert await devtunnel("check", hostile.url("/good")) == 0
    assert "\033[" not in plain.getvalue()


async def test_https_with_ca_file_passes(
    ec_pair: KeyPair,
    server_cert: trustme.LeafCert,
    ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    async with HostileJwks(ec_pair, ec_pair, tls=context) as server:
        untrusted = await devtunnel("check", server.url("/good"), "--json")
        trusted = await devtunnel("check", server.url("/good"), "--ca-file", str(ca_file))

    assert (untrusted, trusted) == (1, 0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ftp://example.com/jwks.json"], "is not an http:// or https:// URL"),
        (["http://127.0.0.1:9/jwks.json", "--private-key", "bad.pem"], "--private-key bad.pem"),
        (["https://127.0.0.1:9/jwks.json", "--ca-file", "missing.pem"], "no such file"),
    ],
)
def test_configuration_errors_exit_2(
    argv: list[str], message: str, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated / "bad.pem").write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n", encoding="utf-8")

    code = main(["check", *argv])

    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_unreachable_url_exits_1_from_a_real_process(isolated: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks.json"

    done = subprocess.run(
        [sys.executable, "-m", "devtunnel", "check", url, "--json", "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )

    assert done.returncode == 1
    event = json.loads(done.stdout)
    assert [p["code"] for p in event["problems"]] == ["unreachable"]
    assert done.stderr == ""
