"""Judge a JWKS URL as a remote verifier would, and name what is wrong with it.

`check_jwks` fetches the URL as AIR Kit's servers do (see `devtunnel.fetch`),
then runs the stages in order (reachable, status, body, safety; with a Partner
ID or local keys also kid, key, alg and signature) and gives each failure its
problem code and a hint phrased as the fix. Warnings do not fail the check.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from devtunnel import problems
from devtunnel.events import Check, Problem
from devtunnel.fetch import (
    DEFAULT_TIMEOUT,
    MAX_BODY,
    VERIFIER_HEADERS,
    Fetcher,
    Response,
    address_warning,
    browser_warning,
    open_session,
    parse_url,
    tls_context,
)
from devtunnel.jwks import key_thumbprint, private_members, thumbprint
from devtunnel.keys import KeyPair
from devtunnel.tokens import TokenError, sign_partner_jwt, verify_jwt

_NGROK_ERROR = re.compile(r"ERR_NGROK_\d+")
_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


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
        return sorted(found, key=lambda problem: problem.code != problems.PRIVATE_KEY_EXPOSED)


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
    target = parse_url(url)
    context = tls_context(ca_file) if target.scheme == "https" else None
    if kid is None and pair is not None:
        kid = pair.kid
    if pair is not None and kid is not None and pair.kid != kid:
        pair = dataclasses.replace(pair, kid=kid)

    findings = _Findings()
    if target.scheme == "http":
        findings.warnings.append(problems.not_https(url))

    async with open_session(session) as http:
        fetcher = Fetcher(http, timeout, context)
        fetched, address = await asyncio.gather(
            fetcher.get(url, VERIFIER_HEADERS), address_warning(target, timeout)
        )
        if address is not None:
            findings.warnings.append(address)
        if isinstance(fetched, Problem):
            findings.failed("reachable", fetched)
            return _result(url, findings, None, requests=1, kid=kid)

        findings.passed("reachable", f"answered in {fetched.latency_ms:.0f} ms")
        document = _judge(findings, fetched, url, pair, kid)
        cache = _cache_warning(fetched.headers.get("Cache-Control"))
        if cache is not None:
            findings.warnings.append(cache)

        requests = 1
        if document is not None and browser_probe:
            requests = 2
            probe = await browser_warning(fetcher, url)
            if probe is not None:
                findings.warnings.append(probe)

    return _result(url, findings, fetched, requests=requests, kid=kid, document=document)


# Judging the response


def _judge(
    findings: _Findings, response: Response, url: str, pair: KeyPair | None, kid: str | None
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
    keys = _keys(parsed)
    count = f"{len(keys)} key{'s' * (len(keys) != 1)}"
    findings.passed("body", f"a JWKS with {count}, kids {problems.kid_list(keys)}")
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
        findings.failed("kid", problems.kid_not_found(kid, keys))
        return
    if len(matching) > 1:
        findings.failed("kid", problems.duplicate_kid(kid, matching))
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
        findings.failed("key", problems.key_mismatch(kid, served, local))
        used = matching[0]

    alg = used.get("alg")
    if alg is not None and alg != pair.alg:
        findings.failed("alg", problems.alg_mismatch(kid, alg, pair.alg))
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
        failure = problems.invalid_signature(pair, exc.fault, used, local in served)
        findings.failed("signature", failure)
    else:
        findings.passed("signature", f"a fresh {pair.alg} Partner JWT verifies")


def _parse_json(response: Response) -> object:
    if response.too_big or not response.body.strip():
        return None
    try:
        return json.loads(response.body)
    except (ValueError, RecursionError):
        return None


def _status_problem(response: Response, url: str) -> Problem | None:
    status = response.status
    if status == 200:
        return None
    if 300 <= status < 400 and "Location" in response.headers:
        location = str(URL(url).join(URL(response.headers["Location"])))
        return problems.redirect(status, location)
    ngrok = _NGROK_ERROR.search(response.text()) if response.looks_html() else None
    return problems.http_status(status, response.reason, ngrok.group() if ngrok else None)


def _body_problem(response: Response, parsed: object) -> Problem | None:
    if response.too_big:
        return problems.body_too_big(MAX_BODY)
    page = response.interstitial()
    if page is not None:
        return problems.interstitial(page)
    if parsed is None:
        return problems.not_json(response.content_type, response.text(), response.looks_html())
    keys = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(keys, list) or not any(isinstance(key, dict) for key in keys):
        return problems.no_keys(keys)
    return None


def _leak(document: dict[str, Any] | list[Any]) -> Problem | None:
    leaked = private_members(document)
    return problems.private_key_exposed(leaked) if leaked else None


# Warnings


def _cache_warning(cache_control: str | None) -> Problem | None:
    ages = [int(match) for match in _MAX_AGE.findall(cache_control or "")]
    if cache_control is None or not ages or max(ages) <= problems.LONG_CACHE:
        return None
    return problems.long_cache(cache_control, max(ages))


# Small helpers


def _result(
    url: str,
    findings: _Findings,
    response: Response | None,
    *,
    requests: int,
    kid: str | None,
    document: dict[str, Any] | None = None,
) -> CheckResult:
    found = findings.problems()
    headers: Mapping[str, str] = response.headers if response is not None else {}
    age = headers.get("Age", "")
    return CheckResult(
        url=url,
        ok=not found,
        status=response.status if response is not None else None,
        latency_ms=response.latency_ms if response is not None else None,
        thumbprint=_served_thumbprint(document, kid),
        problems=found,
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
    keys = _keys(document)
    chosen = next((key for key in keys if kid is not None and key.get("kid") == kid), keys[0])
    return thumbprint(chosen)


def _keys(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The JWKs of a document that passed the body stage (its `keys` holds at least one)."""
    return [key for key in document["keys"] if isinstance(key, dict)]
