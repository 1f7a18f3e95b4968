"""Where settings come from: flags, then the process environment, then .env files."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from devtunnel.config import KeyOptions, read_env_file, resolve_settings
from devtunnel.errors import ConfigError
from devtunnel.keys import load_keypair, private_pem, same_public_key
from tests.keyformats import env_lines


def test_flags_win_over_the_environment_which_wins_over_files(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated / ".env.local").write_text("PARTNER_ID=from-file\nSIGNING_ALGORITHM=RS256\n")
    monkeypatch.setenv("PARTNER_ID", "from-env")

    from_env = resolve_settings(KeyOptions())
    from_flag = resolve_settings(KeyOptions(partner_id="from-flag", alg="ES256"))

    assert from_env.partner_id is not None and from_env.alg is not None
    assert (from_env.partner_id.text, from_env.partner_id.source) == (
        "from-env",
        "PARTNER_ID (environment)",
    )
    assert (from_env.alg.text, from_env.alg.source) == ("RS256", "SIGNING_ALGORITHM in .env.local")
    assert from_flag.partner_id is not None and from_flag.alg is not None
    assert (from_flag.partner_id.text, from_flag.partner_id.source) == ("from-flag", "--partner-id")
    assert (from_flag.alg.text, from_flag.alg.source) == ("ES256", "--alg")


def test_env_local_wins_over_env(isolated: Path) -> None:
    (isolated / ".env").write_text("PARTNER_ID=base\nSIGNING_ALGORITHM=ES256\n")
    (isolated / ".env.local").write_text("PARTNER_ID=local\n")

    settings = resolve_settings(KeyOptions())

    assert settings.partner_id is not None and settings.alg is not None
    assert settings.partner_id.source == "PARTNER_ID in .env.local"
    assert settings.partner_id.text == "local"
    assert settings.partner_id.path == isolated / ".env.local"
    assert settings.alg.source == "SIGNING_ALGORITHM in .env"


def test_env_file_flags_replace_the_default_files_and_the_later_wins(isolated: Path) -> None:
    (isolated / ".env.local").write_text("PARTNER_ID=ignored\nSIGNING_ALGORITHM=RS256\n")
    (isolated / "a.env").write_text("PARTNER_ID=from-a\nSIGNING_ALGORITHM=ES256\n")
    (isolated / "b.env").write_text("PARTNER_ID=from-b\n")

    settings = resolve_settings(KeyOptions(env_files=(Path("a.env"), Path("b.env"))))

    assert settings.partner_id is not None and settings.alg is not None
    assert settings.partner_id.source == "PARTNER_ID in b.env"
    assert settings.alg.source == "SIGNING_ALGORITHM in a.env"
    assert settings.env_files == (isolated / "a.env", isolated / "b.env")


def test_next_public_partner_id_wins_over_its_alias_in_one_place(isolated: Path) -> None:
    (isolated / ".env").write_text("PARTNER_ID=alias\nNEXT_PUBLIC_PARTNER_ID=main\n")
    settings = resolve_settings(KeyOptions())
    assert settings.partner_id is not None
    assert settings.partner_id.source == "NEXT_PUBLIC_PARTNER_ID in .env"

    (isolated / ".env").write_text("PARTNER_ID=alias\n")
    settings = resolve_settings(KeyOptions())
    assert settings.partner_id is not None
    assert (settings.partner_id.text, settings.partner_id.source) == ("alias", "PARTNER_ID in .env")


def test_an_empty_value_falls_through_to_the_next_source(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated / ".env").write_text("PARTNER_ID=from-env-file\n")
    (isolated / ".env.local").write_text('PARTNER_ID=""\n')
    monkeypatch.setenv("PARTNER_ID", "   ")

    settings = resolve_settings(KeyOptions(partner_id=" "))

    assert settings.partner_id is not None
    assert settings.partner_id.source == "PARTNER_ID in .env"


@pytest.mark.parametrize("line", list(env_lines("-----BEGIN X-----\nAA==\n-----END X-----\n")))
@pytest.mark.parametrize("name", [".env", ".env.local"])
def test_a_private_key_loads_from_each_env_file_however_it_is_written(
    isolated: Path, ec_private: ec.EllipticCurvePrivateKey, name: str, line: str
) -> None:
    value = env_lines(private_pem(ec_private))[line]
    (isolated / name).write_text(f"# keys\nPARTNER_PRIVATE_KEY={value}\n", encoding="utf-8")

    settings = resolve_settings(KeyOptions())
    pair = load_keypair(settings, need_private=True)

    assert same_public_key(pair.public, ec_private.public_key())
    assert pair.source == f"PARTNER_PRIVATE_KEY in {name}"


def test_crlf_env_files_load(isolated: Path, ec_private: ec.EllipticCurvePrivateKey) -> None:
    pem = private_pem(ec_private).strip()
    text = f'PARTNER_ID=p1\nPARTNER_PRIVATE_KEY="{pem}"\n'.replace("\n", "\r\n")
    (isolated / ".env.local").write_bytes(text.encode())

    settings = resolve_settings(KeyOptions())
    pair = load_keypair(settings, need_partner_id=True)

    assert pair.kid == "p1"
    assert same_public_key(pair.public, ec_private.public_key())


def test_key_files_are_read_and_watched(
    isolated: Path, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    (isolated / "keys").mkdir()
    (isolated / "keys" / "private.pem").write_text(private_pem(ec_private))

    settings = resolve_settings(KeyOptions(private_key=Path("keys/private.pem")))

    assert settings.private_key is not None
    assert settings.private_key.source == "--private-key keys/private.pem"
    assert settings.private_key.path == isolated / "keys" / "private.pem"
    assert settings.watch_paths() == (
        isolated / ".env",
        isolated / ".env.local",
        isolated / "keys" / "private.pem",
    )


def test_a_key_file_flag_wins_over_the_variable(
    isolated: Path, ec_private: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTNER_PRIVATE_KEY", "from the environment")
    (isolated / "k.pem").write_text(private_pem(ec_private))

    settings = resolve_settings(KeyOptions(private_key=isolated / "k.pem"))

    assert settings.private_key is not None
    assert settings.private_key.source == f"--private-key {isolated / 'k.pem'}"


def test_an_explicit_env_file_that_is_missing_is_named_by_its_flag() -> None:
    with pytest.raises(ConfigError) as raised:
        resolve_settings(KeyOptions(env_files=(Path("missing.env"),)))
    assert (raised.value.source, raised.value.fault) == (
        "--env-file missing.env",
        "no such env file",
    )


def test_a_missing_default_env_file_is_skipped(isolated: Path) -> None:
    settings = resolve_settings(KeyOptions())
    assert settings.partner_id is None
    assert settings.env_files == (isolated / ".env", isolated / ".env.local")


def test_an_env_file_that_is_not_utf8_is_named(isolated: Path) -> None:
    (isolated / ".env").write_bytes(b"PARTNER_ID=\xff\xfe\n")
    with pytest.raises(ConfigError) as raised:
        resolve_settings(KeyOptions())
    assert (raised.value.source, raised.value.fault) == (".env", "is not UTF-8 text")


def test_an_unreadable_env_file_is_named(isolated: Path) -> None:
    (isolated / "dir.env").mkdir()
    with pytest.raises(ConfigError) as raised:
        read_env_file(isolated / "dir.env")
    assert raised.value.source == str(isolated / "dir.env")
    assert raised.value.fault.startswith("cannot be read (")


def test_unparsable_env_lines_are_skipped(isolated: Path) -> None:
    (isolated / ".env").write_text("this is not a binding\nPARTNER_ID=p\nOTHER='broken\n")
    assert read_env_file(isolated / ".env") == {"PARTNER_ID": "p"}


def test_a_half_written_key_line_keeps_its_raw_value(isolated: Path) -> None:
    (isolated / ".env").write_text(
        'A=1\nexport PARTNER_PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\\nMIGH  \nB=2\n'
    )
    assert read_env_file(isolated / ".env") == {
        "A": "1",
        "PARTNER_PRIVATE_KEY": '"-----BEGIN PRIVATE KEY-----\\nMIGH',
        "B": "2",
    }


@pytest.mark.parametrize(
    ("make", "fault"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is not a PEM text file"),
        (lambda p: p.write_bytes(b"\x30\x82\xff\xff"), "is not a PEM text file"),
    ],
)
def test_a_bad_key_file_is_named_by_its_flag(isolated: Path, make: object, fault: str) -> None:
    make(isolated / "key.pem")  # type: ignore[operator]
    with pytest.raises(ConfigError) as raised:
        resolve_settings(KeyOptions(public_key=Path("key.pem")))
    assert (raised.value.source, raised.value.fault) == ("--public-key key.pem", fault)


def test_an_unreadable_key_file_is_named_with_the_reason(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated / "key.pem").write_text("x")

    def refuse(self: Path, encoding: str | None = None) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(ConfigError) as raised:
        resolve_settings(KeyOptions(private_key=Path("key.pem")))
    assert raised.value.source == "--private-key key.pem"
    assert raised.value.fault == "cannot be read (Permission denied)"
