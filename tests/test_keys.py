"""Parsing keys in every accepted format, refusing the ones AIR cannot use, making new ones."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from devtunnel.config import Settings, Value
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
