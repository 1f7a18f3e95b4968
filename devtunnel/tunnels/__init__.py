"""Tunnel providers behind one interface: ngrok (through pyngrok), cloudflared, none.

`make_tunnel` builds the provider that `--tunnel` names; `session` drives it through
`Tunnel.start`, `Tunnel.alive` and `Tunnel.stop`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from devtunnel.errors import ConfigError
from devtunnel.tunnels.base import Tunnel
from devtunnel.tunnels.cloudflared import CloudflaredTunnel
from devtunnel.tunnels.ngrok import NgrokTunnel
from devtunnel.tunnels.none import NoTunnel

__all__ = ["KINDS", "CloudflaredTunnel", "NgrokTunnel", "NoTunnel", "Tunnel", "make_tunnel"]

KINDS = ("ngrok", "cloudflared", "none")


def make_tunnel(
    kind: str,
    *,
    ngrok_path: Path | None = None,
    cloudflared_path: Path | None = None,
    domain: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Tunnel:
    """The provider for `kind` ("ngrok", "cloudflared" or "none"), not yet started.

    `environ` (default: os.environ) is where the providers look for PATH,
    PYNGROK_NGROK_PATH, HOME and XDG_CONFIG_HOME.
    """
    if domain and kind != "ngrok":
        raise ConfigError("--domain", f"only ngrok can ask for a domain, not {kind}", "drop it")
    if kind == "ngrok":
        return NgrokTunnel(ngrok_path=ngrok_path, domain=domain, environ=environ)
    if kind == "cloudflared":
        return CloudflaredTunnel(cloudflared_path=cloudflared_path, environ=environ)
    if kind == "none":
        return NoTunnel()
    raise ConfigError("--tunnel", f"unknown tunnel {kind!r}", f"choose one of {', '.join(KINDS)}")
