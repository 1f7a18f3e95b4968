"""The public JWK and JWKS document, their RFC 7638 thumbprint, and the private-member guard.

Every JWKS that devtunnel serves or writes is rendered by `render_jwks`, which
refuses any document carrying a private member: a published template once
exported its private key into its JWKS, and that must not happen here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import ECKey, RSAKey
from joserfc.jwk import thumbprint as _rfc7638_thumbprint

from devtunnel.errors import DevtunnelError
from devtunnel.keys import KeyPair, PrivateKey, PublicKey

JWKS_MEDIA_TYPE = "application/json"
# Private members of RSA, EC, OKP and symmetric JWKs (RFC 7518 §6, RFC 8037 §2).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MEMBER_ORDER = ("kty", "n", "e", "crv", "x", "y", "kid", "use", "alg")
# RFC 7638 §3.2: the members that make up a thumbprint, per key type.
_REQUIRED_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "oct": ("k", "kty"),
}


class PrivateMemberError(DevtunnelError):
    """A JWKS document would have carried private key material."""


def jose_key(key: PrivateKey | PublicKey) -> RSAKey | ECKey:
    """The joserfc key object for a cryptography key."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return RSAKey.import_key(key)
    return ECKey.import_key(key)


def public_jwk(pair: KeyPair) -> dict[str, str]:
    """The JWK that AIR needs for this key: public members, kid, use and alg."""
    members = {
        **jose_key(pair.public).as_dict(private=False),
        "kid": pair.kid,
        "use": "sig",
        "alg": pair.alg,
    }
    return {name: str(members[name]) for name in _MEMBER_ORDER if name in members}


def jwks_document(pairs: Iterable[KeyPair]) -> dict[str, list[dict[str, str]]]:
    """The JWKS document `{"keys": [...]}` for these key pairs."""
    return {"keys": [public_jwk(pair) for pair in pairs]}


def private_members(document: object) -> list[str]:
    """The private members of every JWK in a JSON value, as `label:member`, in document order.

    A JWK is an entry of the top-level `keys` list, or any object with a `kty`
    wherever it sits (a checked URL may serve any JSON). Its label is its kid, else
    its place in `keys` (`#1`), else `a key`.
    """
    keys = document.get("keys") if isinstance(document, Mapping) else None
    listed = keys if isinstance(keys, list) else []
    places = {id(key): f"#{index}" for index, key in enumerate(listed) if isinstance(key, Mapping)}
    found: list[str] = []
    pending: list[object] = [document]
    while pending:  # a stack, not recursion: a served document may nest deeply
        node = pending.pop()
        if isinstance(node, Mapping):
            place = places.get(id(node))
            if place is not None or "kty" in node:
                label = node.get("kid", place or "a key")
                found.extend(f"{label}:{name}" for name in sorted(PRIVATE_MEMBERS & node.keys()))
            pending.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            pending.extend(reversed(node))
    return found


def render_jwks(document: Mapping[str, Any]) -> bytes:
    """The bytes to serve or write for a JWKS document; refuses any private member."""
    leaked = private_members(document)
    if leaked:
        raise PrivateMemberError(
            "JWKS",
            f"would publish private key members ({', '.join(leaked)})",
            "this is a devtunnel bug: please report it",
        )
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def render_keys(pairs: Sequence[KeyPair]) -> bytes:
    """The guarded JWKS bytes for these key pairs."""
    return render_jwks(jwks_document(pairs))


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a JWK, base64url without padding.

    Only the key type's required members enter it (RFC 7638 §3.2), so a served JWK
    with kid, use and alg has the same thumbprint as the bare key. A JWK of an
    unknown type, or missing a required member, is hashed as it stands.
    """
    required = _REQUIRED_MEMBERS.get(str(jwk.get("kty")), ())
    if not required or not all(name in jwk for name in required):
        return _rfc7638_thumbprint(dict(jwk))
    return _rfc7638_thumbprint({name: jwk[name] for name in required})


def key_thumbprint(key: PublicKey) -> str:
    """The RFC 7638 thumbprint of a public key (kid, use and alg do not enter it)."""
    return jose_key(key).thumbprint()


def etag(body: bytes) -> str:
    """A strong ETag over the exact bytes served (a kid change alters them, not the thumbprint)."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
