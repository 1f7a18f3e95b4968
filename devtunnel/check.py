"""Fetch a JWKS URL as a remote verifier would, and name what is wrong with it.

AIR Kit fetches the exact registered URL from its servers, as jose's
`createRemoteJWKSet` does: a server-side user agent, no redirects followed, a
short timeout, status 200 and a JSON body. `check_jwks` fetches the same way,
then runs the stages in order (reachable, status, body, safety; with a Partner
ID or local keys also kid, key, alg and signature) and gives each failure its
problem code and a hint phrased as the fix. Warnings do not fail the check.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import time
import warnings
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from devtunnel.errors import ConfigError
from devtunnel.events import SELF_CHECK_HEADER, USER_AGENT, Check, Problem
from devtunnel.jwks import PRIVATE_MEMBERS, key_thumbprint, thumbprint
from devtunnel.keys import KeyPair
from devtunnel.tokens import TokenError, sign_partner_jwt, verify_jwt

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
MAX_BODY = 1024 * 1024  # a JWKS is a few kB; read no further than this
LONG_CACHE = 600  # seconds: jose and jwks-rsa keep a JWKS up to 10 minutes anyway
_CHUNK = 64 * 1024

VERIFIER_HEADERS = {"User-Agent": USER_AGENT, SELF_CHECK_HEADER: "1", "Accept": "application/json"}
# What a browser sends, minus `ngrok-skip-browser-warning`: ngrok's free plan answers it with
# an HTML warning page (ERR_NGROK_6024), https://ngrok.com/docs/errors/err_ngrok_6024/
BROWSER_HEADERS = {
    "User-Agent": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0 Safari/537.36"
    ),
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    SELF_CHECK_HEADER: "1",
}
# Pages that tunnels put in front of the real response, by a marker each one carries.
_INTERSTITIALS = (
    ("ERR_NGROK_6024", "ngrok's browser warning page (ERR_NGROK_6024)"),
    ("ngrok-skip-browser-warning", "ngrok's browser warning page"),
    ("loca.lt", "localtunnel's reminder page"),
    ("cf-chl", "a Cloudflare challenge page"),
)
_NGROK_ERROR = re.compile(r"ERR_NGROK_\d+")
_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d+)", re.IGNORECASE)

PRIVATE_KEY_EXPOSED = "private_key_exposed"
_CA_HINT = "give a PEM file of CA certificates"
_COLOURS = ("\033[32m", "\033[31m", "\033[33m", "\033[0m")  # green, red, yellow, reset
_AIR_401 = "AIR answers every credential call with 401 until this is fixed"


@dataclass(frozen=True)
class Stage:
    """One stage of a check: its name, and either what it saw or the problem it found."""

    name: str
    note: str = ""
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class CheckResult:
    """What one check of a JWKS URL found; `ok` when no problem (warnings do not count)."""

    url: str
    ok: bool
    status: int | None
    latency_ms: float | None
    thumbprint: str | None
    problems: list[Problem]
    warnings: list[Problem]
    cache_control: str | None
    etag: str | None
    age: int | None
    requests: int
    stages: list[Stage]
    kid: str | None = None

    def to_event(self) -> Check:
        """The `check` event for this result."""
        return Check(
            ok=self.ok,
            url=self.url,
            status=self.status,
            latency_ms=self.latency_ms,
            thumbprint=self.thumbprint,
            problems=list(self.problems),
            warnings=list(self.warnings),
            requests=self.requests,
        )


@dataclass(frozen=True)
class _Response:
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    too_big: bool
    latency_ms: float

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()

    def looks_html(self) -> bool:
        return "html" in self.content_type or self.body.lstrip()[:1] == b"<"

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class _Findings:
    stages: list[Stage] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def passed(self, name: str, note: str) -> None:
        self.stages.append(Stage(name, note))

    def failed(self, name: str, problem: Problem) -> None:
        self.stages.append(Stage(name, problem=problem))

    def problems(self) -> list[Problem]:
        found = [stage.problem for stage in self.stages if stage.problem is not None]
        # A leaked private key outranks everything else: whoever reads one line must see it.
        return sorted(found, key=lambda problem: problem.code != PRIVATE_KEY_EXPOSED)


async def check_jwks(
    url: str,
    *,
    pair: KeyPair | None = None,
    kid: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (per request, as a verifier times out)
    ca_file: Path | None = None,
    browser_probe: bool = True,
    session: aiohttp.ClientSession | None = None,
) -> CheckResult:
    """Fetch `url` as AIR's servers would and check the JWKS it serves.

    `kid` (default: the pair's) is the kid the verifier will look for. With a
    private key the check also signs a fresh Partner JWT and verifies it against
    the fetched document. A `session` is reused and left open; without one a
    session is made and closed. Raises ConfigError for a URL that is not
    http(s) or a CA file that cannot be loaded.
    """
    target = _parse_url(url)
    context = tls_context(ca_file) if target.scheme == "https" else None
    if kid is None and pair is not None:
        kid = pair.kid
    if pair is not None and kid is not None and pair.kid != kid:
        pair = dataclasses.replace(pair, kid=kid)

    findings = _Findings()
    if target.scheme == "http":
        findings.warnings.append(_not_https(url))

    async with _session(session) as http:
        fetcher = _Fetcher(http, timeout, context)
        fetched, address = await asyncio.gather(
            fetcher.get(url, VERIFIER_HEADERS), _address_warning(target, timeout)
        )
        if address is not None:
            findings.warnings.append(address)
        if isinstance(fetched, Problem):
            findings.failed("reachable", fetched)
            return _result(url, findings, None, requests=1, kid=kid)

        findings.passed("reachable", f"answered in {fetched.latency_ms:.0f} ms")
        document = _judge(findings, fetched, url, pair, kid)
        cache = _long_cache(fetched.headers.get("Cache-Control"))
        if cache is not None:
            findings.warnings.append(cache)

        requests = 1
        if document is not None and browser_probe:
            requests = 2
            probe = await _browser_probe(fetcher, url)
            if probe is not None:
                findings.warnings.append(probe)

    return _result(url, findings, fetched, requests=requests, kid=kid, document=document)


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """The TLS trust for a check: the system store, plus `$SSL_CERT_FILE`, plus `ca_file`."""
    context = ssl.create_default_context()
    extra = [("SSL_CERT_FILE (environment)", os.environ.get("SSL_CERT_FILE") or None)]
    extra.append((f"--ca-file {ca_file}", str(ca_file) if ca_file is not None else None))
    for source, path in extra:
        if path is None:
            continue
        try:
            context.load_verify_locations(cafile=path)
        except FileNotFoundError:
            raise ConfigError(source, "no such file", _CA_HINT) from None
        except (ssl.SSLError, OSError, ValueError):
            raise ConfigError(source, "holds no usable PEM certificate", _CA_HINT) from None
    return context


def format_report(result: CheckResult, *, colour: bool = False) -> str:
    """The check for people: one line per stage run, the warnings, then the verdict."""
    green, red, yellow, reset = _COLOURS if colour else ("", "", "", "")
    width = max(len(stage.name) for stage in result.stages)
    lines = [f"checking {result.url}"]
    for stage in result.stages:
        if stage.problem is None:
            lines.append(f"{green}✓{reset} {stage.name:<{width}}  {stage.note}")
        else:
            problem = stage.problem
            lines.append(f"{red}✗{reset} {stage.name:<{width}}  {problem.code}: {problem.detail}")
            lines.append(f"  {'':<{width}}  fix: {problem.hint}")
    for warning in result.warnings:
        lines.append(f"{yellow}!{reset} warning  {warning.code}: {warning.detail}")
        lines.append(f"  {'':<{width}}  fix: {warning.hint}")

    if result.ok:
        verdict = f"{green}OK{reset}: a remote verifier can use this JWKS"
        if result.kid is None:
            verdict += " (structure only: give a Partner ID or keys to check kid and signature)"
    else:
        codes = ", ".join(problem.code for problem in result.problems)
        count = len(result.problems)
        verdict = f"{red}FAILED{reset}: {count} problem{'s' * (count != 1)} ({codes})"
    lines.append(verdict)
    return "\n".join(lines)


# Fetching


@asynccontextmanager
async def _session(given: aiohttp.ClientSession | None) -> AsyncIterator[aiohttp.ClientSession]:
    if given is not None:
        yield given
        return
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass(frozen=True)
class _Fetcher:
    """GET requests as a verifier sends them: exact URL, one time limit, the check's TLS trust."""

    http: aiohttp.ClientSession
    seconds: float
    context: ssl.SSLContext | None

    async def get(self, url: str, headers: Mapping[str, str]) -> _Response | Problem:
        started = time.perf_counter()
        try:
            async with self.http.get(
                url,
                headers=dict(headers),
                allow_redirects=False,  # AIR fetches the exact URL: a redirect is a failure
                timeout=aiohttp.ClientTimeout(total=self.seconds),
                ssl=self.context if self.context is not None else True,
            ) as response:
                body, too_big = await _read_limited(response)
        except TimeoutError:
            return _timeout(self.seconds)
        except aiohttp.ClientSSLError as exc:
            return _tls_error(exc)
        except (aiohttp.ClientError, OSError) as exc:
            return _unreachable(url, exc)

        latency = (time.perf_counter() - started) * 1000
        logger.debug("GET %s: %d, %d bytes, %.0f ms", url, response.status, len(body), latency)
        return _Response(
            response.status,
            response.reason or "",
            response.headers,  # case-insensitive, as HTTP header names are
            body,
            too_big,
            round(latency, 1),
        )


async def _read_limited(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    if (response.content_length or 0) > MAX_BODY:
        return b"", True
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            return b"".join(chunks)[:MAX_BODY], True
    return b"".join(chunks), False


async def _browser_probe(fetcher: _Fetcher, url: str) -> Problem | None:
    fetched = await fetcher.get(url, BROWSER_HEADERS)
    if isinstance(fetched, Problem):
        logger.debug("browser probe of %s failed: %s", url, fetched.detail)
        return None
    if not fetched.looks_html():
        return None
    what = _interstitial(fetched.text()) or "an HTML page"
    return Problem(
        "browser_interstitial",
        f"a browser user agent gets {what} (status {fetched.status}) instead of the JSON",
        "nothing to do for AIR, whose servers get the JSON; a browser-based fetcher needs "
        "the ngrok-skip-browser-warning request header, a paid ngrok domain or cloudflared",
    )


def _timeout(seconds: float) -> Problem:
    return Problem(
        "timeout",
        f"no complete answer within {seconds:g} s",
        "make the JWKS answer within a second or two: verifiers give up after a few "
        "seconds (jose: 5 s); is the local server stuck, or the tunnel down?",
    )


def _tls_error(exc: Exception) -> Problem:
    return Problem(
        "tls_error",
        f"TLS failed: {_first_line(exc)}",
        "serve HTTPS with a certificate from a public CA (ngrok and cloudflared do): AIR "
        "trusts no other; to check through a corporate or test CA, pass --ca-file or set "
        "SSL_CERT_FILE",
    )


def _unreachable(url: str, exc: Exception) -> Problem:
    return Problem(
        "unreachable",
        f"cannot fetch {url}: {_first_line(exc)}",
        "start what serves this URL (`devtunnel up` keeps the server and the tunnel "
        f"running) and check the host, port and scheme; {_AIR_401}",
    )


# Judging the response


def _judge(
    findings: _Findings, response: _Response, url: str, pair: KeyPair | None, kid: str | None
) -> dict[str, Any] | None:
    """Run the stages after `reachable`; return the JWKS document when the body is one."""
    parsed = _parse_json(response)
    # Whatever the status, a private key in any JSON served is public now: always report it.
    leak = _leak(parsed) if isinstance(parsed, dict | list) else None

    status = _status_problem(response, url)
    if status is not None:
        findings.failed("status", status)
    else:
        findings.passed("status", f"{response.status} {response.reason} ({response.content_type})")
    body = _body_problem(response, parsed) if status is None else None
    if body is not None:
        findings.failed("body", body)
    if status is not None or body is not None:
        if leak is not None:
            findings.failed("safety", leak)
        return None

    assert isinstance(parsed, dict)
    keys = [key for key in parsed["keys"] if isinstance(key, dict)]
    count = f"{len(keys)} key{'s' * (len(keys) != 1)}"
    findings.passed("body", f"a JWKS with {count}, kids {_kids(keys)}")
    if leak is not None:
        findings.failed("safety", leak)
    else:
        findings.passed("safety", "no private key members")

    if kid is not None:
        _judge_keys(findings, parsed, keys, pair, kid)
    return parsed


def _judge_keys(
    findings: _Findings,
    document: dict[str, Any],
    keys: list[dict[str, Any]],
    pair: KeyPair | None,
    kid: str,
) -> None:
    matching = [key for key in keys if key.get("kid") == kid]
    if not matching:
        findings.failed("kid", _kid_not_found(kid, keys))
        return
    if len(matching) > 1:
        findings.failed("kid", _duplicate_kid(kid, matching))
    else:
        findings.passed("kid", f"{kid!r} served once")
    if pair is None:
        return

    local = key_thumbprint(pair.public)
    served = [thumbprint(key) for key in matching]
    if local in served:
        findings.passed("key", f"thumbprint {local} is the local public key")
        used = matching[served.index(local)]
    else:
        findings.failed("key", _key_mismatch(kid, served, local))
        used = matching[0]

    alg = used.get("alg")
    if alg is not None and alg != pair.alg:
        findings.failed("alg", _alg_mismatch(kid, alg, pair.alg))
    else:
        findings.passed("alg", f"{pair.alg}" + ("" if alg else " (the served key names no alg)"))

    if pair.private is None:
        return
    token = sign_partner_jwt(pair)
    try:
        # Verifiers pick the keys by kid before they import any: other keys cannot spoil it.
        # joserfc's warnings (a weak key) would reach stderr; the failure already says enough.
        with warnings.catch_warnings(action="ignore"):
            verify_jwt(token, {**document, "keys": matching})
    except TokenError as exc:
        findings.failed("signature", _invalid_signature(pair, exc.fault, used, local in served))
    else:
        findings.passed("signature", f"a fresh {pair.alg} Partner JWT verifies")


def _parse_json(response: _Response) -> object:
    if response.too_big or not response.body.strip():
        return None
    try:
        return json.loads(response.body)
    except (ValueError, RecursionError):
        return None


def _status_problem(response: _Response, url: str) -> Problem | None:
    status = response.status
    if status == 200:
        return None
    if 300 <= status < 400 and "Location" in response.headers:
        location = str(URL(url).join(URL(response.headers["Location"])))
        return Problem(
            "redirect",
            f"status {status} redirects to {location}",
            f"register the final URL ({location}) itself: AIR does not follow redirects",
        )
    ngrok = _NGROK_ERROR.search(response.text()) if response.looks_html() else None
    detail = f"status {status} {response.reason}".rstrip()
    if ngrok is not None:
        detail += f" ({ngrok.group()} from the tunnel)"
    if status == 404:
        hint = "check the path: devtunnel serves /api/.well-known/jwks and /jwks.json"
    elif status in (502, 503, 504):
        hint = "start the local server behind the tunnel (`devtunnel up` runs both)"
    else:
        hint = "serve the JWKS at exactly this URL with status 200: AIR accepts nothing else"
    return Problem("http_status", detail, hint)


def _body_problem(response: _Response, parsed: object) -> Problem | None:
    if response.too_big:
        return Problem(
            "not_json",
            f"the body is larger than {MAX_BODY // 1024} KiB (stopped reading there)",
            "serve the JWKS document itself: it is a few kB",
        )
    text = response.text()
    if response.looks_html():
        interstitial = _interstitial(text)
        if interstitial is not None:
            return Problem(
                "interstitial",
                f"the tunnel served {interstitial} instead of the JWKS",
                "fetch without a browser user agent, or send the ngrok-skip-browser-warning "
                "header; AIR's servers do, so check that this URL is the one registered",
            )
    if parsed is None:
        what = "an HTML page" if response.looks_html() else f"{_excerpt(text)!r}"
        return Problem(
            "not_json",
            f"the body is not JSON ({response.content_type or 'no Content-Type'}): {what}",
            'serve the JWKS document ({"keys": [...]}) at this URL, e.g. `devtunnel jwks`',
        )
    keys = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(keys, list) or not any(isinstance(key, dict) for key in keys):
        found = "an empty keys list" if keys == [] else "no keys list of JWK objects"
        return Problem(
            "no_keys",
            f"the JSON has {found}",
            'serve {"keys": [your public JWK]}: `devtunnel jwks` prints it',
        )
    return None


def _leak(document: dict[str, Any] | list[Any]) -> Problem | None:
    leaked = _private_members(document)
    if not leaked:
        return None
    return Problem(
        PRIVATE_KEY_EXPOSED,
        f"the JWKS publishes private key members ({', '.join(leaked)}): anyone can sign as you",
        "stop serving it now, make a new key pair (`devtunnel keygen --force`), and serve "
        "only public members (kty, n, e or crv, x, y, kid, use, alg)",
    )


def _private_members(document: dict[str, Any] | list[Any]) -> list[str]:
    """Private members of every JWK in the document: `keys[]` entries and any object with kty."""
    keys = document.get("keys") if isinstance(document, dict) else None
    in_keys = {id(key) for key in keys} if isinstance(keys, list) else set()
    found: list[str] = []
    pending: list[object] = [document]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "kty" in node or id(node) in in_keys:
                label = node.get("kid", "a key")
                found.extend(f"{label}:{name}" for name in sorted(PRIVATE_MEMBERS & node.keys()))
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def _kid_not_found(kid: str, keys: Sequence[Mapping[str, Any]]) -> Problem:
    return Problem(
        "kid_not_found",
        f"no key has kid {kid!r}; the kids served are {_kids(keys)}",
        f"serve the key with kid {kid!r} (your Partner ID), or set NEXT_PUBLIC_PARTNER_ID to "
        f"the kid served; {_AIR_401}",
    )


def _duplicate_kid(kid: str, matching: Sequence[Mapping[str, Any]]) -> Problem:
    prints = ", ".join(thumbprint(key) for key in matching)
    return Problem(
        "duplicate_kid",
        f"{len(matching)} keys have kid {kid!r} (thumbprints {prints})",
        "serve one key per kid: some verifiers refuse the set, others use only the first key",
    )


def _key_mismatch(kid: str, served: Sequence[str], local: str) -> Problem:
    return Problem(
        "key_mismatch",
        f"kid {kid!r} is served with thumbprint {', '.join(served)}; the local key is {local}",
        "serve the public key of the key pair that signs (restart `devtunnel up` with these "
        "keys, or update the hosted JWKS); verifiers may cache the old key up to 10 minutes",
    )


def _alg_mismatch(kid: str, served: object, local: str) -> Problem:
    return Problem(
        "alg_mismatch",
        f"kid {kid!r} is served with alg {served!r}; the local key signs {local}",
        f"set the served key's alg to {local} (or SIGNING_ALGORITHM to match the key)",
    )


def _invalid_signature(
    pair: KeyPair, fault: str, used: Mapping[str, Any], same_key: bool
) -> Problem:
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


def _not_https(url: str) -> Problem:
    return Problem(
        "not_https",
        f"{url} is plain HTTP",
        "register the HTTPS URL that `devtunnel up` prints: verifiers fetch keys over HTTPS",
    )


async def _address_warning(target: URL, seconds: float) -> Problem | None:
    host = target.host or ""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            async with asyncio.timeout(seconds):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, target.port, type=socket.SOCK_STREAM
                )
        except (OSError, TimeoutError):
            return None  # the fetch reports the host as unreachable
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]

    inner = sorted({address for address in addresses if not address.is_global}, key=str)
    if not inner:
        return None
    kind = _address_kind(inner[0])
    if host == str(inner[0]):
        detail = f"{host} is {kind}"
    else:
        detail = f"{host} resolves to {', '.join(map(str, inner))} ({kind})"
    return Problem(
        "not_public",
        f"{detail}: AIR's servers cannot reach it",
        "register the public URL that `devtunnel up` prints, not the local one",
    )


def _address_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if address.is_loopback:
        return "a loopback address"
    if address.is_private:
        return "a private address"
    return "not a public address"


def _long_cache(cache_control: str | None) -> Problem | None:
    ages = [int(match) for match in _MAX_AGE.findall(cache_control or "")]
    if not ages or max(ages) <= LONG_CACHE:
        return None
    return Problem(
        "long_cache",
        f"Cache-Control {cache_control!r}: caches may keep a rotated-out key {max(ages)} s",
        f"serve max-age={LONG_CACHE} or less (devtunnel serve sends no-cache by default)",
    )


# Small helpers


def _result(
    url: str,
    findings: _Findings,
    response: _Response | None,
    *,
    requests: int,
    kid: str | None,
    document: dict[str, Any] | None = None,
) -> CheckResult:
    problems = findings.problems()
    headers: Mapping[str, str] = response.headers if response is not None else {}
    age = headers.get("Age", "")
    return CheckResult(
        url=url,
        ok=not problems,
        status=response.status if response is not None else None,
        latency_ms=response.latency_ms if response is not None else None,
        thumbprint=_served_thumbprint(document, kid),
        problems=problems,
        warnings=findings.warnings,
        cache_control=headers.get("Cache-Control"),
        etag=headers.get("ETag"),
        age=int(age) if age.isdigit() else None,
        requests=requests,
        stages=findings.stages,
        kid=kid,
    )


def _served_thumbprint(document: dict[str, Any] | None, kid: str | None) -> str | None:
    if document is None:
        return None
    keys = [key for key in document["keys"] if isinstance(key, dict)]
    chosen = next((key for key in keys if kid is not None and key.get("kid") == kid), keys[0])
    return thumbprint(chosen)


def _parse_url(url: str) -> URL:
    try:
        target = URL(url)
    except (ValueError, TypeError):
        target = URL()
    if target.scheme not in ("http", "https") or not target.host:
        raise ConfigError(
            f"URL {url}",
            "is not an http:// or https:// URL",
            "give the full JWKS URL, e.g. https://your-domain.ngrok-free.app/jwks.json",
        )
    return target


def _interstitial(text: str) -> str | None:
    return next((name for marker, name in _INTERSTITIALS if marker in text), None)


def _kids(keys: Sequence[Mapping[str, Any]]) -> str:
    kids = [repr(key["kid"]) for key in keys if "kid" in key]
    return ", ".join(kids) if kids else "none (no key has a kid)"


def _excerpt(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
