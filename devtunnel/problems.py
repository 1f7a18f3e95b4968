"""The catalogue of what a check can find: each problem code with its detail and its fix.

`check` decides what is wrong; this module words it. Each function builds one
Problem (the codes are listed in DESIGN.md) with a hint phrased as the fix, so
that a code and the advice it carries live in one place. Problems fail a
check; the warnings at the end do not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from devtunnel.events import Problem
from devtunnel.jwks import thumbprint
from devtunnel.keys import KeyPair

PRIVATE_KEY_EXPOSED = "private_key_exposed"
LONG_CACHE = 600  # seconds: jose and jwks-rsa keep a JWKS up to 10 minutes anyway
_AIR_401 = "AIR answers every credential call with 401 until this is fixed"
_EXCERPT = 60


# Fetching


def timeout(seconds: float) -> Problem:
    """No complete answer within the check's time limit."""
    return Problem(
        "timeout",
        f"no complete answer within {seconds:g} s",
        "make the JWKS answer within a second or two: verifiers give up after a few "
        "seconds (jose: 5 s); is the local server stuck, or the tunnel down?",
    )


def tls_error(exc: Exception) -> Problem:
    """The TLS handshake or the certificate failed."""
    return Problem(
        "tls_error",
        f"TLS failed: {_first_line(exc)}",
        "serve HTTPS with a certificate from a public CA (ngrok and cloudflared do): AIR "
        "trusts no other; to check through a corporate or test CA, pass --ca-file or set "
        "SSL_CERT_FILE",
    )


def unreachable(url: str, exc: Exception) -> Problem:
    """The URL could not be fetched at all: refused, unknown host, reset."""
    return Problem(
        "unreachable",
        f"cannot fetch {url}: {_first_line(exc)}",
        "start what serves this URL (`devtunnel up` keeps the server and the tunnel "
        f"running) and check the host, port and scheme; {_AIR_401}",
    )


# The response


def redirect(status: int, location: str) -> Problem:
    """A redirect, which AIR does not follow."""
    return Problem(
        "redirect",
        f"status {status} redirects to {location}",
        f"register the final URL ({location}) itself: AIR does not follow redirects",
    )


def http_status(status: int, reason: str, tunnel_error: str | None = None) -> Problem:
    """Any status but 200 (and but a redirect); `tunnel_error` is an ERR_NGROK_ code on the page."""
    detail = f"status {status} {reason}".rstrip()
    if tunnel_error is not None:
        detail += f" ({tunnel_error} from the tunnel)"
    if status == 404:
        hint = "check the path: devtunnel serves /api/.well-known/jwks and /jwks.json"
    elif status in (502, 503, 504):
        hint = "start the local server behind the tunnel (`devtunnel up` runs both)"
    else:
        hint = "serve the JWKS at exactly this URL with status 200: AIR accepts nothing else"
    return Problem("http_status", detail, hint)


def body_too_big(limit: int) -> Problem:
    """A body past the read limit: no JWKS is that large."""
    return Problem(
        "not_json",
        f"the body is larger than {limit // 1024} KiB (stopped reading there)",
        "serve the JWKS document itself: it is a few kB",
    )


def interstitial(page: str) -> Problem:
    """The tunnel served its own page (`page` names it) instead of the JWKS."""
    return Problem(
        "interstitial",
        f"the tunnel served {page} instead of the JWKS",
        "fetch without a browser user agent, or send the ngrok-skip-browser-warning "
        "header; AIR's servers do, so check that this URL is the one registered",
    )


def not_json(content_type: str, text: str, html: bool) -> Problem:
    """A body that does not parse as JSON; an excerpt of `text` shows what came instead."""
    what = "an HTML page" if html else f"{_excerpt(text)!r}"
    return Problem(
        "not_json",
        f"the body is not JSON ({content_type or 'no Content-Type'}): {what}",
        'serve the JWKS document ({"keys": [...]}) at this URL, e.g. `devtunnel jwks`',
    )


def no_keys(keys: object) -> Problem:
    """JSON without a `keys` list holding at least one JWK object."""
    found = "an empty keys list" if keys == [] else "no keys list of JWK objects"
    return Problem(
        "no_keys",
        f"the JSON has {found}",
        'serve {"keys": [your public JWK]}: `devtunnel jwks` prints it',
    )


def private_key_exposed(leaked: Sequence[str]) -> Problem:
    """Private key members served, named as `kid:member`; it outranks every other problem."""
    return Problem(
        PRIVATE_KEY_EXPOSED,
        f"the JWKS publishes private key members ({', '.join(leaked)}): anyone can sign as you",
        "stop serving it now, make a new key pair (`devtunnel keygen --force`), and serve "
        "only public members (kty, n, e or crv, x, y, kid, use, alg)",
    )


# The keys


def kid_not_found(kid: str, keys: Sequence[Mapping[str, Any]]) -> Problem:
    """No served key has the kid a verifier will look for."""
    return Problem(
        "kid_not_found",
        f"no key has kid {kid!r}; the kids served are {kid_list(keys)}",
        f"serve the key with kid {kid!r} (your Partner ID), or set NEXT_PUBLIC_PARTNER_ID to "
        f"the kid served; {_AIR_401}",
    )


def duplicate_kid(kid: str, matching: Sequence[Mapping[str, Any]]) -> Problem:
    """More than one served key has the kid."""
    prints = ", ".join(thumbprint(key) for key in matching)
    return Problem(
        "duplicate_kid",
        f"{len(matching)} keys have kid {kid!r} (thumbprints {prints})",
        "serve one key per kid: some verifiers refuse the set, others use only the first key",
    )


def key_mismatch(kid: str, served: Sequence[str], local: str) -> Problem:
    """The key served under the kid is not the local public key (by thumbprint)."""
    return Problem(
        "key_mismatch",
        f"kid {kid!r} is served with thumbprint {', '.join(served)}; the local key is {local}",
        "serve the public key of the key pair that signs (restart `devtunnel up` with these "
        "keys, or update the hosted JWKS); verifiers may cache the old key up to 10 minutes",
    )


def alg_mismatch(kid: str, served: object, local: str) -> Problem:
    """The served key names another alg than the local key signs with."""
    return Problem(
        "alg_mismatch",
        f"kid {kid!r} is served with alg {served!r}; the local key signs {local}",
        f"set the served key's alg to {local} (or SIGNING_ALGORITHM to match the key)",
    )


def invalid_signature(
    pair: KeyPair, fault: str, used: Mapping[str, Any], same_key: bool
) -> Problem:
    """A fresh Partner JWT fails against the served key `used`; the hint names the likely cause."""
    if used.get("use", "sig") != "sig":
        hint = f'set the served key\'s use to "sig" (it is {used.get("use")!r})'
    elif not same_key:
        hint = "sign with the private key whose public key is served under this kid"
    else:
        hint = "serve the key exactly as `devtunnel jwks` prints it"
    return Problem(
        "invalid_signature",
        f"a fresh {pair.alg} Partner JWT with kid {pair.kid!r} fails: {fault}",
        f"{hint}; {_AIR_401}",
    )


# Warnings


def not_https(url: str) -> Problem:
    """A plain HTTP URL."""
    return Problem(
        "not_https",
        f"{url} is plain HTTP",
        "register the HTTPS URL that `devtunnel up` prints: verifiers fetch keys over HTTPS",
    )


def not_public(where: str) -> Problem:
    """A host on loopback or a private network; `where` says which address it is."""
    return Problem(
        "not_public",
        f"{where}: AIR's servers cannot reach it",
        "register the public URL that `devtunnel up` prints, not the local one",
    )


def long_cache(cache_control: str, seconds: int) -> Problem:
    """A Cache-Control max-age past LONG_CACHE: caches keep a rotated-out key that long."""
    return Problem(
        "long_cache",
        f"Cache-Control {cache_control!r}: caches may keep a rotated-out key {seconds} s",
        f"serve max-age={LONG_CACHE} or less (devtunnel serve sends no-cache by default)",
    )


def browser_interstitial(page: str, status: int) -> Problem:
    """A browser user agent gets `page` instead of the JSON; AIR's servers are not affected."""
    return Problem(
        "browser_interstitial",
        f"a browser user agent gets {page} (status {status}) instead of the JSON",
        "nothing to do for AIR, whose servers get the JSON; a browser-based fetcher needs "
        "the ngrok-skip-browser-warning request header, a paid ngrok domain or cloudflared",
    )


def kid_list(keys: Sequence[Mapping[str, Any]]) -> str:
    """The kids of these keys as a report lists them: `'a', 'b'`, or that there are none."""
    kids = [repr(key["kid"]) for key in keys if "kid" in key]
    return ", ".join(kids) if kids else "none (no key has a kid)"


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _EXCERPT else flat[:_EXCERPT] + "…"


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
