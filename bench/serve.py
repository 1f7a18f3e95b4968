"""Load-test `devtunnel serve` against a bare aiohttp handler and Python's http.server.

Each server runs in its own process and serves the same JWKS bytes on
/jwks.json. The servers take turns, round after round, so machine noise hits
all of them alike. The load comes from wrk when it is installed, else from a
multi-process Python client with keep-alive connections (slower than wrk, so
it understates the faster servers).

    .venv/bin/python bench/serve.py [--rounds 7] [--duration 3] [--connections 32]

Prints requests/s and p99 latency per server (the median over rounds), and the
ratios devtunnel/bare and devtunnel/http.server (the median of each round's ratio).

    .venv/bin/python bench/serve.py --instructions

counts instead the instructions one request costs devtunnel and the bare
handler, under valgrind's callgrind (one keep-alive client; a run that serves
no request is subtracted): a count that a shared VM's noise cannot move, unlike
requests/s. Needs valgrind (apt-get install valgrind); about 5 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import http.client
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from devtunnel.jwks import render_keys
from devtunnel.keys import KeyPair, private_pem

PATH = "/jwks.json"
PARTNER_ID = "bench-partner"
START_TIMEOUT = 15.0
SERVER_CPU = 0  # the server gets one core, the load generator the other

BARE_AIOHTTP = """
import sys
from pathlib import Path
from aiohttp import web

body = Path(sys.argv[2]).read_bytes()

async def jwks(request):
    return web.Response(body=body, content_type="application/json")

app = web.Application()
app.router.add_get("/jwks.json", jwks)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


@dataclass(frozen=True)
class Result:
    requests_per_s: float
    p99_ms: float
    requests: int
    cpu_us_per_request: float = float("nan")  # server CPU time (user + system) per request


@dataclass(frozen=True)
class Contender:
    name: str
    command: Callable[[int], list[str]]


def contenders(body_dir: Path) -> list[Contender]:
    python = sys.executable
    return [
        Contender(
            "devtunnel",
            lambda port: [python, "-m", "devtunnel", "serve", "--port", str(port), "--path", PATH],
        ),
        Contender(
            "bare aiohttp",
            lambda port: [python, "-c", BARE_AIOHTTP, str(port), str(body_dir / "jwks.json")],
        ),
        Contender(
            "http.server",
            lambda port: [
                *(python, "-m", "http.server", "--bind", "127.0.0.1"),
                *("--directory", str(body_dir), str(port)),
            ],
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--python-client", action="store_true", help="do not use wrk")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions per request (valgrind)"
    )
    args = parser.parse_args()

    private = ec.generate_private_key(ec.SECP256R1())
    pair = KeyPair(private.public_key(), private, "ES256", PARTNER_ID, PARTNER_ID)
    env = {
        **os.environ,
        "NEXT_PUBLIC_PARTNER_ID": PARTNER_ID,
        "PARTNER_PRIVATE_KEY": private_pem(private),
    }
    if args.instructions:
        return count_instructions(pair, env)
    wrk = None if args.python_client else shutil.which("wrk")
    client = f"wrk, 1 thread, {args.connections} connections" if wrk else "Python client"
    print(f"load: {client}; {args.rounds} rounds of {args.duration:g} s; {os.cpu_count()} CPUs")

    results: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        body_dir = Path(tmp)
        (body_dir / "jwks.json").write_bytes(render_keys([pair]))
        field = contenders(body_dir)
        for round_number in range(args.rounds):
            # Rotate the order, so no server always runs first or last.
            shift = round_number % len(field)
            for contender in field[shift:] + field[:shift]:
                result = run_one(contender, env, wrk, args.duration, args.connections)
                results.setdefault(contender.name, []).append(result)
                print(
                    f"  round {round_number + 1} {contender.name:13} "
                    f"{result.requests_per_s:9.0f} req/s  p99 {result.p99_ms:6.2f} ms"
                    f"  cpu {result.cpu_us_per_request:5.1f} us/req",
                    flush=True,
                )

    report(results)
    return 0


def run_one(
    contender: Contender, env: dict[str, str], wrk: str | None, duration: float, connections: int
) -> Result:
    port = free_port()
    server = subprocess.Popen(
        contender.command(port), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        pin(server.pid, {SERVER_CPU})
        wait_listening(port)
        url = f"http://127.0.0.1:{port}{PATH}"
        cpu_before = cpu_seconds(server.pid)
        if wrk:
            result = run_wrk(wrk, url, duration, connections)
        else:
            result = run_python_client(port, duration, connections)
        cpu = cpu_seconds(server.pid) - cpu_before
        return dataclasses.replace(result, cpu_us_per_request=cpu * 1e6 / result.requests)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_wrk(wrk: str, url: str, duration: float, connections: int) -> Result:
    command = [wrk, "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if rate is None or p99 is None or total is None or errors is not None:
        raise SystemExit(f"wrk output not understood or errors seen:\n{output}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return Result(float(rate.group(1)), float(p99.group(1)) * scale, int(total.group(1)))


# The Python load generator: processes of asyncio clients over raw keep-alive sockets.


def run_python_client(port: int, duration: float, connections: int) -> Result:
    workers = max(1, (os.cpu_count() or 2) - 1)
    per_worker = max(1, connections // workers)
    with multiprocessing.Pool(workers) as pool:
        parts = pool.starmap(_client_process, [(port, duration, per_worker)] * workers)
    count = sum(done for done, _ in parts)
    latencies = sorted(latency for _, sample in parts for latency in sample)
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else float("nan")
    return Result(count / duration, p99 * 1000, count)


def _client_process(port: int, duration: float, connections: int) -> tuple[int, list[float]]:
    pin(os.getpid(), set(range(os.cpu_count() or 1)) - {SERVER_CPU} or {SERVER_CPU})
    return asyncio.run(_client_load(port, duration, connections))


async def _client_load(port: int, duration: float, connections: int) -> tuple[int, list[float]]:
    deadline = time.perf_counter() + duration
    latencies: list[float] = []
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: bench\r\n\r\n"

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (start := time.perf_counter()) < deadline:
            writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if length is None:
                raise SystemExit(f"no Content-Length in {head!r}")
            await reader.readexactly(int(length.group(1)))
            latencies.append(time.perf_counter() - start)
            # http.server speaks HTTP/1.0 and closes after each response: reconnect.
            if head.startswith(b"HTTP/1.0") or b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return len(latencies), latencies


# Helpers


def report(results: dict[str, list[Result]]) -> None:
    rate = {
        name: statistics.median(r.requests_per_s for r in runs) for name, runs in results.items()
    }
    p99 = {name: statistics.median(r.p99_ms for r in runs) for name, runs in results.items()}
    cpu = {
        name: statistics.median(r.cpu_us_per_request for r in runs)
        for name, runs in results.items()
    }
    print("\nmedian over rounds")
    print(f"  {'server':13} {'req/s':>9} {'p99 ms':>8} {'cpu us/req':>11}")
    for name in results:
        print(f"  {name:13} {rate[name]:9.0f} {p99[name]:8.2f} {cpu[name]:11.1f}")
    print(
        f"  CPU per request, bare aiohttp / devtunnel: "
        f"{cpu['bare aiohttp'] / cpu['devtunnel']:.2f}x (1.00x: as cheap as the bare handler)"
    )
    # A ratio within one round cancels the noise that drifts between rounds (shared VMs).
    for other in ("bare aiohttp", "http.server"):
        paired = [
            ours.requests_per_s / theirs.requests_per_s
            for ours, theirs in zip(results["devtunnel"], results[other], strict=True)
        ]
        print(
            f"  devtunnel / {other}: {statistics.median(paired):.2f}x "
            f"(median of per-round ratios; range {min(paired):.2f} to {max(paired):.2f})"
        )


# Instructions per request, under callgrind.

CALLGRIND_REQUESTS = 2000
CALLGRIND_START_TIMEOUT = 300.0  # python under valgrind starts some 50 times slower


def count_instructions(pair: KeyPair, env: dict[str, str]) -> int:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind: apt-get install valgrind")
    counts: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        body_dir = Path(tmp)
        (body_dir / "jwks.json").write_bytes(render_keys([pair]))
        for contender in contenders(body_dir)[:2]:  # devtunnel and the bare handler
            idle = callgrind_total(valgrind, contender, env, 0, body_dir)
            busy = callgrind_total(valgrind, contender, env, CALLGRIND_REQUESTS, body_dir)
            counts[contender.name] = (busy - idle) / CALLGRIND_REQUESTS
            print(f"  {contender.name:13} {counts[contender.name]:11,.0f} instructions/request")
    ratio = counts["bare aiohttp"] / counts["devtunnel"]
    print(f"  bare aiohttp / devtunnel: {ratio:.2f}x (as a throughput ratio: devtunnel reaches")
    print(f"  {ratio:.2f}x the bare handler's requests/s wherever instructions are the limit)")
    return 0


def callgrind_total(
    valgrind: str, contender: Contender, env: dict[str, str], requests: int, scratch: Path
) -> int:
    """All instructions of one server run that answers `requests` GETs, start and stop included."""
    port = free_port()
    out = scratch / f"callgrind.{port}"
    command = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}"]
    server = subprocess.Popen(
        [*command, *contender.command(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_listening(port, CALLGRIND_START_TIMEOUT)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(requests):
        connection.request("GET", PATH, headers={"User-Agent": "bench"})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"{contender.name} answered {response.status}")
    connection.close()
    server.send_signal(signal.SIGINT)
    _, log = server.communicate(timeout=CALLGRIND_START_TIMEOUT)
    total = re.search(r"Collected : (\d+)", log)
    if total is None:
        raise SystemExit(f"callgrind reported no total for {contender.name}:\n{log}")
    return int(total.group(1))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc): time stolen by the host is not in it,
    so CPU per request drifts less than requests per second on a shared VM."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listened on port {port} within {timeout:g} s")


def pin(pid: int, cpus: set[int]) -> None:
    # Linux only; elsewhere the scheduler decides and the figures are noisier.
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(pid, cpus)


if __name__ == "__main__":
    sys.exit(main())
