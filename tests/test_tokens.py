"""Partner JWTs: signed as AIR expects, checked by an independent verifier (PyJWT)."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from devtunnel.errors import ConfigError
from devtunnel.jwks import jwks_document
from devtunnel.keys import KeyPair
from devtunnel.tokens import DEFAULT_TTL, TokenError, parse_claims, sign_partner_jwt, verify_jwt

NOW = 1_750_000_000


@pytest.fixture(params=["rsa", "ec"])
def pair(request: pytest.FixtureRequest, rsa_pair: KeyPair, ec_pair: KeyPair) -> KeyPair:
    return rsa_pair if request.param == "rsa" else ec_pair


def test_a_partner_jwt_verifies_with_pyjwt(pair: KeyPair) -> None:
    token = sign_partner_jwt(pair, scope="verify", ttl=120, claims={"email": "a@example.com"})

    jwk = jwt.PyJWK(jwks_document([pair])["keys"][0])
    claims = jwt.decode(token, jwk.key, algorithms=[pair.alg])
    header = jwt.get_unverified_header(token)

    assert header == {"alg": pair.alg, "kid": pair.kid, "typ": "JWT"}
    assert claims["partnerId"] == pair.kid
    assert claims["scope"] == "verify"
    assert claims["email"] == "a@example.com"
    assert claims["exp"] - claims["iat"] == 120
    assert abs(claims["iat"] - time.time()) < 5


def test_the_default_lifetime_is_five_minutes(ec_pair: KeyPair) -> None:
    token = sign_partner_jwt(ec_pair, now=NOW)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iat"], claims["exp"], claims["scope"]) == (NOW, NOW + DEFAULT_TTL, "issue")


def test_verify_jwt_accepts_a_good_token(pair: KeyPair) -> None:
    token = sign_partner_jwt(pair, now=NOW)
    claims = verify_jwt(token, jwks_document([pair]), now=NOW + 10)
    assert claims["partnerId"] == pair.kid


def test_verify_jwt_refuses_a_token_signed_by_another_key(
    ec_pair: KeyPair, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    forged = replace(ec_pair, public=other.public_key(), private=other)
    token = sign_partner_jwt(forged, now=NOW)

    with pytest.raises(TokenError) as raised:
        verify_jwt(token, jwks_document([ec_pair]), now=NOW)
    assert raised.value.source == "JWT"
    assert raised.value.fault == "does not verify: bad_signature"


def test_verify_jwt_refuses_an_expired_token(ec_pair: KeyPair) -> None:
    token = sign_partner_jwt(ec_pair, ttl=60, now=NOW)

    verify_jwt(token, jwks_document([ec_pair]), now=NOW + 60)
    with pytest.raises(TokenError) as raised:
        verify_jwt(token, jwks_document([ec_pair]), now=NOW + 600)
    assert "expired" in raised.value.fault


def test_verify_jwt_refuses_a_kid_the_jwks_does_not_have(ec_pair: KeyPair) -> None:
    token = sign_partner_jwt(replace(ec_pair, kid="someone-else"), now=NOW)
    with pytest.raises(TokenError) as raised:
        verify_jwt(token, jwks_document([ec_pair]), now=NOW)
    assert raised.value.fault == "does not verify: invalid_key_id: No key for kid: 'someone-else'"


def test_verify_jwt_refuses_garbage(ec_pair: KeyPair) -> None:
    with pytest.raises(TokenError):
        verify_jwt("not.a.jwt", jwks_document([ec_pair]), now=NOW)
    with pytest.raises(TokenError):
        verify_jwt(sign_partner_jwt(ec_pair, now=NOW), {"keys": "none"}, now=NOW)


@pytest.mark.parametrize(
    ("kwargs", "source", "fault"),
    [
        ({"ttl": 0}, "--ttl", "is 0 s; AIR accepts 1 to 900 s"),
        ({"ttl": 901}, "--ttl", "is 901 s; AIR accepts 1 to 900 s"),
        ({"scope": "admin"}, "--scope", "is 'admin', not one of issue, verify"),
        ({"claims": {"exp": 1}}, "--claim exp", "is set by devtunnel"),
        ({"claims": {"iat": 1}}, "--claim iat", "is set by devtunnel"),
        ({"claims": {"partnerId": "x"}}, "--claim partnerId", "is set by devtunnel"),
        ({"claims": {"scope": "verify"}}, "--claim scope", "is set by devtunnel"),
    ],
)
def test_bad_token_requests_are_refused(
    ec_pair: KeyPair, kwargs: dict[str, object], source: str, fault: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        sign_partner_jwt(ec_pair, **kwargs)  # type: ignore[arg-type]
    assert (raised.value.source, raised.value.fault) == (source, fault)
    assert raised.value.hint


def test_signing_needs_the_private_key(ec_pair: KeyPair) -> None:
    with pytest.raises(ConfigError) as raised:
        sign_partner_jwt(replace(ec_pair, private=None))
    assert raised.value.source == "PARTNER_PRIVATE_KEY"


def test_extra_claims_keep_their_json_types(ec_pair: KeyPair) -> None:
    extra = {"n": 3, "ok": True, "tags": ["a"], "nested": {"k": None}}
    token = sign_partner_jwt(ec_pair, claims=extra, now=NOW)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert json.dumps({k: claims[k] for k in extra}, sort_keys=True) == json.dumps(
        extra, sort_keys=True
    )


def test_claims_are_json_when_they_parse_and_text_otherwise() -> None:
    assert parse_claims(["n=5", "ok=true", "list=[1,2]", "email=a@b.example", "empty="]) == {
        "n": 5,
        "ok": True,
        "list": [1, 2],
        "email": "a@b.example",
        "empty": "",
    }


@pytest.mark.parametrize("item", ["novalue", "=5", " =x"])
def test_a_claim_without_a_name_and_value_names_itself(item: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_claims([item])

    assert (caught.value.source, caught.value.fault) == (f"--claim {item}", "is not K=V")
