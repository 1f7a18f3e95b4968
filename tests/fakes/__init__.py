"""Test doubles. The fake agents stand in for ngrok and cloudflared as real executables.

`install_agent` writes an executable named like the real binary (`ngrok`, `cloudflared`)
into a directory: a `#!<this interpreter>` script that runs the fake with its settings
(TLS file, record file, failure mode) in the environment variables the fake reads.
"""

from __future__ import annotations

import json
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parents[2]
MODULES = {"ngrok": "tests.fakes.fake_ngrok", "cloudflared": "tests.fakes.fake_cloudflared"}


@dataclass(frozen=True)
class FakeAgent:
    """An installed fake agent: its executable and the file where it records what it saw."""

    path: Path
    record: Path

    def seen(self) -> dict[str, Any]:
        """What the last run of the agent recorded: argv, pid, environment facts, requests."""
        data: dict[str, Any] = json.loads(self.record.read_text(encoding="utf-8"))
        return data


def install_agent(binary: str, directory: Path, *, tls_file: Path, mode: str = "") -> FakeAgent:
    """Write the fake `binary` ("ngrok" or "cloudflared") into `directory` as an executable."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / binary
    record = directory / f"{binary}.record.json"
    settings = {
        "FAKE_AGENT_TLS": str(tls_file),
        "FAKE_AGENT_RECORD": str(record),
        "FAKE_AGENT_MODE": mode,
    }
    path.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"sys.path.insert(0, {str(REPO_DIR)!r})\n"
        f"os.environ.update({settings!r})\n"
        f"from {MODULES[binary]} import main\n"
        "sys.exit(main())\n",
        encoding="utf-8",
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return FakeAgent(path, record)
