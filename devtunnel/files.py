"""Write files so that nothing is ever half-written and no key is lost."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE_MODE = 0o600


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` in one step: a temp file beside it, fsync, rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def backup(path: Path) -> Path:
    """Copy `path` to `<path>.bak` (0600); an older `.bak` moves to `.bak.N` first, never lost."""
    target = path.with_name(path.name + ".bak")
    if target.exists():
        n = 1
        while target.with_name(f"{target.name}.{n}").exists():
            n += 1
        os.replace(target, target.with_name(f"{target.name}.{n}"))
    atomic_write(target, path.read_bytes(), PRIVATE_MODE)
    return target
