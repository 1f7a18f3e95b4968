"""The console: JSON lines, plain lines, the banner, colour rules and the live display."""

from __future__ import annotations

import io
import json
import re

import pytest

from devtunnel.check import CheckResult, Stage
from devtunnel.console import check_report, make_console, print_check_report
from devtunnel.events import Check, Event, Fetch, Problem, Reload, Stopped, Tunnel
from devtunnel.keys import DEFAULT_KID
from tests.runevents import KID_HINT, PUBLIC, URLS, failed, passed, ready

SGR = re.compile(r"\x1b\[[0-9;]*m")  # colour and bold: what NO_COLOR forbids
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # rich's cursor moves around a live panel
REGISTER = "Register it in AIR: Developer Dashboard → Account → General Settings → JWKS URL"


class TtyBuffer(io.StringIO):
    """A stdout that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def plain_lines(*events: Event, **options: bool) -> list[str]:
    out = io.StringIO()
    console = make_console(json_mode=False, stdout=out, **options)  # type: ignore[arg-type]
    for event in events:
        console.emit(event)
    console.close()
    return out.getvalue().splitlines()


def test_json_mode_writes_one_parseable_line_per_event_and_notes_only_to_stderr() -> None:
    out, err = io.StringIO(), io.StringIO()
    console = make_console(json_mode=True, stdout=out, stderr=err)
    events: list[Event] = [ready(), failed(), Stopped(reason="interrupted")]

    console.note("no key configured: using an ephemeral ES256 key")
    for event in events:
        console.emit(event)
    console.note("--tunnel none: AIR cannot reach this URL", level="warning")
    console.close()

    lines = out.getvalue().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["ready", "check", "stopped"]
    assert json.loads(lines[1])["problems"][0]["hint"] == KID_HINT
    assert err.getvalue().splitlines() == [
        "no key configured: using an ephemeral ES256 key",
        "warning: --tunnel none: AIR cannot reach this URL",
    ]


def test_banner_puts_each_jwks_url_alone_on_its_line() -> None:
    lines = plain_lines(ready())

    for url in URLS:
        assert url in lines
    assert REGISTER in lines
    assert all(line == line.rstrip() for line in lines)
    assert "  kid         partner-1" in lines
    assert "  alg         ES256" in lines
    assert "  tunnel      ngrok" in lines


def test_long_url_is_never_wrapped_off_a_terminal() -> None:
    long_url = f"https://{'a' * 230}.ngrok-free.app/jwks.json"

    assert long_url in plain_lines(ready(jwks_urls=[long_url]))


@pytest.mark.parametrize(
    ("changed", "expected"),
    [(False, "unchanged — nothing to re-register"), (True, "CHANGED — re-register it")],
)
def test_banner_says_whether_the_url_changed_since_the_last_run(
    changed: bool, expected: str
) -> None:
    lines = plain_lines(ready(url_changed=changed))

    assert f"  URL         {expected}" in lines


def test_banner_warns_that_a_local_url_cannot_be_reached_by_air() -> None:
    lines = plain_lines(ready(tunnel="none", jwks_urls=["http://127.0.0.1:8080/jwks.json"]))

    assert "http://127.0.0.1:8080/jwks.json" in lines
    assert "  warning: --tunnel none: this URL is local only; AIR cannot reach it" in lines
    assert not any("re-register" in line for line in lines)


def test_banner_warns_that_the_default_kid_gets_401_from_air() -> None:
    text = "\n".join(plain_lines(ready(kid=DEFAULT_KID)))

    assert f"kid is {DEFAULT_KID}: AIR will answer 401 until NEXT_PUBLIC_PARTNER_ID is set" in text


def test_check_lines_name_the_problem_its_detail_and_the_fix() -> None:
    lines = plain_lines(passed(latency=41.6), failed())

    assert lines == [
        "check ok 200 42 ms thumbprint tp-1",
        'check FAILED: kid_not_found — no key with kid "partner-1" in keys[]',
        f"  fix: {KID_HINT}",
        "  warning: long_cache — max-age=3600",
        "  fix: serve a max-age of 60 s or less",
    ]


def test_plain_lines_for_reloads_fetches_tunnel_changes_and_stop() -> None:
    bad_key = Problem("config", "PARTNER_PRIVATE_KEY in .env.local: not a PEM", "run keygen")
    events: list[Event] = [
        ready(),
        Reload(ok=True, kid="partner-2", thumbprint="tp-2", source=".env.local"),
        Reload(ok=False, kid=None, thumbprint=None, problems=[bad_key], source=".env.local"),
        Fetch(path="/jwks.json", client="1.2.3.4", user_agent="AIR/1.0", status=200, count=3),
        Fetch(path="/jwks.json", client="1.2.3.4", user_agent="", status=304),
        Tunnel(state="down", public_url=None),
        Tunnel(state="restarted", public_url=PUBLIC),
        Tunnel(state="restarted", public_url="https://calm-heron.ngrok-free.app", url_changed=True),
        Stopped(reason="interrupted"),
    ]

    lines = plain_lines(*events)

    assert lines[lines.index("reload ok kid=partner-2 thumbprint=tp-2 (from .env.local)") :] == [
        "reload ok kid=partner-2 thumbprint=tp-2 (from .env.local)",
        "reload FAILED (.env.local) — still serving the last good keys",
        "  problem: config — PARTNER_PRIVATE_KEY in .env.local: not a PEM",
        "  fix: run keygen",
        "fetch /jwks.json from 1.2.3.4 (AIR/1.0) 200 \N{MULTIPLICATION SIGN}3",
        "fetch /jwks.json from 1.2.3.4 (no user agent) 304",
        "tunnel down",
        f"tunnel restarted {PUBLIC} (same URL)",
        "tunnel restarted https://calm-heron.ngrok-free.app (URL CHANGED — re-register it)",
        "https://calm-heron.ngrok-free.app/api/.well-known/jwks",
        "https://calm-heron.ngrok-free.app/jwks.json",
        "stopped (interrupted)",
    ]


def test_a_failed_check_without_a_named_problem_still_says_failed() -> None:
    check = Check(ok=False, url=URLS[0], status=None, latency_ms=None, thumbprint=None)

    assert plain_lines(check) == ["check FAILED None"]


def test_an_event_without_a_plain_form_is_shown_as_json() -> None:
    lines = plain_lines(Event(time="2025-01-01T00:00:00.000Z"))

    assert lines == ['{"event":"event","time":"2025-01-01T00:00:00.000Z"}']


def test_notes_say_their_level_once() -> None:
    out = io.StringIO()
    console = make_console(json_mode=False, stdout=out)

    console.note("no key configured: using an ephemeral ES256 key")
    console.note("warning: --tunnel none: AIR cannot reach it", level="warning")
    console.note("tunnel gave up", level="error")
    console.close()

    assert out.getvalue().splitlines() == [
        "no key configured: using an ephemeral ES256 key",
        "warning: --tunnel none: AIR cannot reach it",
        "error: tunnel gave up",
    ]


def test_colour_only_on_a_terminal() -> None:
    tty = TtyBuffer()
    console = make_console(json_mode=False, stdout=tty, live=False)
    console.emit(passed())
    console.emit(failed())

    assert SGR.search(tty.getvalue())
    assert not any(SGR.search(line) for line in plain_lines(ready(), passed(), failed()))


def test_colour_goes_on_values_not_on_labels() -> None:
    tty = TtyBuffer()
    make_console(json_mode=False, stdout=tty, live=False).emit(ready())

    lines = tty.getvalue().splitlines()
    url_line = next(line for line in lines if URLS[0] in line)
    assert SGR.sub("", url_line) == URLS[0]
    assert lines[len(URLS) + 1] == REGISTER


def test_no_color_removes_every_colour_even_on_a_forced_live_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    tty = TtyBuffer()

    console = make_console(json_mode=False, stdout=tty, live=True, color=True)
    console.emit(ready(url_changed=True))
    console.emit(failed())
    console.note("careful", level="warning")
    console.close()

    assert "kid_not_found" in tty.getvalue()
    assert not SGR.search(tty.getvalue())
    assert URLS[0] in tty.getvalue().splitlines()


def test_empty_no_color_leaves_colour_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "")
    tty = TtyBuffer()

    make_console(json_mode=False, stdout=tty, live=False).emit(passed())

    assert SGR.search(tty.getvalue())


def test_live_console_prints_the_banner_then_a_panel_and_a_closing_line() -> None:
    out = io.StringIO()
    console = make_console(json_mode=False, stdout=out, live=True)

    console.emit(ready())
    console.emit(passed(requests=2))
    console.emit(failed(requests=1))
    console.note("reloaded from .env.local")
    console.emit(Stopped(reason="interrupted"))
    console.close()
    console.close()

    text = out.getvalue()
    lines = text.splitlines()
    assert lines[1:3] == URLS
    assert "reloaded from .env.local" in text
    assert KID_HINT in text  # the panel's problems, as the run left them
    assert CONTROL.sub("", lines[-1]) == (
        "stopped (interrupted) · checks: 1 passed, 1 failed · 3 requests sent through the tunnel"
    )


def test_live_console_on_a_terminal_redraws_in_place() -> None:
    tty = TtyBuffer()
    console = make_console(json_mode=False, stdout=tty)

    console.emit(ready())
    console.close()

    assert "\x1b[?25l" in tty.getvalue()  # rich hid the cursor while the panel ran
    last = CONTROL.sub("", tty.getvalue().splitlines()[-1])
    assert last == "stopped · checks: 0 passed, 0 failed · 0 requests sent through the tunnel"


def test_a_failed_reload_without_a_hint_shows_no_fix_line() -> None:
    bad = Problem("config", ".env: NEXT_PUBLIC_PARTNER_ID is empty", "")
    reload = Reload(ok=False, kid=None, thumbprint=None, problems=[bad], source=".env")

    assert plain_lines(reload) == [
        "reload FAILED (.env) — still serving the last good keys",
        "  problem: config — .env: NEXT_PUBLIC_PARTNER_ID is empty",
    ]


def test_a_live_console_closed_before_any_event_prints_only_its_closing_line() -> None:
    out = io.StringIO()
    console = make_console(json_mode=False, stdout=out, live=True)

    console.note("starting ngrok")
    console.close()

    assert out.getvalue().splitlines() == [
        "starting ngrok",
        "stopped · checks: 0 passed, 0 failed · 0 requests sent through the tunnel",
    ]


# The `devtunnel check` report

UNREACHABLE = Problem("unreachable", "refused", "start it")
LEAK = Problem("private_key_exposed", "the JWKS publishes private key members (k:d)", "rotate")


def check_result(
    *stages: Stage, warnings: tuple[Problem, ...] = (), kid: str | None = "partner-1"
) -> CheckResult:
    problems = [stage.problem for stage in stages if stage.problem is not None]
    return CheckResult(
        url="http://127.0.0.1:1/jwks.json",
        ok=not problems,
        status=None,
        latency_ms=None,
        thumbprint=None,
        problems=problems,
        warnings=list(warnings),
        cache_control=None,
        etag=None,
        age=None,
        requests=1,
        stages=list(stages),
        kid=kid,
    )


def test_check_report_lines_up_stages_fixes_and_warnings_then_the_verdict() -> None:
    result = check_result(
        Stage("reachable", "answered in 3 ms"),
        Stage("kid", problem=Problem("kid_not_found", "no key has kid 'p'", "serve it")),
        warnings=(Problem("not_https", "plain HTTP", "use HTTPS"),),
    )

    assert [line.plain for line in check_report(result)] == [
        "checking http://127.0.0.1:1/jwks.json",
        "✓ reachable  answered in 3 ms",
        "✗ kid        kid_not_found: no key has kid 'p'",
        "             fix: serve it",
        "! warning  not_https: plain HTTP",
        "             fix: use HTTPS",
        "FAILED: 1 problem (kid_not_found)",
    ]


def test_check_report_verdict_counts_and_names_the_problems() -> None:
    one = check_result(Stage("safety", problem=LEAK))
    two = check_result(Stage("reachable", problem=UNREACHABLE), Stage("safety", problem=LEAK))

    assert check_report(one)[-1].plain == "FAILED: 1 problem (private_key_exposed)"
    assert check_report(two)[-1].plain == "FAILED: 2 problems (unreachable, private_key_exposed)"


def test_check_report_without_a_kid_says_it_checked_the_structure_only() -> None:
    with_kid = check_result(Stage("body", "a JWKS with 1 key"))
    without = check_result(Stage("body", "a JWKS with 1 key"), kid=None)

    assert check_report(with_kid)[-1].plain == "OK: a remote verifier can use this JWKS"
    assert "structure only" in check_report(without)[-1].plain


def test_check_report_colours_marks_only_on_a_terminal_and_never_with_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = check_result(Stage("reachable", problem=UNREACHABLE))
    pipe, terminal, no_color = io.StringIO(), TtyBuffer(), TtyBuffer()

    print_check_report(result, pipe)
    print_check_report(result, terminal)
    monkeypatch.setenv("NO_COLOR", "1")
    print_check_report(result, no_color)

    assert "\033[" not in pipe.getvalue()
    assert "\033[1;31m✗\033[0m reachable" in terminal.getvalue()
    assert "\033[1;31mFAILED\033[0m: 1 problem" in terminal.getvalue()
    assert no_color.getvalue() == pipe.getvalue()


def test_a_rotation_check_says_how_soon_the_new_key_was_live() -> None:
    rotated = Check(
        ok=True, url=PUBLIC + "/jwks.json", status=200, latency_ms=3.0, thumbprint="tp-2",
        requests=1, propagation_ms=84.6,
    )  # fmt: skip

    assert plain_lines(rotated) == [
        "check ok 200 3 ms thumbprint tp-2 (new key live 85 ms after the change)"
    ]


def test_log_records_become_notes_on_stderr_in_json_mode() -> None:
    import logging

    from devtunnel.console import NoteHandler

    out, err = io.StringIO(), io.StringIO()
    logger = logging.getLogger("devtunnel.test-notes")
    logger.propagate = False
    handler = NoteHandler(make_console(json_mode=True, stdout=out, stderr=err))
    logger.addHandler(handler)
    try:
        logger.warning("the %s tunnel died; restarting it", "ngrok")
        logger.error("gave up")
    finally:
        logger.removeHandler(handler)

    assert out.getvalue() == ""
    assert err.getvalue().splitlines() == [
        "warning: the ngrok tunnel died; restarting it",
        "error: gave up",
    ]
