"""Atomic writes and backups: nothing half-written, no key lost, no temp file left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from devtunnel.files import PRIVATE_MODE, atomic_write, backup


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_writes_the_bytes_with_the_mode(isolated: Path) -> None:
    path = isolated / "jwks.json"

    atomic_write(path, b"first")
    atomic_write(path, b"second", PRIVATE_MODE)

    assert path.read_bytes() == b"second"
    assert mode(path) == PRIVATE_MODE
    assert [p.name for p in isolated.iterdir()] == ["jwks.json"]


def test_a_failed_replace_leaves_the_old_file_and_no_temp_file(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = isolated / "jwks.json"
    path.write_bytes(b"old")

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, b"new")

    assert path.read_bytes() == b"old"
    assert [p.name for p in isolated.iterdir()] == ["jwks.json"]


def test_an_interrupted_write_leaves_no_temp_file(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(isolated / "out", b"data")

    assert list(isolated.iterdir()) == []


def test_backup_keeps_every_older_copy(isolated: Path) -> None:
    path = isolated / ".env.local"
    for generation in ("one", "two", "three"):
        path.write_text(generation)
        assert backup(path) == isolated / ".env.local.bak"

    assert (isolated / ".env.local.bak").read_text() == "three"
    assert (isolated / ".env.local.bak.1").read_text() == "one"
    assert (isolated / ".env.local.bak.2").read_text() == "two"
    assert mode(isolated / ".env.local.bak") == PRIVATE_MODE
    assert path.read_text() == "three"
