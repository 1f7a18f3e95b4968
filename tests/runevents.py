"""Events of a typical `up` run, shared by the console and panel tests."""

from __future__ import annotations

from devtunnel.events import Check, Problem, Ready

PUBLIC = "https://brave-otter.ngrok-free.app"
URLS = [f"{PUBLIC}/api/.well-known/jwks", f"{PUBLIC}/jwks.json"]
KID_HINT = "set NEXT_PUBLIC_PARTNER_ID to the Partner ID AIR shows"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ready(**changes: object) -> Ready:
    fields: dict[str, object] = {
        "public_url": PUBLIC,
        "jwks_urls": URLS,
        "local_url": "http://127.0.0.1:8080",
        "tunnel": "ngrok",
        "kid": "partner-1",
        "alg": "ES256",
        "thumbprint": "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
        "url_changed": False,
    }
    return Ready(**{**fields, **changes})  # type: ignore[arg-type]


def passed(requests: int = 1, latency: float = 42.4) -> Check:
    return Check(
        ok=True, url=URLS[0], status=200, latency_ms=latency, thumbprint="tp-1", requests=requests
    )


def failed(requests: int = 1) -> Check:
    problem = Problem("kid_not_found", 'no key with kid "partner-1" in keys[]', KID_HINT)
    return Check(
        ok=False,
        url=URLS[0],
        status=200,
        latency_ms=87.0,
        thumbprint="tp-1",
        problems=[problem],
        warnings=[Problem("long_cache", "max-age=3600", "serve a max-age of 60 s or less")],
        requests=requests,
    )
