"""The public JWK: equal to an independent implementation's, and never a private member."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
from pathlib import Path
from unittest import mock

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from devtunnel.cli import main
from devtunnel.config import Settings, Value
from devtunnel.jwks import (
    PRIVATE_MEMBERS,
    PrivateMemberError,
    etag,
    jose_key,
    jwks_document,
    key_thumbprint,
    private_members,
    public_jwk,
    render_jwks,
    render_keys,
    thumbprint,
)
from devtunnel.keys import KeyPair, load_keypair, parse_private_key
from tests.conftest import DATA
from tests.keyformats import encodings, private_formats, public_formats

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PUBLIC_MEMBERS = {"RSA": {"kty", "n", "e"}, "EC": {"kty", "crv", "x", "y"}}


def committed(name: str) -> tuple[KeyPair, dict[str, str], str]:
    pem = (DATA / f"{name}-private.pem").read_text()
    settings = Settings(partner_id=Value("partner-1", "test"), private_key=Value(pem, "test"))
    expected = json.loads((DATA / f"{name}.jwk.json").read_text())
    return load_keypair(settings), expected, (DATA / f"{name}.thumbprint").read_text().strip()


@pytest.mark.parametrize(("name", "alg"), [("rsa2048", "RS256"), ("ec-p256", "ES256")])
def test_the_jwk_and_thumbprint_equal_pyjwts_and_rfc7638s(name: str, alg: str) -> None:
    pair, expected, expected_thumbprint = committed(name)

    jwk = public_jwk(pair)

    public = {member: expected[member] for member in PUBLIC_MEMBERS[expected["kty"]]}
    assert jwk == {**public, "kid": "partner-1", "use": "sig", "alg": alg}
    assert thumbprint(jwk) == expected_thumbprint
    assert key_thumbprint(pair.public) == expected_thumbprint


def test_the_jwks_document_lists_the_members_in_a_stable_order() -> None:
    pair, _, _ = committed("ec-p256")
    document = json.loads(render_keys([pair]))
    assert list(document["keys"][0]) == ["kty", "crv", "x", "y", "kid", "use", "alg"]
    assert render_keys([pair]).endswith(b"}\n")


@pytest.mark.parametrize("member", sorted(PRIVATE_MEMBERS))
def test_render_jwks_refuses_a_document_with_a_private_member(member: str) -> None:
    document = {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "k1", member: "AA"}]}

    with pytest.raises(PrivateMemberError) as raised:
        render_jwks(document)

    assert raised.value.fault == f"would publish private key members (k1:{member})"
    assert "AA" not in str(raised.value)


def test_render_jwks_refuses_a_real_private_jwk(ec_private: ec.EllipticCurvePrivateKey) -> None:
    leaked = jose_key(ec_private).as_dict(private=True)
    with pytest.raises(PrivateMemberError, match=r"#1:d"):
        render_jwks({"keys": [{"kty": "oct"}, leaked]})


def test_private_members_ignores_what_is_not_a_key_list() -> None:
    assert private_members({"keys": {"d": "x"}}) == []
    assert private_members({"keys": ["d", {"kid": "a", "d": "x", "p": "y"}]}) == ["a:d", "a:p"]
    assert render_jwks({"keys": []}) == b'{\n  "keys": []\n}\n'


def test_the_etag_follows_the_bytes_not_the_key() -> None:
    pair, _, _ = committed("rsa2048")
    renamed = KeyPair(pair.public, pair.private, pair.alg, "partner-2", "partner-2")

    assert etag(render_keys([pair])) != etag(render_keys([renamed]))
    assert etag(render_keys([pair])) == etag(render_keys([pair]))
    assert thumbprint(public_jwk(pair)) == thumbprint(public_jwk(renamed))


# Property: whatever key arrives in whatever form, no private member is published.


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKey]:
    made: dict[str, PrivateKey] = {
        f"rsa{bits}": rsa.generate_private_key(public_exponent=65537, key_size=bits)
        for bits in (2048, 3072, 4096)
    }
    made["p256"] = ec.generate_private_key(ec.SECP256R1())
    return made


def b64url(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def secret_numbers(key: PrivateKey) -> list[str]:
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        return [b64url(n) for n in (numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1)]
    return [b64url(key.private_numbers().private_value)]


def assert_public_only(body: bytes, key: PrivateKey) -> None:
    document = json.loads(body)
    (jwk,) = document["keys"]
    assert not PRIVATE_MEMBERS & jwk.keys()
    assert set(jwk) == PUBLIC_MEMBERS[jwk["kty"]] | {"kid", "use", "alg"}
    text = body.decode()
    for secret in secret_numbers(key):
        assert secret not in text


def jwks_via_cli(variable: str, value: str) -> bytes:
    out = io.StringIO()
    environ = {variable: value, "PARTNER_ID": "partner-prop"}
    with mock.patch.dict(os.environ, environ), contextlib.redirect_stdout(out):
        assert main(["jwks"]) == 0
    return out.getvalue().encode()


# RSA 4096 private keys take ~0.3 s to load and check: 25 examples keep this near 2 s.
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_no_emitted_jwks_has_a_private_member(
    keys: dict[str, PrivateKey], data: st.DataObject
) -> None:
    key = keys[data.draw(st.sampled_from(sorted(keys)), label="key")]
    private = data.draw(st.booleans(), label="private")
    formats = private_formats(key) if private else public_formats(key)
    pem = formats[data.draw(st.sampled_from(sorted(formats)), label="format")]
    forms = encodings(pem)
    text = forms[data.draw(st.sampled_from(sorted(forms)), label="encoding")]
    variable = "PARTNER_PRIVATE_KEY" if private else "PARTNER_PUBLIC_KEY"

    if data.draw(st.booleans(), label="through `devtunnel jwks`"):
        body = jwks_via_cli(variable, text)
    else:
        value = Value(text, variable)
        settings_ = Settings(
            partner_id=Value("partner-prop", "test"),
            private_key=value if private else None,
            public_key=None if private else value,
        )
        body = render_keys([load_keypair(settings_)])
    assert_public_only(body, key)


def test_every_key_size_serves_only_its_public_half(keys: dict[str, PrivateKey]) -> None:
    for key in keys.values():
        parsed = parse_private_key(Value(private_formats(key)["pkcs8"], "test"))
        alg = "RS256" if isinstance(parsed, rsa.RSAPrivateKey) else "ES256"
        pair = KeyPair(parsed.public_key(), parsed, alg, "k", "k")
        assert_public_only(render_keys([pair]), key)
        assert jwks_document([pair])["keys"][0]["alg"] == alg


def test_a_served_jwk_has_the_thumbprint_of_its_bare_key() -> None:
    pair, expected, expected_thumbprint = committed("rsa2048")
    bare = {member: expected[member] for member in PUBLIC_MEMBERS["RSA"]}
    served = {"use": "sig", **public_jwk(pair), "x5t": "ignored"}

    assert thumbprint(bare) == thumbprint(served) == expected_thumbprint
    assert thumbprint({"kty": "RSA", "n": "AQAB"}) != expected_thumbprint
    assert thumbprint({"kty": "unknown"})


def test_devtunnel_jwks_prints_the_committed_jwk(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["jwks", "--partner-id", "p-9", "--private-key", str(DATA / "rsa2048-private.pem")])

    document = json.loads(capsys.readouterr().out)
    expected = json.loads((DATA / "rsa2048.jwk.json").read_text())
    assert code == 0
    assert document["keys"][0]["n"] == expected["n"]
    assert thumbprint(document["keys"][0]) == (DATA / "rsa2048.thumbprint").read_text().strip()
    assert list(Path.cwd().iterdir()) == []
