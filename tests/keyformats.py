"""Every way a key can reach devtunnel: each key type's formats, and how `.env` files hold them."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

Encoding = serialization.Encoding
PrivateFormat = serialization.PrivateFormat
PublicFormat = serialization.PublicFormat


def private_formats(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> dict[str, str]:
    """PKCS#8 for both key types; PKCS#1 for RSA and SEC1 for EC (OpenSSL's traditional form)."""
    traditional = "pkcs1" if isinstance(key, rsa.RSAPrivateKey) else "sec1"
    formats = {"pkcs8": PrivateFormat.PKCS8, traditional: PrivateFormat.TraditionalOpenSSL}
    return {
        name: key.private_bytes(Encoding.PEM, fmt, serialization.NoEncryption()).decode()
        for name, fmt in formats.items()
    }


def public_formats(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> dict[str, str]:
    """SubjectPublicKeyInfo for both key types; PKCS#1 RSAPublicKey for RSA."""
    formats = {"spki": PublicFormat.SubjectPublicKeyInfo}
    if isinstance(key, rsa.RSAPrivateKey):
        formats["pkcs1"] = PublicFormat.PKCS1
    return {
        name: key.public_key().public_bytes(Encoding.PEM, fmt).decode()
        for name, fmt in formats.items()
    }


def body(pem: str) -> str:
    """The base64 between the BEGIN and END lines, on one line."""
    return "".join(pem.strip().splitlines()[1:-1])


def escaped(pem: str) -> str:
    """The PEM on one line with literal `\\n` escapes, as AIR's examples keep it."""
    return pem.strip().replace("\n", "\\n")


def encodings(pem: str) -> dict[str, str]:
    """A value as it may arrive from the process environment or a key file."""
    return {
        "pem": pem,
        "body": body(pem),
        "body-lines": "\n".join(pem.strip().splitlines()[1:-1]),
        "double-quoted": f'"{pem.strip()}"',
        "single-quoted": f"'{pem.strip()}'",
        "escaped": escaped(pem),
        "escaped-quoted": f'"{escaped(pem)}"',
        "escaped-crlf": pem.strip().replace("\n", "\\r\\n"),
        "crlf": pem.replace("\n", "\r\n"),
        "padded": f"  \n{pem}\n\n  ",
    }


def env_lines(pem: str) -> dict[str, str]:
    """What may follow `NAME=` on a line of a `.env` file for this key."""
    return {
        "multiline-double-quoted": f'"{pem.strip()}"',
        "escaped": escaped(pem),
        "escaped-double-quoted": f'"{escaped(pem)}"',
        "escaped-single-quoted": f"'{escaped(pem)}'",
        "body": body(pem),
        "body-double-quoted": f'"{body(pem)}"',
        "quotes-in-quotes": f"'\"{escaped(pem)}\"'",
    }
