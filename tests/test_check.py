"""check_jwks names every way a JWKS URL fails a remote verifier, by its problem code."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import ec

from devtunnel.check import check_jwks
from devtunnel.errors import ConfigError
from devtunnel.events import SELF_CHECK_HEADER, USER_AGENT, Problem
from devtunnel.fetch import MAX_BODY
from devtunnel.jwks import key_thumbprint
from devtunnel.keys import KeyPair
from tests.conftest import free_port
from tests.fakes.hostile_jwks import HostileJwks


@pytest.fixture
def other_pair() -> KeyPair:
    private = ec.generate_private_key(ec.SECP256R1())
    return KeyPair(private.public_key(), private, "ES256", "partner-ec", "partner-ec")


@pytest.fixture
async def hostile(ec_pair: KeyPair, other_pair: KeyPair) -> AsyncIterator[HostileJwks]:
    async with HostileJwks(ec_pair, other_pair) as server:
        yield server


@pytest.fixture
async def hostile_tls(
    ec_pair: KeyPair, other_pair: KeyPair, server_cert: trustme.LeafCert
) -> AsyncIterator[HostileJwks]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    async with HostileJwks(ec_pair, other_pair, tls=context) as server:
        yield server


def codes(problems: list[Problem]) -> list[str]:
    return [problem.code for problem in problems]


# The good case


async def test_good_jwks_over_http_on_loopback_passes_with_two_warnings(
    hostile: HostileJwks, ec_pair: KeyPair
) -> None:
    result = await check_jwks(hostile.url("/good"), pair=ec_pair)

    assert result.ok
    assert result.problems == []
    assert codes(result.warnings) == ["not_https", "not_public"]
    assert [stage.name for stage in result.stages] == [
        "reachable", "status", "body", "safety", "kid", "key", "alg", "signature",
    ]  # fmt: skip
    assert all(stage.ok for stage in result.stages)
    assert result.status == 200
    assert result.latency_ms is not None and result.latency_ms > 0
    assert result.thumbprint == key_thumbprint(ec_pair.public)
    assert (result.cache_control, result.etag) == ("no-cache", '"v1"')
    assert result.requests == 2


async def test_fetches_like_a_server_side_verifier(hostile: HostileJwks) -> None:
    await check_jwks(hostile.url("/good"), kid="partner-ec")

    verifier, browser = hostile.seen
    assert verifier.user_agent == USER_AGENT
    assert verifier.headers[SELF_CHECK_HEADER] == "1"
    assert "Mozilla/" in browser.user_agent
    assert browser.headers[SELF_CHECK_HEADER] == "1"
    assert "ngrok-skip-browser-warning" not in browser.headers


async def test_without_browser_probe_sends_one_request(hostile: HostileJwks) -> None:
    result = await check_jwks(hostile.url("/good"), browser_probe=False)

    assert result.ok and result.requests == 1
    assert hostile.paths() == ["/good"]


async def test_without_local_keys_runs_the_structural_stages_only(hostile: HostileJwks) -> None:
    result = await check_jwks(hostile.url("/good"))

    assert result.ok
    assert [stage.name for stage in result.stages] == ["reachable", "status", "body", "safety"]
    assert result.kid is None  # the report says "structure only": tests/test_console.py


async def test_good_jwks_over_https_with_ca_file_passes(
    hostile_tls: HostileJwks, ec_pair: KeyPair, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)

    result = await check_jwks(hostile_tls.url("/good"), pair=ec_pair, ca_file=ca_file)

    assert result.ok, result.problems
    assert codes(result.warnings) == ["not_public"]


async def test_good_jwks_over_https_with_ssl_cert_file_passes(
    hostile_tls: HostileJwks, ec_pair: KeyPair, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))

    result = await check_jwks(hostile_tls.url("/good"), pair=ec_pair)

    assert result.ok, result.problems


async def test_reuses_a_given_session_and_leaves_it_open(hostile: HostileJwks) -> None:
    async with aiohttp.ClientSession() as session:
        first = await check_jwks(hostile.url("/good"), session=session)
        second = await check_jwks(hostile.url("/good"), session=session)
        assert not session.closed

    assert first.ok and second.ok


# Reachable


async def test_untrusted_certificate_is_tls_error(
    hostile_tls: HostileJwks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)

    result = await check_jwks(hostile_tls.url("/good"))

    assert codes(result.problems) == ["tls_error"]
    assert "certificate" in result.problems[0].detail.lower()
    assert "--ca-file" in result.problems[0].hint
    assert result.requests == 1


async def test_closed_port_is_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks.json"

    result = await check_jwks(url, kid="partner-1")

    assert codes(result.problems) == ["unreachable"]
    assert url in result.problems[0].detail
    assert "devtunnel up" in result.problems[0].hint
    assert (result.status, result.latency_ms, result.thumbprint) == (None, None, None)
    assert [stage.name for stage in result.stages] == ["reachable"]


async def test_slow_answer_is_timeout(hostile: HostileJwks) -> None:
    result = await check_jwks(hostile.url("/slow"), timeout=0.2)

    assert codes(result.problems) == ["timeout"]
    assert "0.2 s" in result.problems[0].detail


# Status and body


async def test_redirect_is_not_followed(hostile: HostileJwks) -> None:
    result = await check_jwks(hostile.url("/redirect"))

    assert codes(result.problems) == ["redirect"]
    assert hostile.url("/good") in result.problems[0].detail
    assert hostile.paths() == ["/redirect"]  # neither followed nor probed as a browser


async def test_server_error_is_http_status(hostile: HostileJwks) -> None:
    result = await check_jwks(hostile.url("/status-500"))

    assert codes(result.problems) == ["http_status"]
    assert "500" in result.problems[0].detail
    assert result.status == 500


async def test_ngrok_error_page_is_named_in_http_status(hostile: HostileJwks) -> None:
    result = await check_jwks(hostile.url("/ngrok-offline"))

    assert codes(result.problems) == ["http_status"]
    assert "502" in result.problems[0].detail and "ERR_NGROK_8012" in result.problems[0].detail
    assert "start the local server" in result.problems[0].hint


async def test_missing_path_hints_at_the_served_paths(hostile: HostileJwks) -> None:
    result = await check_jwks(hostile.url("/nothing-here"))

    assert codes(result.problems) == ["http_status"]
    assert "/jwks.json" in result.problems[0].hint


@pytest.mark.parametrize(
    ("path", "code", "detail"),
    [
        ("/ngrok-warning", "interstitial", "ERR_NGROK_6024"),
        ("/html", "not_json", "HTML page"),
        ("/not-json", "not_json", "'keys: none'"),
        ("/too-big", "not_json", f"{MAX_BODY // 1024} KiB"),
        ("/too-big-chunked", "not_json", f"{MAX_BODY // 1024} KiB"),
        ("/no-keys", "no_keys", "empty keys list"),
    ],
)
async def test_body_that_is_no_jwks_is_named(
    hostile: HostileJwks, ec_pair: KeyPair, path: str, code: str, detail: str
) -> None:
    result = await check_jwks(hostile.url(path), pair=ec_pair)

    assert codes(result.problems) == [code]
    assert detail in result.problems[0].detail
    assert result.requests == 1  # no browser probe after a failed fetch


# Safety


async def test_leaked_private_key_fails_and_comes_first(
    hostile: HostileJwks, ec_pair: KeyPair
) -> None:
    result = await check_jwks(hostile.url("/leaked-private-key"), pair=ec_pair)

    assert not result.ok
    assert codes(result.problems) == ["private_key_exposed"]
    assert "partner-ec:d" in result.problems[0].detail
    assert "keygen" in result.problems[0].hint


async def test_leaked_private_key_comes_first_among_other_problems(
    hostile: HostileJwks, ec_pair: KeyPair
) -> None:
    renamed = dataclasses.replace(ec_pair, kid="another-partner")

    result = await check_jwks(hostile.url("/leaked-private-key"), pair=renamed)

    assert codes(result.problems) == ["private_key_exposed", "kid_not_found"]


async def test_leaked_private_key_is_reported_even_behind_an_error_status(
    hostile: HostileJwks,
) -> None:
    result = await check_jwks(hostile.url("/leaked-with-error"))

    assert codes(result.problems) == ["private_key_exposed", "http_status"]


# Kid, key, alg and signature


async def test_kid_not_found_names_the_kid_and_the_kids_served(
    hostile: HostileJwks, ec_pair: KeyPair
) -> None:
    result = await check_jwks(hostile.url("/other-kid"), pair=ec_pair)

    assert codes(result.problems) == ["kid_not_found"]
    problem = result.problems[0]
    assert "'partner-ec'" in problem.detail and "'someone-else'" in problem.detail
    assert "NEXT_PUBLIC_PARTNER_ID" in problem.hint


async def test_partner_id_alone_finds_a_missing_kid(hostile: HostileJwks) -> None:
    result = await check_jwks(hostile.url("/other-kid"), kid="partner-ec")

    assert codes(result.problems) == ["kid_not_found"]


async def test_same_key_twice_under_one_kid_is_duplicate_kid(
    hostile: HostileJwks, ec_pair: KeyPair
) -> None:
    result = await check_jwks(hostile.url("/duplicate-kid"), pair=ec_pair)

    assert codes(result.problems) == ["duplicate_kid"]
    assert result.problems[0].detail.startswith("2 keys have kid 'partner-ec'")


async def test_duplicate_kid_with_a_wrong_first_key_fails_the_signature(
    hostile: HostileJwks, ec_pair: KeyPair
) -> None:
    result = await check_jwks(hostile.url("/duplicate-kid-wrong-first"), pair=ec_pair)

    assert codes(result.problems) == ["duplicate_kid", "invalid_signature"]
    assert result.thumbprint is not None


async def test_another_key_under_the_kid_is_key_mismatch_and_invalid_signature(
    hostile: HostileJwks, ec_pair: KeyPair, other_pair: KeyPair
) -> None:
    result = await check_jwks(hostile.url("/wrong-key"), pair=ec_pair)

    assert codes(result.problems) == ["key_mismatch", "invalid_signature"]
    local, served = key_thumbprint(ec_pair.public), key_thumbprint(other_pair.public)
    assert local in result.problems[0].detail and served in result.problems[0].detail
    assert result.thumbprint == served


async def test_public_key_only_finds_key_mismatch_without_signing(
    hostile: HostileJwks, ec_pair: KeyPair
) -> None:
    public_only = dataclasses.replace(ec_pair, private=None)

    result = await check_jwks(hostile.url("/wrong-key"), pair=public_only)

    assert codes(result.problems) == ["key_mismatch"]
    assert "signature" not in [stage.name for stage in result.stages]


async def test_served_alg_other_than_the_local_one_is_alg_mismatch(
    hostile: HostileJwks, ec_pair: KeyPair
) -> None:
    result = await check_jwks(hostile.url("/wrong-alg"), pair=ec_pair)

    assert codes(result.problems) == ["alg_mismatch", "invalid_signature"]
    assert "'RS256'" in result.problems[0].detail and "ES256" in result.problems[0].detail


async def test_right_key_marked_for_encryption_is_invalid_signature(
    hostile: HostileJwks, ec_pair: KeyPair
) -> None:
    result = await check_jwks(hostile.url("/encryption-key"), pair=ec_pair)

    assert codes(result.problems) == ["invalid_signature"]
    assert 'use to "sig"' in result.problems[0].hint


async def test_a_broken_key_under_another_kid_does_not_fail_the_check(
    hostile: HostileJwks, ec_pair: KeyPair
) -> None:
    result = await check_jwks(hostile.url("/broken-neighbour"), pair=ec_pair)

    assert result.ok, result.problems
    assert result.thumbprint == key_thumbprint(ec_pair.public)


async def test_a_secret_key_under_the_kid_is_exposed_and_cannot_verify(
    hostile: HostileJwks, ec_pair: KeyPair
) -> None:
    result = await check_jwks(hostile.url("/secret-key"), pair=ec_pair)

    assert codes(result.problems) == ["private_key_exposed", "key_mismatch", "invalid_signature"]


# Warnings


async def test_long_max_age_is_long_cache(hostile: HostileJwks, ec_pair: KeyPair) -> None:
    result = await check_jwks(hostile.url("/long-cache"), pair=ec_pair)

    assert result.ok
    assert codes(result.warnings) == ["not_https", "not_public", "long_cache"]
    assert "3600 s" in result.warnings[2].detail


async def test_html_for_browsers_only_is_browser_interstitial(
    hostile: HostileJwks, ec_pair: KeyPair
) -> None:
    result = await check_jwks(hostile.url("/browser-warning"), pair=ec_pair)

    assert result.ok
    assert codes(result.warnings) == ["not_https", "not_public", "browser_interstitial"]
    assert "ERR_NGROK_6024" in result.warnings[2].detail


async def test_localhost_by_name_is_not_public(hostile: HostileJwks) -> None:
    result = await check_jwks(hostile.url("/good").replace("127.0.0.1", "localhost"))

    assert "not_public" in codes(result.warnings)
    assert "loopback" in result.warnings[1].detail


async def test_every_problem_and_warning_has_a_hint(hostile: HostileJwks, ec_pair: KeyPair) -> None:
    paths = ["/wrong-key", "/wrong-alg", "/long-cache", "/browser-warning", "/redirect"]
    for path in paths:
        result = await check_jwks(hostile.url(path), pair=ec_pair)
        for problem in [*result.problems, *result.warnings]:
            assert problem.hint and problem.detail, problem


# Configuration errors


@pytest.mark.parametrize("url", ["ftp://example.com/jwks.json", "example.com/jwks.json", "http://"])
async def test_url_that_is_not_http_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="is not an http:// or https:// URL"):
        await check_jwks(url)
