"""The tunnel factory and the `none` provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtunnel.errors import ConfigError
from devtunnel.tunnels import CloudflaredTunnel, NgrokTunnel, NoTunnel, make_tunnel


@pytest.mark.parametrize(
    ("kind", "provider"),
    [("ngrok", NgrokTunnel), ("cloudflared", CloudflaredTunnel), ("none", NoTunnel)],
)
def test_the_factory_builds_the_named_provider(kind: str, provider: type) -> None:
    tunnel = make_tunnel(kind, ngrok_path=Path("ngrok"), cloudflared_path=Path("cloudflared"))

    assert isinstance(tunnel, provider)
    assert tunnel.name == kind
    assert tunnel.public_url is None
    assert not tunnel.alive()


def test_an_unknown_kind_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError) as caught:
        make_tunnel("localtunnel")

    assert caught.value.source == "--tunnel"
    assert caught.value.hint == "choose one of ngrok, cloudflared, none"


def test_only_ngrok_takes_a_domain() -> None:
    with pytest.raises(ConfigError) as caught:
        make_tunnel("cloudflared", domain="jwks.example.com")

    assert caught.value.source == "--domain"


async def test_no_tunnel_serves_the_local_url_until_stopped() -> None:
    tunnel = make_tunnel("none")

    url = await tunnel.start("http://127.0.0.1:8080/")

    assert url == "http://127.0.0.1:8080"
    assert tunnel.public_url == url
    assert tunnel.alive()
    await tunnel.stop()
    await tunnel.stop()
    assert not tunnel.alive()
    assert tunnel.public_url is None
