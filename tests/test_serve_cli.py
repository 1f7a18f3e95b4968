"""`devtunnel serve` as a user runs it: the real command, the Procfile line, signals."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from devtunnel.cli import main
from devtunnel.keys import private_pem
from tests.conftest import free_port
from tests.fakes import slow_app

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
START_TIMEOUT = 15.0


class Serving:
    """A running `devtunnel serve` process and the lines for people it has printed so far.

    Those lines go to stdout in plain mode, as `up`'s do, and to stderr with --json.
    """

    def __init__(self, process: asyncio.subprocess.Process, *, json_mode: bool) -> None:
        self.process = process
        self.json_mode = json_mode
        self.notes: list[str] = []

    async def wait_for_url(self) -> str:
        """The first local JWKS URL it prints: the server is listening once that line is out."""
        stream = self.process.stderr if self.json_mode else self.process.stdout
        assert stream is not None
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                line = (await stream.readline()).decode()
                assert line, f"serve ended early: {''.join(self.notes)}"
                self.notes.append(line)
                if line.startswith("http://"):
                    return line.strip()

    async def end(self, *, terminate: bool = True) -> tuple[int, str, str]:
        """SIGTERM it (unless already sent); its exit code, its whole stdout and stderr."""
        if terminate:
            self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(START_TIMEOUT):
            stdout, stderr = await self.process.communicate()
        assert self.process.returncode is not None
        out, err = stdout.decode(), stderr.decode()
        if self.json_mode:
            return self.process.returncode, out, "".join(self.notes) + err
        return self.process.returncode, "".join(self.notes) + out, err


def _env(**extra: str) -> dict[str, str]:
    # The isolated fixture already points HOME into tmp_path; the child inherits that.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}
    env.pop("COVERAGE_PROCESS_START", None)
    return env


async def _spawn(argv: list[str], env: dict[str, str]) -> Serving:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    return Serving(process, json_mode="--json" in argv)


@pytest.fixture
async def processes() -> AsyncIterator[list[Serving]]:
    started: list[Serving] = []
    yield started
    for serving in started:
        if serving.process.returncode is None:
            serving.process.kill()
            await serving.process.wait()


@pytest.fixture
def key_env() -> dict[str, str]:
    """Keys as a Procfile platform passes them: environment variables, one-line PEMs."""
    private = ec.generate_private_key(ec.SECP256R1())
    return {
        "NEXT_PUBLIC_PARTNER_ID": "partner-proc",
        "PARTNER_PRIVATE_KEY": private_pem(private).replace("\n", "\\n"),
    }


async def test_procfile_line_serves_the_jwks_with_keys_from_env(
    processes: list[Serving], key_env: dict[str, str]
) -> None:
    line = (ROOT / "Procfile").read_text(encoding="utf-8").strip()
    kind, _, command = line.partition(":")
    port = free_port()
    argv = shlex.split(command.replace("$PORT", str(port)))
    assert kind == "web"
    assert argv[0] == "devtunnel"

    serving = await _spawn(argv, _env(PORT=str(port), **key_env))
    processes.append(serving)
    url = await serving.wait_for_url()

    assert url == f"http://127.0.0.1:{port}/api/.well-known/jwks"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        document = await response.json()
    assert response.status == 200
    assert [key["kid"] for key in document["keys"]] == ["partner-proc"]
    code, _, _ = await serving.end()
    assert code == 0


async def test_sigterm_finishes_the_request_in_flight_and_exits_0(
    processes: list[Serving], key_env: dict[str, str]
) -> None:
    async with slow_app() as (upstream, arrived, release):
        argv = ["devtunnel", "serve", "--port", "0", "--upstream", upstream]
        serving = await _spawn(argv, _env(**key_env))
        processes.append(serving)
        url = await serving.wait_for_url()
        base = url.removesuffix("/api/.well-known/jwks")

        async with aiohttp.ClientSession() as http:
            request = asyncio.create_task(http.get(base + "/slow"))
            await arrived.wait()
            serving.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            release.set()
            response = await request
            text = await response.text()
        code, stdout, stderr = await serving.end(terminate=False)

    assert (response.status, text) == (200, "finished")
    assert code == 0
    assert "stopping: finishing the requests in flight" in stdout.splitlines()
    assert stderr == ""


async def test_without_keys_it_serves_an_ephemeral_key_and_warns(
    processes: list[Serving],
) -> None:
    serving = await _spawn(["devtunnel", "serve", "--port", "0", "--path", "/k"], _env())
    processes.append(serving)
    url = await serving.wait_for_url()
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        document = await response.json()
    code, stdout, stderr = await serving.end()

    lines = stdout.splitlines()
    assert url.endswith("/k")
    assert document["keys"][0]["kid"] == "devtunnel-local"
    assert document["keys"][0]["alg"] == "ES256"
    assert lines[0] == (
        "warning: no key configured: serving an ephemeral ES256 key that ends with this process"
    )
    assert lines[2] == (
        "warning: no Partner ID, so the kid is devtunnel-local: "
        "AIR will answer 401 until NEXT_PUBLIC_PARTNER_ID is set"
    )
    assert url in lines  # alone on its line, ready to copy
    assert "Ctrl-C stops" in lines
    assert any(
        line.startswith("fetch /k from 127.0.0.1 (") and line.endswith(") 200") for line in lines
    )
    assert stderr == ""
    assert code == 0


async def test_json_mode_prints_only_fetch_events_on_stdout(
    processes: list[Serving], key_env: dict[str, str]
) -> None:
    argv = ["devtunnel", "serve", "--port", "0", "--json"]
    serving = await _spawn(argv, _env(**key_env))
    processes.append(serving)
    url = await serving.wait_for_url()
    async with aiohttp.ClientSession(headers={"User-Agent": "jose"}) as http:
        for _ in range(3):
            async with http.get(url, headers={"X-Forwarded-For": "198.51.100.9"}) as response:
                assert response.status == 200
    code, stdout, stderr = await serving.end()

    events = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0
    assert url in stderr.splitlines()
    assert {event["event"] for event in events} == {"fetch"}
    assert sum(event["count"] for event in events) == 3
    assert {(e["client"], e["user_agent"], e["path"]) for e in events} == {
        ("198.51.100.9", "jose", "/api/.well-known/jwks")
    }


def test_port_in_use_exits_2_naming_the_port(
    key_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in key_env.items():
        monkeypatch.setenv(name, value)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--port", str(port)])

    stderr = capsys.readouterr().err
    assert code == 2
    assert f"port {port}: is already in use" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("port_env", "argv", "message"),
    [
        ("eighty", [], "PORT (environment): 'eighty' is not a port number"),
        ("70000", [], "PORT (environment): 70000 is out of range (0 to 65535; 0: any free)"),
        ("", ["--port", "-1"], "argument --port: -1 is out of range (0 to 65535; 0: any free)"),
        ("", ["--port", "x"], "argument --port: 'x' is not a port number"),
    ],
)
def test_bad_port_exits_2_naming_its_source(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    port_env: str,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("PORT", port_env)
    try:
        code = main(["serve", *argv])
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(str(exit_.code))

    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
