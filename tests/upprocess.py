"""Run `devtunnel up --json` as a real process and read its events."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Event = dict[str, Any]
WAIT_S = 20.0


class UpProcess:
    """`python -m devtunnel up --json ARGS` in `cwd`, its events parsed as they arrive."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devtunnel", "up", "--json", *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[Event] = []
        self.stdout_lines: list[str] = []
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._ended = False
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def stderr(self) -> str:
        """What the process wrote to stderr so far."""
        return "".join(self._stderr)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout_lines.append(line)
            self._queue.put(json.loads(line))
        self._queue.put(None)

    def wait_for(
        self, name: str, where: Callable[[Event], bool] = lambda _e: True, timeout: float = WAIT_S
    ) -> Event:
        """The next event called `name` that satisfies `where` (earlier others are kept)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {name!r} event within {timeout} s; saw {self.events}")
            try:
                event = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if event is None:
                self._ended = True
                raise AssertionError(f"devtunnel up ended before {name!r}; saw {self.events}")
            self.events.append(event)
            if event["event"] == name and where(event):
                return event

    def stop(self, signum: int = signal.SIGINT, timeout: float = WAIT_S) -> int:
        """Send `signum`, wait for the exit, collect the rest of the output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.wait(timeout)

    def wait(self, timeout: float = WAIT_S) -> int:
        """Wait for the process to end, then collect the rest of its output."""
        try:
            self.proc.wait(timeout)
        finally:
            self.kill()
            for reader in self._readers:
                reader.join(timeout)
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()
        while not self._ended and (event := self._queue.get()) is not None:
            self.events.append(event)
        self._ended = True
        return self.proc.returncode

    def kill(self) -> None:
        """End the process at once if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
