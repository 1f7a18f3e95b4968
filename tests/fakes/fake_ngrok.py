"""A stand-in for the ngrok agent, as pyngrok runs it: `ngrok start --none --log stdout --config P`.

It prints the agent's logfmt start-up lines, serves the agent's local API (/api/endpoints,
/api/tunnels) on a free loopback port, and opens one HTTPS listener per endpoint that
forwards to the endpoint's upstream. Standard library only.

Environment:
  FAKE_AGENT_TLS     a PEM file with the key and certificate of the public listeners
  FAKE_AGENT_RECORD  a JSON file to write what the agent saw: argv, whether
                     NGROK_AUTHTOKEN was in its environment, the endpoint requests
  FAKE_AGENT_MODE    a failure on demand: 4018, 108 (the session is refused), 334 (the
                     endpoint is already online), exit (exits at start), crash_after=N
                     (dies N seconds after start), interstitial (browsers get the
                     ERR_NGROK_6024 page), silent (stops talking during start-up),
                     stubborn (ignores SIGTERM), flaky (the first start dies after a
                     second, the second is refused with 108, later ones run; the
                     starts are counted in FAKE_AGENT_RECORD's folder)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.fakes.forwarder import Forwarder

# The agent's own words for each refused session (ngrok 3), with its literal \r\n endings.
REFUSALS = {
    "4018": (
        "authentication failed: Usage of ngrok requires a verified account and authtoken.\n\n"
        "Sign up for an account: https://dashboard.ngrok.com/signup\n"
        "Install your authtoken: https://dashboard.ngrok.com/get-started/your-authtoken\r\n\r\n"
        "ERR_NGROK_4018\r\n"
    ),
    "108": (
        "authentication failed: Your account is limited to 1 simultaneous ngrok agent "
        "sessions.\nYou can view your current agent sessions in the dashboard:\n"
        "https://dashboard.ngrok.com/agents\r\n\r\nERR_NGROK_108\r\n"
    ),
}
ALREADY_ONLINE = (
    "failed to start tunnel: The endpoint '{url}' is already online. Either\n"
    "1. stop your existing endpoint first, or\n"
    "2. start both endpoints with `--pooling-enabled` to load balance between them.\r\n\r\n"
    "ERR_NGROK_334\r\n"
)
PREFIX = "/api/endpoints/"
DEFAULT_DOMAIN_URL = "https://fake-words-here.ngrok-free.app"


def log(lvl: str, msg: str, **fields: str) -> None:
    """One line of the agent's log, in its logfmt."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S%z")
    parts = [f"t={now}", f"lvl={lvl}", f"msg={_quote(msg)}"]
    parts += [f"{key}={_quote(value)}" for key, value in fields.items()]
    print(" ".join(parts), flush=True)


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' ="\\\n\r'):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


class Record:
    """What the agent saw, rewritten whole after every change so a reader never sees half."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.data: dict[str, Any] = {
            "argv": sys.argv,
            "pid": os.getpid(),
            "authtoken_in_env": bool(os.environ.get("NGROK_AUTHTOKEN")),
            "endpoint_requests": [],
        }
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data), encoding="utf-8")
        os.replace(tmp, self.path)


class Agent:
    def __init__(self, mode: str, tls_file: str, record: Record) -> None:
        self.mode = mode
        self.tls_file = tls_file
        self.record = record
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.forwarders: dict[str, Forwarder] = {}
        self.lock = threading.Lock()

    def create(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.record.data["endpoint_requests"].append(request)
            self.record.save()
        url = request.get("url")
        if self.mode == "334":
            err = ALREADY_ONLINE.format(url=url or DEFAULT_DOMAIN_URL)
            return 502, {
                "error_code": 103,
                "status_code": 502,
                "msg": "failed to start tunnel",
                "details": {"err": err},
            }

        upstream = request["upstream"]["url"]
        name = request.get("name") or str(uuid.uuid4())
        forwarder = Forwarder(upstream, self.tls_file, interstitial=self.mode == "interstitial")
        endpoint = {
            "id": f"ep_{uuid.uuid4().hex}",
            "name": name,
            "uri": f"/api/endpoints/{name}",
            # Like the real agent, a requested URL is the endpoint's URL.
            "url": url or forwarder.url,
            "upstream": {"url": upstream, "protocol": "http1"},
        }
        with self.lock:
            self.endpoints[name] = endpoint
            self.forwarders[name] = forwarder
        log("info", "started tunnel", obj="tunnels", name=name, addr=upstream, url=endpoint["url"])
        return 201, endpoint

    def delete(self, name: str) -> bool:
        with self.lock:
            self.endpoints.pop(name, None)
            forwarder = self.forwarders.pop(name, None)
        if forwarder is None:
            return False
        forwarder.close()
        return True


def api_handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class ApiHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/api/endpoints":
                with agent.lock:
                    listed = list(agent.endpoints.values())
                self._json(200, {"endpoints": listed, "uri": "/api/endpoints"})
            elif self.path == "/api/tunnels":
                self._json(200, {"tunnels": [], "uri": "/api/tunnels"})
            elif self.path.startswith(PREFIX):
                found = agent.endpoints.get(self.path.removeprefix(PREFIX))
                self._json(200, found) if found else self._not_found()
            else:
                self._not_found()

        def do_POST(self) -> None:
            if self.path != "/api/endpoints":
                self._not_found()
                return
            length = int(self.headers.get("Content-Length") or 0)
            status, body = agent.create(json.loads(self.rfile.read(length)))
            self._json(status, body)

        def do_DELETE(self) -> None:
            if self.path.startswith(PREFIX) and agent.delete(self.path.removeprefix(PREFIX)):
                self.send_response(204)
                self.end_headers()
            else:
                self._not_found()

        def _not_found(self) -> None:
            self._json(404, {"error_code": 100, "status_code": 404, "msg": "not found"})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ApiHandler


def _stop(signum: int, frame: object) -> None:
    log("info", "received stop request", obj="app")
    os._exit(0)


def _crash(after: float) -> None:
    time.sleep(after)
    log("crit", "session closed unexpectedly", obj="tunnels.session", err="connection reset")
    os._exit(1)


def _count_start(record: Record) -> int:
    """How many times this agent has been started, this start included."""
    if record.path is None:
        return 1
    counter = record.path.with_suffix(".starts")
    starts = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(starts))
    return starts


def main() -> int:
    """Run the fake agent until SIGTERM (or the failure it was asked for)."""
    mode = os.environ.get("FAKE_AGENT_MODE", "")
    record = Record(os.environ.get("FAKE_AGENT_RECORD"))
    if mode == "flaky":
        mode = {1: "crash_after=1", 2: "108"}.get(_count_start(record), "")
    signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else _stop)
    signal.signal(signal.SIGINT, _stop)
    if mode == "exit":
        print("ERROR:  unknown shorthand flag: 'x' in -x", file=sys.stderr, flush=True)
        return 1

    config = sys.argv[sys.argv.index("--config") + 1] if "--config" in sys.argv else ""
    log("info", "open config file", path=config, err="nil")
    if mode == "silent":
        while True:
            signal.pause()
    agent = Agent(mode, os.environ.get("FAKE_AGENT_TLS", ""), record)
    api = ThreadingHTTPServer(("127.0.0.1", 0), api_handler(agent))
    threading.Thread(target=api.serve_forever, daemon=True).start()
    host, port = api.server_address[:2]
    log("info", "starting web service", obj="web", addr=f"{host}:{port}", allow_hosts="[]")

    refusal = REFUSALS.get(mode)
    if refusal is not None:
        time.sleep(0.05)
        log("eror", "failed to reconnect session", obj="tunnels.session", err=refusal)
        # A pause before the exit, as the real agent's: pyngrok stops reading once it has exited.
        time.sleep(0.2)
        log("crit", "command failed", err=refusal)
        return 1

    log("info", "client session established", obj="tunnels.session")
    log("info", "tunnel session started", obj="tunnels.session")
    if mode.startswith("crash_after="):
        after = float(mode.partition("=")[2])
        threading.Thread(target=_crash, args=(after,), daemon=True).start()
    while True:
        signal.pause()
