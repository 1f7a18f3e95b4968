"""Parsing keys in every accepted format, refusing the ones AIR cannot use, writing new ones."""

from __future__ import annotations

import base64
import io
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from dotenv.parser import parse_stream

from devtunnel.config import KeyOptions, Settings, Value, resolve_settings
from devtunnel.errors import ConfigError
from devtunnel.jwks import public_jwk
from devtunnel.keys import (
    KeyPair,
    generate_private_key,
    load_keypair,
    parse_private_key,
    parse_public_key,
    private_pem,
    public_pem,
    same_public_key,
    write_env_keys,
    write_pem_files,
)
from tests.keyformats import encodings, escaped, private_formats, public_formats

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@pytest.fixture(params=["rsa", "ec"])
def private_key(
    request: pytest.FixtureRequest,
    rsa_private: rsa.RSAPrivateKey,
    ec_private: ec.EllipticCurvePrivateKey,
) -> PrivateKey:
    return rsa_private if request.param == "rsa" else ec_private


def expected_jwk(key: PrivateKey) -> dict[str, str]:
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    return public_jwk(KeyPair(key.public_key(), key, alg, "p1", "p1"))


def jwk_from(settings: Settings) -> dict[str, str]:
    return public_jwk(load_keypair(settings, need_partner_id=True))


ENCODINGS = list(encodings("-----BEGIN X-----\nAA==\n-----END X-----\n"))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_private_format_and_encoding_gives_the_same_jwk(
    private_key: PrivateKey, encoding: str
) -> None:
    for fmt, pem in private_formats(private_key).items():
        value = Value(encodings(pem)[encoding], f"{fmt}/{encoding}")
        settings = Settings(partner_id=Value("p1", "--partner-id"), private_key=value)
        assert jwk_from(settings) == expected_jwk(private_key), fmt


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_public_format_and_encoding_gives_the_same_jwk(
    private_key: PrivateKey, encoding: str
) -> None:
    for fmt, pem in public_formats(private_key).items():
        value = Value(encodings(pem)[encoding], f"{fmt}/{encoding}")
        settings = Settings(partner_id=Value("p1", "--partner-id"), public_key=value)
        assert jwk_from(settings) == expected_jwk(private_key), fmt


def test_alg_is_inferred_from_the_key(
    rsa_private: rsa.RSAPrivateKey, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    for key, alg in ((rsa_private, "RS256"), (ec_private, "ES256")):
        pair = load_keypair(Settings(private_key=Value(private_pem(key), "test")))
        assert pair.alg == alg
        assert pair.kid == "devtunnel-local"
        assert pair.partner_id is None


def test_signing_algorithm_is_read_case_insensitively(
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    settings = Settings(
        alg=Value(" es256 ", "SIGNING_ALGORITHM (environment)"),
        private_key=Value(private_pem(ec_private), "test"),
    )
    assert load_keypair(settings).alg == "ES256"


def test_matching_private_and_public_keys_load_as_one_pair(
    rsa_private: rsa.RSAPrivateKey,
) -> None:
    settings = Settings(
        private_key=Value(escaped(private_pem(rsa_private)), "PARTNER_PRIVATE_KEY in .env.local"),
        public_key=Value(public_pem(rsa_private.public_key()), "PARTNER_PUBLIC_KEY in .env.local"),
    )
    pair = load_keypair(settings, need_private=True)
    assert pair.private is not None
    assert same_public_key(pair.public, rsa_private.public_key())
    assert pair.source == "PARTNER_PRIVATE_KEY in .env.local"


def test_a_public_key_alone_serves_but_cannot_sign(ec_private: ec.EllipticCurvePrivateKey) -> None:
    settings = Settings(public_key=Value(public_pem(ec_private.public_key()), "--public-key p"))
    pair = load_keypair(settings)
    assert pair.private is None
    assert pair.source == "--public-key p"

    with pytest.raises(ConfigError) as raised:
        load_keypair(settings, need_private=True)
    assert raised.value.source == "PARTNER_PRIVATE_KEY"
    assert "signing needs the private key" in raised.value.fault


def test_no_key_makes_an_ephemeral_one_only_when_allowed() -> None:
    with pytest.raises(ConfigError) as raised:
        load_keypair(Settings())
    assert "not set" in raised.value.fault
    assert "devtunnel keygen" in raised.value.hint

    pair = load_keypair(Settings(alg=Value("RS256", "--alg")), ephemeral_ok=True)
    assert pair.ephemeral
    assert pair.alg == "RS256"
    assert pair.source == "ephemeral key (in memory)"
    assert load_keypair(Settings(), ephemeral_ok=True).alg == "ES256"


def test_partner_id_is_unquoted_and_becomes_the_kid(ec_private: ec.EllipticCurvePrivateKey) -> None:
    settings = Settings(
        partner_id=Value('"abc-123"', "PARTNER_ID in .env"),
        private_key=Value(private_pem(ec_private), "test"),
    )
    pair = load_keypair(settings, need_partner_id=True)
    assert (pair.kid, pair.partner_id) == ("abc-123", "abc-123")


def test_a_dsa_public_key_is_named_as_such_not_as_a_private_key() -> None:
    # Refused for its type, whatever its size; 1024 bits keeps the test fast.
    key = dsa.generate_private_key(key_size=1024).public_key()  # noqa: S505
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ConfigError) as raised:
        parse_public_key(Value(pem.decode(), "PARTNER_PUBLIC_KEY (environment)"))
    assert raised.value.fault.startswith("is a key of type DSA; AIR accepts RS256")


def test_a_certificate_body_without_pem_lines_is_named_a_certificate(
    server_cert: object,
) -> None:
    pem = server_cert.cert_chain_pems[0].bytes().decode()  # type: ignore[attr-defined]
    cert_body = "".join(pem.strip().splitlines()[1:-1])
    with pytest.raises(ConfigError) as raised:
        parse_public_key(Value(cert_body, "PARTNER_PUBLIC_KEY (environment)"))
    assert raised.value.fault == "is a certificate, not a key"


def test_an_unknown_pem_label_is_named() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_private_key(
            Value("-----BEGIN DH PARAMETERS-----\nAA==\n-----END DH PARAMETERS-----", "t")
        )
    assert raised.value.fault == "holds a PEM DH PARAMETERS, not a key"


def test_a_broken_pem_header_is_named() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_private_key(Value("-----BEGIN private key-----\nAA==", "t"))
    assert raised.value.fault == "has a broken PEM header"


def test_generated_keys_are_what_air_accepts() -> None:
    ec_key = generate_private_key("ES256")
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey)
    assert isinstance(ec_key.curve, ec.SECP256R1)
    rsa_key = generate_private_key("RS256", 2048)
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    assert rsa_key.key_size == 2048


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


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


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


def test_a_pem_with_an_empty_body_is_empty() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_private_key(Value("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----", "t"))
    assert raised.value.fault == "is empty"


def test_an_encrypted_key_body_without_pem_lines_is_named_encrypted(
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    der = ec_private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(ConfigError) as raised:
        parse_private_key(Value(base64.b64encode(der).decode(), "t"))
    assert raised.value.fault == "is an encrypted private key"
