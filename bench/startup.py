"""Start-up time: launch of `devtunnel up --json` → its `ready` line, and `devtunnel --help`.

`up` runs in a scratch directory holding an `.env.local` with an ES256 key, each run
with its own HOME, either with `--tunnel none` or through the fake ngrok agent of
tests/fakes (the real pyngrok code path; the agent is a Python script, HTTPS from a
test CA). Both `python -m devtunnel` and the `devtunnel` console script are timed.
Bytecode caches are on (in a scratch PYTHONPYCACHEPREFIX, filled by an untimed first
round), as for an installed devtunnel, even where PYTHONDONTWRITEBYTECODE is set.

Baselines, measured in the same run and interleaved round by round with the rest:
`python -c pass` (a bare interpreter) and `python -c "import aiohttp"` (the floor of
any aiohttp server). Targets: `ready` under 1.5 s, `--help` under 0.3 s.

    .venv/bin/python bench/startup.py [--runs 10] [--help-runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import percentile  # noqa: E402

from tests.fakes import env_text, install_ngrok_with_ca  # noqa: E402

PYTHON = sys.executable
SCRIPT = str(Path(PYTHON).with_name("devtunnel"))
READY_TARGET_S = 1.5
HELP_TARGET_S = 0.3
TIMEOUT_S = 30.0


class Scratch:
    """A project directory with a key, a trusted test CA and an installed fake ngrok."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.project = root / "project"
        self.project.mkdir()
        key = ec.generate_private_key(ec.SECP256R1())
        (self.project / ".env.local").write_text(env_text(key, "bench-partner"))
        self.agent, self.ca_file = install_ngrok_with_ca(root)
        self._homes = 0

    def env(self) -> dict[str, str]:
        """One run's environment: its own HOME, bytecode caches, the test CA, a dummy authtoken."""
        self._homes += 1
        home = self.root / f"home-{self._homes}"
        home.mkdir()
        env = {
            **os.environ,
            "HOME": str(home),
            "PYTHONPYCACHEPREFIX": str(self.root / "pycache"),
            "SSL_CERT_FILE": str(self.ca_file),
            "NGROK_AUTHTOKEN": "bench-not-a-real-token",
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        return env


def time_exit(command: list[str], scratch: Scratch) -> float:
    """Seconds from launch to exit of `command` (output discarded; it must succeed)."""
    start = time.perf_counter()
    subprocess.run(
        command,
        cwd=scratch.project,
        env=scratch.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )  # no timeout: with one, Popen.wait polls in steps of up to 50 ms
    return time.perf_counter() - start


def time_ready(command: list[str], scratch: Scratch) -> float:
    """Seconds from launch of `command` (an `up --json`) to its `ready` line; then stop it."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command,
        cwd=scratch.project,
        env=scratch.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if json.loads(line)["event"] == "ready":
                return time.perf_counter() - start
        raise RuntimeError(f"{command} ended before `ready` (exit {proc.wait()})")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def up_args(scratch: Scratch, tunnel: str) -> list[str]:
    args = ["up", "--json", "--port", "0", "--interval", "3600"]
    if tunnel == "none":
        return [*args, "--tunnel", "none"]
    return [*args, "--ngrok-path", str(scratch.agent.path)]


def variants(scratch: Scratch) -> dict[str, Callable[[], float]]:
    module = [PYTHON, "-m", "devtunnel"]
    return {
        "python -c pass": lambda: time_exit([PYTHON, "-c", "pass"], scratch),
        "python -c 'import aiohttp'": lambda: time_exit([PYTHON, "-c", "import aiohttp"], scratch),
        "-m devtunnel --help": lambda: time_exit([*module, "--help"], scratch),
        "devtunnel --help": lambda: time_exit([SCRIPT, "--help"], scratch),
        "-m devtunnel up, none": lambda: time_ready([*module, *up_args(scratch, "none")], scratch),
        "devtunnel up, none": lambda: time_ready([SCRIPT, *up_args(scratch, "none")], scratch),
        "-m devtunnel up, ngrok": lambda: time_ready(
            [*module, *up_args(scratch, "ngrok")], scratch
        ),
        "devtunnel up, ngrok": lambda: time_ready([SCRIPT, *up_args(scratch, "ngrok")], scratch),
    }


def measure(runs: int, help_runs: int) -> dict[str, list[float]]:
    """Interleaved rounds: every variant once per round, so drift hits all alike."""
    with tempfile.TemporaryDirectory(prefix="devtunnel-bench-") as root:
        scratch = Scratch(Path(root))
        todo = variants(scratch)
        times: dict[str, list[float]] = {name: [] for name in todo}
        for name in todo:  # warm the page cache and .pyc files; not counted
            todo[name]()
        for round_ in range(max(runs, help_runs)):
            for name, run in todo.items():
                wanted = runs if " up" in name else help_runs
                if round_ < wanted:
                    times[name].append(run() * 1000)
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each `up` (default 10)")
    parser.add_argument("--help-runs", type=int, default=20, help="runs of the others")
    args = parser.parse_args()

    times = measure(args.runs, args.help_runs)
    bare = statistics.median(times["python -c pass"])
    aio = statistics.median(times["python -c 'import aiohttp'"])
    print(f"{'':<28} {'median':>9} {'p90':>9}   {'/ pass':>7} {'/ aiohttp':>9}   target")
    for name, values in times.items():
        median = statistics.median(values)
        p90 = percentile(values, 0.9)
        target = READY_TARGET_S if " up" in name else HELP_TARGET_S if "help" in name else None
        verdict = "" if target is None else ("met" if p90 < target * 1000 else "NOT met")
        limit = "" if target is None else f"< {target:g} s: {verdict}"
        print(
            f"{name:<28} {median:7.0f}ms {p90:7.0f}ms   {median / bare:6.2f}x {median / aio:8.2f}x"
            f"   {limit}  (n={len(values)})"
        )
    print("verdicts judge p90; ratios use medians")


if __name__ == "__main__":
    main()
