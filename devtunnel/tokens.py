"""Sign Partner JWTs as AIR expects them, and verify a JWT against a fetched JWKS."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from devtunnel.config import PRIVATE_KEY_VAR
from devtunnel.errors import ConfigError, DevtunnelError
from devtunnel.jwks import jose_key
from devtunnel.keys import ALGS, KeyPair

SCOPES = ("issue", "verify")
DEFAULT_TTL = 300  # AIR recommends 5 minutes
MAX_TTL = 900  # and accepts 15 at most
# Set by devtunnel from --partner-id, --scope and --ttl; a --claim must not contradict them.
RESERVED_CLAIMS = {
    "iat": "use --ttl for the lifetime",
    "exp": "use --ttl for the lifetime",
    "partnerId": "it is the Partner ID: use --partner-id",
    "scope": "use --scope",
}


class TokenError(DevtunnelError):
    """A JWT did not verify against a JWKS."""


def parse_claims(items: Sequence[str]) -> dict[str, object]:
    """`--claim K=V` items as claims; V is read as JSON when it parses, else kept as text."""
    claims: dict[str, object] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--claim {item}", "is not K=V", "write it as --claim name=value")
        try:
            claims[name.strip()] = json.loads(text)
        except ValueError:
            claims[name.strip()] = text
    return claims


def sign_partner_jwt(
    pair: KeyPair,
    *,
    scope: str = "issue",
    ttl: int = DEFAULT_TTL,
    claims: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """A Partner JWT: header {alg, kid: Partner ID, typ: JWT}; claims partnerId, scope, iat, exp."""
    if pair.private is None:
        raise ConfigError(
            PRIVATE_KEY_VAR,
            "not set: signing needs the private key",
            "set PARTNER_PRIVATE_KEY or pass --private-key",
        )
    if scope not in SCOPES:
        raise ConfigError(
            "--scope",
            f"is {scope!r}, not one of {', '.join(SCOPES)}",
            "use --scope issue or --scope verify",
        )
    if not 0 < ttl <= MAX_TTL:
        raise ConfigError(
            "--ttl",
            f"is {ttl} s; AIR accepts 1 to {MAX_TTL} s",
            f"use the recommended --ttl {DEFAULT_TTL}",
        )
    extra = dict(claims or {})
    reserved = sorted(RESERVED_CLAIMS.keys() & extra.keys())
    if reserved:
        raise ConfigError(
            f"--claim {reserved[0]}", "is set by devtunnel", RESERVED_CLAIMS[reserved[0]]
        )

    issued = int(time.time() if now is None else now)
    payload = {"partnerId": pair.kid, "scope": scope, **extra, "iat": issued, "exp": issued + ttl}
    header = {"alg": pair.alg, "kid": pair.kid, "typ": "JWT"}
    return jwt.encode(header, payload, jose_key(pair.private), algorithms=list(ALGS))


def verify_jwt(
    token: str, document: Mapping[str, Any], *, now: float | None = None
) -> dict[str, Any]:
    """Verify a JWT's signature and lifetime against a JWKS document; return its claims.

    The key is found by the token's `kid`, as AIR finds it.
    """
    try:
        key_set = KeySet.import_key_set(dict(document))  # type: ignore[arg-type]
        decoded = jwt.decode(token, key_set, algorithms=list(ALGS))
        JWTClaimsRegistry(
            now=int(time.time() if now is None else now), leeway=5, exp={"essential": True}
        ).validate(decoded.claims)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise TokenError("JWT", f"does not verify: {_describe(exc)}") from None
    return dict(decoded.claims)


def _describe(exc: Exception) -> str:
    # joserfc's messages read "error_code: description", and the description may be empty.
    text = str(exc).strip().removesuffix(":") or type(exc).__name__
    return text.splitlines()[0]
