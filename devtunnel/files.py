"""Write files so that nothing is ever half-written and no key is lost.

The atomic write and the backup, and on them the keygen writers: key variables set in an env
file (every other line kept as it was), or a private.pem and public.pem pair.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dotenv.parser import parse_stream

from devtunnel.config import ALG_VAR, PRIVATE_KEY_VAR, PUBLIC_KEY_VAR
from devtunnel.errors import ConfigError
from devtunnel.keys import PrivateKey, alg_of, private_pem, public_pem

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


@dataclass(frozen=True)
class Written:
    """What keygen wrote: the files, and the backups of what they replaced."""

    files: tuple[Path, ...]
    backups: tuple[Path, ...]


def write_env_keys(path: Path, private: PrivateKey, *, force: bool = False) -> Written:
    """Set the key variables in an env file, keeping every other line exactly as it was.

    Refuses to replace existing keys unless `force`; then the old file is kept
    as `<file>.bak`. The file is replaced atomically and left mode 0600.
    """
    original = _read_env_text(path)
    # New lines follow the file's own line ends, so a CRLF file stays CRLF.
    newline = "\r\n" if re.match(r"[^\n]*\r\n", original) else "\n"
    new_values = {
        PRIVATE_KEY_VAR: _env_quote(private_pem(private)),
        PUBLIC_KEY_VAR: _env_quote(public_pem(private.public_key())),
        ALG_VAR: alg_of(private),
    }

    kept: list[str] = []
    seen: set[str] = set()
    replaces_key = False
    for binding in parse_stream(io.StringIO(original)):
        key = binding.key
        if key not in new_values:
            kept.append(binding.original.string)
            continue
        if key in (PRIVATE_KEY_VAR, PUBLIC_KEY_VAR) and (binding.value or "").strip():
            if not force:
                raise ConfigError(
                    f"{key} in {path}",
                    "already holds a key",
                    f"pass --force to replace it (the old file is kept as {path.name}.bak)",
                )
            replaces_key = True
        if key not in seen:
            kept.append(f"{key}={new_values[key]}{newline}")
            seen.add(key)

    if kept and not kept[-1].endswith(("\n", "\r")):
        kept[-1] += newline
    kept.extend(f"{key}={value}{newline}" for key, value in new_values.items() if key not in seen)

    backups = (backup(path),) if replaces_key else ()
    try:
        atomic_write(path, "".join(kept).encode("utf-8"), PRIVATE_MODE)
    except OSError as exc:
        raise ConfigError(
            str(path), f"cannot be written ({exc.strerror})", "check that its folder exists"
        ) from None
    return Written((path,), backups)


def write_pem_files(directory: Path, private: PrivateKey, *, force: bool = False) -> Written:
    """Write `private.pem` (0600) and `public.pem` into a directory; `force` keeps `.bak` copies."""
    private_path, public_path = directory / "private.pem", directory / "public.pem"
    existing = [p for p in (private_path, public_path) if p.exists()]
    if existing and not force:
        raise ConfigError(
            f"--out {directory}",
            f"already has {existing[0].name}",
            "pass --force to replace it (the old file is kept as .bak)",
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"--out {directory}",
            f"cannot be created ({exc.strerror})",
            "give a folder you can write to",
        ) from None
    backups = tuple(backup(p) for p in existing)
    atomic_write(private_path, private_pem(private).encode("ascii"), PRIVATE_MODE)
    atomic_write(public_path, public_pem(private.public_key()).encode("ascii"), 0o644)
    return Written((private_path, public_path), backups)


def _read_env_text(path: Path) -> str:
    # Bytes, not read_text(): universal newlines would turn the file's CRLF into LF.
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError:
        raise ConfigError(str(path), "is not UTF-8 text", "save the env file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(
            str(path), f"cannot be read ({exc.strerror})", "check the --env-file path"
        ) from None


def _env_quote(pem: str) -> str:
    # One line with literal \n escapes, double-quoted: what AIR's examples and Next.js read.
    return '"' + pem.strip().replace("\n", "\\n") + '"'
