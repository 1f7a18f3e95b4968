"""Parse, validate, derive and generate the Partner signing key pair.

AIR Kit verifies Partner JWTs signed RS256 (RSA, 2048 bits or more) or ES256
(EC P-256). Keys come as `.env` files hold them: a full PEM, or only its base64
body, with quotes, literal `\\n` escapes or CRLF line ends.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass
from typing import Literal, TypeAlias, cast, get_args

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from devtunnel.config import (
    ALG_VAR,
    PARTNER_ID_VARS,
    PRIVATE_KEY_VAR,
    Settings,
    Value,
)
from devtunnel.errors import ConfigError

logger = logging.getLogger(__name__)

Alg: TypeAlias = Literal["RS256", "ES256"]
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

ALGS: tuple[Alg, ...] = ("RS256", "ES256")
DEFAULT_ALG: Alg = "ES256"
DEFAULT_RSA_BITS = 2048
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
DEFAULT_KID = "devtunnel-local"

_PEM_RE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)(?:-----END ([A-Z0-9 ]+)-----|\Z)", re.DOTALL
)
# OpenSSL's legacy encrypted PEM: RFC 1421 headers before the base64 body.
_LEGACY_ENCRYPTED_RE = re.compile(r"^\s*Proc-Type:\s*4\s*,\s*ENCRYPTED", re.MULTILINE)
_PRIVATE_LABELS = {"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"}
_PUBLIC_LABELS = {"PUBLIC KEY", "RSA PUBLIC KEY"}
_KEYGEN_HINT = "run `devtunnel keygen` to make a valid pair"
_DECRYPT_HINT = "decrypt it: openssl pkey -in key.pem -out plain.pem"
_PUBLIC_TYPES: tuple[type, ...] = get_args(PublicKeyTypes)


@dataclass(frozen=True)
class KeyPair:
    """The key that signs Partner JWTs and what the JWKS publishes for it."""

    public: PublicKey
    private: PrivateKey | None
    alg: Alg
    kid: str
    partner_id: str | None
    ephemeral: bool = False
    source: str = ""


Kind = Literal["private", "public"]


def load_keypair(
    settings: Settings,
    *,
    need_partner_id: bool = False,
    need_private: bool = False,
    ephemeral_ok: bool = False,
    ephemeral_key: PrivateKey | None = None,
) -> KeyPair:
    """Build the key pair the settings describe, or raise ConfigError naming the bad source.

    With no key configured and `ephemeral_ok`, the key is made in memory, or is
    `ephemeral_key` when that fits the algorithm asked for (a reload keeps it).
    """
    partner_id = _partner_id(settings.partner_id, required=need_partner_id)
    wanted = _alg(settings.alg)

    private = parse_private_key(settings.private_key) if settings.private_key else None
    public = parse_public_key(settings.public_key) if settings.public_key else None
    if private is not None and public is not None:
        assert settings.private_key is not None and settings.public_key is not None
        if not same_public_key(private.public_key(), public):
            raise ConfigError(
                f"{settings.private_key.source} and {settings.public_key.source}",
                "are not a key pair: tokens signed with this private key will fail verification",
                "remove the public key (devtunnel derives it), or put the matching pair in both",
            )

    if private is None and public is None:
        if not ephemeral_ok:
            raise ConfigError(
                PRIVATE_KEY_VAR,
                "not set, and no --private-key given",
                f"{_KEYGEN_HINT} in .env.local",
            )
        alg: Alg = wanted.text if wanted else DEFAULT_ALG  # type: ignore[assignment]
        if ephemeral_key is not None and (wanted is None or alg_of(ephemeral_key) == alg):
            private = ephemeral_key
        else:
            private = generate_private_key(alg)
            logger.info("no key configured: using an ephemeral %s key made in memory", alg)
        return KeyPair(
            private.public_key(),
            private,
            alg_of(private),
            partner_id or DEFAULT_KID,
            partner_id,
            ephemeral=True,
            source="ephemeral key (in memory)",
        )

    if private is None and need_private:
        raise ConfigError(
            PRIVATE_KEY_VAR,
            "not set: signing needs the private key",
            "set PARTNER_PRIVATE_KEY or pass --private-key",
        )
    public_key = private.public_key() if private is not None else public
    assert public_key is not None  # one of the two is set: checked above
    key_source = settings.private_key or settings.public_key
    assert key_source is not None

    alg = alg_of(public_key)
    if wanted is not None and wanted.text != alg:
        raise ConfigError(
            wanted.source,
            f"is {wanted.text} but the key from {key_source.source} is for {alg}",
            f"set {ALG_VAR}={alg}, or use a key for {wanted.text}",
        )
    return KeyPair(
        public_key, private, alg, partner_id or DEFAULT_KID, partner_id, source=key_source.source
    )


def parse_private_key(value: Value) -> PrivateKey:
    """Parse a private key value as `.env` files hold it and check that AIR can use it."""
    return cast(PrivateKey, _parse_key(value, "private"))


def parse_public_key(value: Value) -> PublicKey:
    """Parse a public key value as `.env` files hold it and check that AIR can use it."""
    return cast(PublicKey, _parse_key(value, "public"))


def _parse_key(value: Value, kind: Kind) -> object:
    text = _unwrap(value.text)
    if not text:
        raise ConfigError(value.source, "is empty", _KEYGEN_HINT)
    der, label = _to_der(text, value)
    key = _load_der(der, label, kind, value)
    _check_usable(key, value)
    return key


def generate_private_key(alg: Alg = DEFAULT_ALG, bits: int = DEFAULT_RSA_BITS) -> PrivateKey:
    """A new private key for `alg`: EC P-256 for ES256, RSA of `bits` bits for RS256."""
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_pem(key: PrivateKey) -> str:
    """The private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_pem(key: PublicKey) -> str:
    """The public key as SubjectPublicKeyInfo PEM."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def same_public_key(a: PublicKey, b: PublicKey) -> bool:
    """Whether two public keys are the same key."""
    return bool(a.public_numbers() == b.public_numbers())


def alg_of(key: PrivateKey | PublicKey) -> Alg:
    """The algorithm a key signs with: RS256 for RSA, ES256 for EC."""
    return "RS256" if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey) else "ES256"


def _partner_id(value: Value | None, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise ConfigError(
                PARTNER_ID_VARS[0],
                "not set: the JWT kid and the JWKS kid must be your Partner ID",
                "set NEXT_PUBLIC_PARTNER_ID in .env.local or pass --partner-id",
            )
        return None
    text = _unwrap(value.text)
    if not text or any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ConfigError(
            value.source,
            "is not a valid Partner ID (empty, or has spaces or control characters)",
            "copy the Partner ID from AIR's Developer Dashboard",
        )
    return text


def _alg(value: Value | None) -> Value | None:
    if value is None:
        return None
    text = _unwrap(value.text).upper()
    if text not in ALGS:
        raise ConfigError(
            value.source,
            f"is {value.text!r}, not one of {', '.join(ALGS)}",
            f"set {ALG_VAR} to RS256 or ES256, or remove it to infer it from the key",
        )
    return Value(text, value.source, value.path)


def _unwrap(text: str) -> str:
    """Undo what `.env` files do to a PEM: quotes, literal escapes, CRLF."""
    text = text.strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    for escaped in ("\\r\\n", "\\n", "\r\n", "\r"):
        text = text.replace(escaped, "\n")
    return text.strip()


def _to_der(text: str, value: Value) -> tuple[bytes, str | None]:
    match = _PEM_RE.search(text)
    if match is None:
        if "-----" in text:
            raise ConfigError(value.source, "has a broken PEM header", _KEYGEN_HINT)
        return _b64decode(text, value), None

    label, body, end_label = match.group(1), match.group(2), match.group(3)
    if end_label is None:
        raise ConfigError(
            value.source, f"is truncated: no END line after BEGIN {label}", _KEYGEN_HINT
        )
    if end_label != label:
        raise ConfigError(value.source, f"has BEGIN {label} but END {end_label}", _KEYGEN_HINT)
    if label == "ENCRYPTED PRIVATE KEY":
        raise ConfigError(value.source, "is an encrypted private key (PKCS#8)", _DECRYPT_HINT)
    if _LEGACY_ENCRYPTED_RE.search(body):
        raise ConfigError(
            value.source, "is an encrypted private key (legacy Proc-Type PEM)", _DECRYPT_HINT
        )
    if label == "CERTIFICATE":
        raise ConfigError(
            value.source,
            "is a certificate, not a key",
            "give the public key instead: openssl x509 -in cert.pem -pubkey -noout",
        )
    if label not in _PRIVATE_LABELS | _PUBLIC_LABELS:
        raise ConfigError(value.source, f"holds a PEM {label}, not a key", _KEYGEN_HINT)
    return _b64decode(body, value), label


def _b64decode(body: str, value: Value) -> bytes:
    compact = "".join(body.split())
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            value.source, "is neither a PEM key nor a base64 key body (garbled?)", _KEYGEN_HINT
        ) from None
    if not der:
        raise ConfigError(value.source, "is empty", _KEYGEN_HINT)
    return der


def _load_der(der: bytes, label: str | None, kind: Kind, value: Value) -> object:
    loaded = _try_private(der, value) if label is None or label in _PRIVATE_LABELS else None
    if loaded is None and (label is None or label in _PUBLIC_LABELS):
        loaded = _try_public(der, label)
    if loaded is None and label is None and _is_certificate(der):
        raise ConfigError(
            value.source,
            "is a certificate, not a key",
            "give the public key instead: openssl x509 -in cert.pem -pubkey -noout",
        )
    if loaded is None:
        raise ConfigError(value.source, "is not a valid key (truncated or garbled?)", _KEYGEN_HINT)

    is_private = not isinstance(loaded, _PUBLIC_TYPES)
    if kind == "public" and is_private:
        raise ConfigError(
            value.source,
            "holds a private key where the public key belongs",
            "put the PUBLIC KEY PEM there (devtunnel derives it from the private key anyway)",
        )
    if kind == "private" and not is_private:
        raise ConfigError(
            value.source,
            "holds a public key where the private key belongs",
            "put the PRIVATE KEY PEM there, and the public one in PARTNER_PUBLIC_KEY",
        )
    return loaded


def _try_private(der: bytes, value: Value) -> object | None:
    try:
        return serialization.load_der_private_key(der, password=None)
    except TypeError:
        raise ConfigError(value.source, "is an encrypted private key", _DECRYPT_HINT) from None
    except (ValueError, UnsupportedAlgorithm):
        return None


def _try_public(der: bytes, label: str | None) -> object | None:
    attempts = [der]
    if label == "RSA PUBLIC KEY" or label is None:
        # PKCS#1 RSAPublicKey: cryptography reads it from PEM only.
        attempts.append(_pem("RSA PUBLIC KEY", der))
    for data in attempts:
        try:
            if data is der:
                return serialization.load_der_public_key(data)
            return serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            continue
    return None


def _pem(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode("ascii")


def _is_certificate(der: bytes) -> bool:
    try:
        x509.load_der_x509_certificate(der)
    except ValueError:
        return False
    return True


def _check_usable(key: object, value: Value) -> None:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                value.source,
                f"is a {key.key_size}-bit RSA key; RS256 needs at least {MIN_RSA_BITS}",
                "run `devtunnel keygen --alg RS256` for a 2048-bit key",
            )
        return
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ConfigError(
                value.source,
                f"is an EC key on {key.curve.name}; ES256 needs P-256 (secp256r1)",
                "run `devtunnel keygen` for a P-256 key",
            )
        return
    kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "").replace("PublicKey", "")
    raise ConfigError(
        value.source,
        f"is a key of type {kind}; AIR accepts RS256 (RSA) or ES256 (EC P-256)",
        "run `devtunnel keygen` for an ES256 key",
    )
