"""Atomic writes, backups and the keygen writers: nothing half-written, no key lost."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from dotenv.parser import parse_stream

from devtunnel.config import KeyOptions, resolve_settings
from devtunnel.errors import ConfigError
from devtunnel.files import PRIVATE_MODE, atomic_write, backup, write_env_keys, write_pem_files
from devtunnel.keys import generate_private_key, load_keypair, same_public_key


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


# keygen into an env file

OTHER_LINES = (
    "# app settings, kept as they are\n"
    "NEXT_PUBLIC_PARTNER_ID=partner-7\n"
    "\n"
    'CERT="-----BEGIN CERTIFICATE-----\n'
    "MIIBxTCCAWugAwIBAgIUX\n"
    '-----END CERTIFICATE-----"\n'
    "export  SPACED = 'value with spaces'   # trailing comment\n"
    "not a binding line\n"
    "LAST=no-newline"
)


def env_values(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    return {b.key: b.value or "" for b in parse_stream(io.StringIO(text)) if b.key}


def test_write_env_keys_keeps_every_other_line_byte_for_byte(
    isolated: Path, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    path = isolated / ".env.local"
    path.write_text(OTHER_LINES, encoding="utf-8")

    written = write_env_keys(path, ec_private)

    text = path.read_text(encoding="utf-8")
    assert text.startswith(OTHER_LINES + "\n")
    added = text.removeprefix(OTHER_LINES + "\n").splitlines()
    assert [line.split("=", 1)[0] for line in added] == [
        "PARTNER_PRIVATE_KEY",
        "PARTNER_PUBLIC_KEY",
        "SIGNING_ALGORITHM",
    ]
    assert written.files == (path,)
    assert written.backups == ()
    assert mode(path) == 0o600


def test_write_env_keys_replaces_key_lines_in_place(
    isolated: Path, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    path = isolated / ".env.local"
    path.write_text(
        "A=1\nPARTNER_PRIVATE_KEY=\nB=2\nSIGNING_ALGORITHM=RS256\nPARTNER_PRIVATE_KEY=\nC=3\n",
        encoding="utf-8",
    )

    write_env_keys(path, ec_private)

    names = [line.split("=", 1)[0] for line in path.read_text().splitlines()]
    assert names == [
        "A",
        "PARTNER_PRIVATE_KEY",
        "B",
        "SIGNING_ALGORITHM",
        "C",
        "PARTNER_PUBLIC_KEY",
    ]
    assert env_values(path)["SIGNING_ALGORITHM"] == "ES256"


def test_the_written_env_file_loads_back_to_a_working_pair(
    isolated: Path, rsa_private: rsa.RSAPrivateKey
) -> None:
    write_env_keys(isolated / ".env.local", rsa_private)

    pair = load_keypair(resolve_settings(KeyOptions()), need_private=True)

    assert pair.alg == "RS256"
    assert pair.private is not None
    assert same_public_key(pair.public, rsa_private.public_key())


def test_write_env_keys_refuses_to_replace_a_key_and_leaves_the_file_untouched(
    isolated: Path, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    path = isolated / ".env.local"
    path.write_text("X=1\nPARTNER_PUBLIC_KEY=abc\n", encoding="utf-8")
    path.chmod(0o640)

    with pytest.raises(ConfigError) as raised:
        write_env_keys(path, ec_private)

    assert raised.value.source == f"PARTNER_PUBLIC_KEY in {path}"
    assert raised.value.fault == "already holds a key"
    assert "--force" in raised.value.hint
    assert path.read_text(encoding="utf-8") == "X=1\nPARTNER_PUBLIC_KEY=abc\n"
    assert mode(path) == 0o640
    assert sorted(p.name for p in isolated.iterdir()) == [".env.local"]


def test_force_keeps_the_old_keys_in_a_backup_and_never_loses_an_older_one(
    isolated: Path,
) -> None:
    path = isolated / ".env.local"
    first, second, third = (generate_private_key() for _ in range(3))
    write_env_keys(path, first)
    first_text = path.read_text()

    written = write_env_keys(path, second, force=True)
    second_text = path.read_text()
    write_env_keys(path, third, force=True)

    bak = isolated / ".env.local.bak"
    assert written.backups == (bak,)
    assert bak.read_text() == second_text
    assert (isolated / ".env.local.bak.1").read_text() == first_text
    assert mode(bak) == 0o600
    pair = load_keypair(resolve_settings(KeyOptions()), need_private=True)
    assert same_public_key(pair.public, third.public_key())


def test_write_pem_files_writes_a_private_and_a_public_pem(
    isolated: Path, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    out = isolated / "keys" / "dev"

    written = write_pem_files(out, ec_private)

    private, public = out / "private.pem", out / "public.pem"
    assert written.files == (private, public)
    assert mode(private) == 0o600
    assert mode(public) == 0o644
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----\n")
    settings = resolve_settings(KeyOptions(private_key=private, public_key=public))
    assert same_public_key(load_keypair(settings).public, ec_private.public_key())


def test_write_pem_files_refuses_existing_files_unless_forced(
    isolated: Path, ec_private: ec.EllipticCurvePrivateKey, rsa_private: rsa.RSAPrivateKey
) -> None:
    write_pem_files(isolated, ec_private)
    before = (isolated / "private.pem").read_bytes()

    with pytest.raises(ConfigError) as raised:
        write_pem_files(isolated, rsa_private)
    assert raised.value.fault == "already has private.pem"
    assert (isolated / "private.pem").read_bytes() == before

    written = write_pem_files(isolated, rsa_private, force=True)
    assert written.backups == (isolated / "private.pem.bak", isolated / "public.pem.bak")
    assert (isolated / "private.pem.bak").read_bytes() == before
    assert "BEGIN PRIVATE KEY" in (isolated / "private.pem").read_text()


def test_write_pem_files_names_a_folder_it_cannot_create(
    isolated: Path, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    (isolated / "file").write_text("x")
    with pytest.raises(ConfigError) as raised:
        write_pem_files(isolated / "file" / "keys", ec_private)
    assert raised.value.source == f"--out {isolated / 'file' / 'keys'}"
    assert raised.value.fault.startswith("cannot be created (")
    assert raised.value.hint


def test_write_env_keys_refuses_a_file_that_is_not_utf8(
    isolated: Path, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    path = isolated / ".env.local"
    path.write_bytes(b"A=\xff\n")

    with pytest.raises(ConfigError) as raised:
        write_env_keys(path, ec_private)

    assert (raised.value.source, raised.value.fault) == (str(path), "is not UTF-8 text")
    assert path.read_bytes() == b"A=\xff\n"


def test_write_env_keys_names_a_file_it_cannot_read(
    isolated: Path, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    (isolated / "dir.env").mkdir()
    with pytest.raises(ConfigError) as raised:
        write_env_keys(isolated / "dir.env", ec_private)
    assert raised.value.fault == "cannot be read (Is a directory)"
