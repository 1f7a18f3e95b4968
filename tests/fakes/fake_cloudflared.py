"""A stand-in for cloudflared, as `cloudflared tunnel --no-autoupdate --url http://127.0.0.1:PORT`.

It writes cloudflared's log to stderr: the boxed banner with the quick tunnel's URL, then,
after a short delay, `Registered tunnel connection connIndex=0 ...`. The URL in the banner
is its own HTTPS listener, https://localhost:PORT, in place of the trycloudflare.com name
that cannot resolve here; it forwards to the --url upstream. Standard library only.

Environment: FAKE_AGENT_TLS, FAKE_AGENT_RECORD as for fake_ngrok; FAKE_AGENT_MODE is
exit (fails at start), crash_after=N (dies N seconds after registering) or
never_register (prints the banner, never connects) or stubborn (ignores SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tests.fakes.forwarder import Forwarder

REGISTER_DELAY = 0.2
DISCLAIMER = (
    "Thank you for trying Cloudflare Tunnel. Doing so, without a Cloudflare account, is a "
    "quick way to experiment and try it out. However, be aware that these account-less "
    "Tunnels have no uptime guarantee, are subject to the Cloudflare Online Services Terms "
    "of Use (https://www.cloudflare.com/website-terms/)"
)


def log(level: str, message: str) -> None:
    """One line of cloudflared's console log."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{now} {level} {message}", file=sys.stderr, flush=True)


def banner(url: str) -> list[str]:
    """cloudflared's box around the quick tunnel's URL, padded by two spaces."""
    lines = [
        "Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):",
        url,
    ]
    width = max(len(line) for line in lines)
    border = "+" + "-" * (width + 4) + "+"
    return [border, *(f"|  {line.ljust(width)}  |" for line in lines), border]


def _stop(signum: int, frame: object) -> None:
    log("INF", "Initiating graceful shutdown due to signal terminated ...")
    os._exit(0)


def main() -> int:
    """Run the fake cloudflared until SIGTERM (or the failure it was asked for)."""
    mode = os.environ.get("FAKE_AGENT_MODE", "")
    record = os.environ.get("FAKE_AGENT_RECORD")
    if record:
        Path(record).write_text(json.dumps({"argv": sys.argv, "pid": os.getpid()}))
    signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else _stop)
    signal.signal(signal.SIGINT, _stop)

    log("INF", DISCLAIMER)
    log("INF", "Requesting new quick Tunnel on trycloudflare.com...")
    if mode == "exit":
        log("ERR", 'Error unmarshaling QuickTunnel response: error code: 1015 status_code="429"')
        log("ERR", "failed to unmarshal quick Tunnel: invalid character 'e' looking for value")
        return 1

    upstream = sys.argv[sys.argv.index("--url") + 1]
    forwarder = Forwarder(upstream, os.environ.get("FAKE_AGENT_TLS", ""))
    for line in banner(forwarder.url):
        log("INF", line)
    log("INF", "Version 2025.1.0 (Checksum 0000)")
    log("INF", f"Starting metrics server on 127.0.0.1:20241/metrics tunnelID={uuid.uuid4()}")
    if mode == "never_register":
        while True:
            signal.pause()

    time.sleep(REGISTER_DELAY)
    log(
        "INF",
        f"Registered tunnel connection connIndex=0 connection={uuid.uuid4()} event=0 "
        "ip=198.41.200.13 location=ams07 protocol=quic",
    )
    if mode.startswith("crash_after="):
        time.sleep(float(mode.partition("=")[2]))
        log("ERR", 'Serve tunnel error error="connection reset" connIndex=0')
        return 1
    while True:
        signal.pause()
