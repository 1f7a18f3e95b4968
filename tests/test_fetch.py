"""fetch parses the URL, builds the verifier's TLS trust, and warns only on what it saw."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from devtunnel.errors import ConfigError
from devtunnel.fetch import Fetcher, address_warning, browser_warning, parse_url, tls_context
from tests.conftest import free_port


@pytest.mark.parametrize("url", ["http://[::1", "http://[zz]/jwks.json"])
def test_url_that_cannot_be_parsed_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="is not an http:// or https:// URL"):
        parse_url(url)


def test_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--ca-file .*: no such file"):
        tls_context(tmp_path / "missing.pem")


def test_ca_file_without_certificates_is_a_config_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="holds no usable PEM certificate"):
        tls_context(garbage)


@pytest.mark.parametrize(
    ("host", "detail"),
    [
        ("10.1.2.3", "10.1.2.3 is a private address"),
        ("::1", "::1 is a loopback address"),
        ("100.64.0.7", "100.64.0.7 is not a public address"),
        ("8.8.8.8", None),
    ],
)
async def test_only_addresses_outside_the_internet_are_not_public(
    host: str, detail: str | None
) -> None:
    warning = await address_warning(URL.build(scheme="https", host=host, path="/"), 1.0)

    if detail is None:
        assert warning is None
    else:
        assert warning is not None
        assert warning.detail == f"{detail}: AIR's servers cannot reach it"


async def test_browser_probe_that_gets_no_answer_warns_of_nothing() -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks.json"

    async with aiohttp.ClientSession() as session:
        warning = await browser_warning(Fetcher(session, 1.0, None), url)

    assert warning is None
