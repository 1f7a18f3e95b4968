"""Key rotation latency: file write → the JWKS URL serves the new thumbprint.

Runs `devtunnel up --json` in a scratch directory, rewrites `.env.local` with a new
key pair ROTATIONS times (temp file + rename, as editors and keygen do), and polls
the JWKS URL (every 2 ms, over a kept-alive connection) until it serves the new
key. Locally (--tunnel none) and through the fake ngrok agent of tests/fakes (the
real pyngrok code path, HTTPS from a test CA). Each run has its own HOME.

Baseline, measured in the same run: watchfiles itself with devtunnel's debounce
settings (file write → awatch yields), the floor that no watcher-based reload can
beat. Targets: p50 under 250 ms and p95 under 500 ms locally.

    .venv/bin/python bench/rotation.py [--rotations 60]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import watchfiles
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import percentile  # noqa: E402

from devtunnel.events import SELF_CHECK_HEADER  # noqa: E402
from devtunnel.jwks import key_thumbprint, thumbprint  # noqa: E402
from devtunnel.watch import DEBOUNCE_MS, STEP_MS  # noqa: E402
from tests.fakes import env_text, install_ngrok_with_ca  # noqa: E402

POLL_S = 0.002
TIMEOUT_S = 10.0
SETTLE_S = 0.05  # quiet between rotations, so that bursts do not merge
GOLDEN = (5**0.5 - 1) / 2


def pause(i: int) -> float:
    """Seconds to wait before write i + 1: SETTLE_S plus a share of one watcher step.

    watchfiles looks for changes every STEP_MS, so a write's latency depends on where
    it falls within a step; spreading the shares evenly (the golden-ratio sequence)
    samples every phase alike instead of always hitting the same one.
    """
    return SETTLE_S + (i * GOLDEN % 1) * STEP_MS / 1000


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class JwksPoller:
    """GETs one JWKS URL over a kept-alive connection, as a verifier refreshing its cache."""

    def __init__(self, url: str, context: ssl.SSLContext | None) -> None:
        parts = urlsplit(url)
        self.path = parts.path
        host, port = parts.hostname or "127.0.0.1", parts.port
        self.connect = (
            (lambda: http.client.HTTPSConnection(host, port, timeout=2, context=context))
            if parts.scheme == "https"
            else (lambda: http.client.HTTPConnection(host, port, timeout=2))
        )
        self.connection = self.connect()

    def served(self) -> str | None:
        """The thumbprint of the first key served, or None on any failure."""
        try:
            self.connection.request("GET", self.path, headers={SELF_CHECK_HEADER: "1"})
            response = self.connection.getresponse()
            body = response.read()
            if response.status != 200:
                return None
            return thumbprint(json.loads(body)["keys"][0])
        except (OSError, http.client.HTTPException, ValueError, KeyError, IndexError):
            self.connection.close()
            self.connection = self.connect()
            return None

    def close(self) -> None:
        self.connection.close()


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name:<28} p50 {percentile(values, 0.5):7.1f} ms   p95 {percentile(values, 0.95):7.1f} ms"
        f"   max {max(values):7.1f} ms   (n={len(values)})"
    )


async def watch_baseline(rounds: int) -> list[float]:
    """watchfiles alone, with devtunnel's debounce and step: write → awatch yields."""
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / ".env.local"
        target.write_text("A=0\n")
        stop = asyncio.Event()
        seen: asyncio.Queue[float] = asyncio.Queue()

        async def watch() -> None:
            async for _ in watchfiles.awatch(
                scratch, debounce=DEBOUNCE_MS, step=STEP_MS, stop_event=stop, recursive=False
            ):
                seen.put_nowait(time.perf_counter())

        task = asyncio.create_task(watch())
        await asyncio.sleep(0.5)
        times: list[float] = []
        for i in range(rounds):
            start = time.perf_counter()
            atomic_write(target, f"A={i + 1}\n")
            times.append((await asyncio.wait_for(seen.get(), TIMEOUT_S) - start) * 1000)
            await asyncio.sleep(pause(i))
        stop.set()
        await task
        return times


@contextmanager
def devtunnel_up(cwd: Path, args: list[str], env: dict[str, str]) -> Iterator[str]:
    """`devtunnel up --json` running in cwd; yields the first JWKS URL from `ready`."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtunnel",
            "up",
            "--json",
            "--port",
            "0",
            "--interval",
            "3600",
            *args,
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "ready":
                yield str(event["jwks_urls"][0])
                break
        else:
            raise RuntimeError(f"devtunnel up ended before `ready` (exit {proc.wait()})")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rotate(cwd: Path, url: str, rounds: int, context: ssl.SSLContext | None) -> list[float]:
    """Write a new key `rounds` times; ms from each write until the URL serves it."""
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(rounds)]
    env_file = cwd / ".env.local"
    poller = JwksPoller(url, context)
    time.sleep(0.5)  # the watcher starts a moment after `ready`
    times: list[float] = []
    try:
        for i, private in enumerate(keys):
            want = key_thumbprint(private.public_key())
            start = time.perf_counter()
            atomic_write(env_file, env_text(private, "bench-partner"))
            while poller.served() != want:
                if time.perf_counter() - start > TIMEOUT_S:
                    raise RuntimeError(f"the new key did not show within {TIMEOUT_S:g} s")
                time.sleep(POLL_S)
            times.append((time.perf_counter() - start) * 1000)
            time.sleep(pause(i))
    finally:
        poller.close()
    return times


def project(scratch: Path) -> tuple[Path, dict[str, str]]:
    """A project directory with a first key, and an environment with a HOME of its own."""
    cwd, home = scratch / "project", scratch / "home"
    cwd.mkdir()
    home.mkdir()
    (cwd / ".env.local").write_text(env_text(ec.generate_private_key(ec.SECP256R1()), "b"))
    return cwd, {**os.environ, "HOME": str(home)}


def run_local(rounds: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="devtunnel-bench-") as scratch:
        cwd, env = project(Path(scratch))
        with devtunnel_up(cwd, ["--tunnel", "none"], env) as url:
            return rotate(cwd, url, rounds, None)


def run_tunnel(rounds: int) -> list[float]:
    """Through the fake ngrok agent: HTTPS with a certificate from a test CA."""
    with tempfile.TemporaryDirectory(prefix="devtunnel-bench-") as scratch:
        root = Path(scratch)
        cwd, env = project(root)
        agent, ca_file = install_ngrok_with_ca(root)
        env |= {"SSL_CERT_FILE": str(ca_file), "NGROK_AUTHTOKEN": "bench-not-a-real-token"}
        context = ssl.create_default_context(cafile=str(ca_file))
        with devtunnel_up(cwd, ["--ngrok-path", str(agent.path)], env) as url:
            return rotate(cwd, url, rounds, context)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rotations", type=int, default=60)
    parser.add_argument("--skip-tunnel", action="store_true")
    args = parser.parse_args()

    baseline = asyncio.run(watch_baseline(args.rotations))
    runs = {"devtunnel, local": run_local(args.rotations)}
    if not args.skip_tunnel:
        runs["devtunnel, via fake ngrok"] = run_tunnel(args.rotations)
    print(summary("watchfiles alone (baseline)", baseline))
    for name, times in runs.items():
        print(summary(name, times))
        ratios = [percentile(times, q) / percentile(baseline, q) for q in (0.5, 0.95)]
        print(f"{'':<28} ratio to baseline: p50 {ratios[0]:.2f}x   p95 {ratios[1]:.2f}x")
    local = runs["devtunnel, local"]
    verdict = percentile(local, 0.5) < 250 and percentile(local, 0.95) < 500
    print(f"targets (local p50 < 250 ms, p95 < 500 ms): {'met' if verdict else 'NOT met'}")


if __name__ == "__main__":
    main()
