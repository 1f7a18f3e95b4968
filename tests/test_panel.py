"""The live panel: the state folded from events, and what the panel shows of it."""

from __future__ import annotations

import pytest
from rich.console import Console as RichConsole

from devtunnel.events import Check, Fetch, Problem, Reload, Tunnel
from devtunnel.panel import RunState, age_text, render_panel
from tests.runevents import KID_HINT, PUBLIC, URLS, Clock, failed, passed, ready


def test_state_counts_checks_requests_and_outside_fetches() -> None:
    state = RunState()

    for event in [ready(), passed(requests=2), failed(requests=3), passed(requests=2)]:
        state.apply(event)
    state.apply(Fetch(path="/jwks.json", client="1.2.3.4", user_agent="AIR", status=200, count=4))
    state.apply(Fetch(path="/jwks.json", client="5.6.7.8", user_agent="AIR", status=200))

    assert (state.checks_passed, state.checks_failed, state.requests_sent) == (2, 1, 7)
    assert state.fetches == 5
    assert state.last_fetch is not None
    assert state.last_fetch.client == "5.6.7.8"


def test_state_ages_count_up_with_the_clock() -> None:
    clock = Clock()
    state = RunState(clock=clock)

    assert state.age("check") == "never"
    state.apply(passed())
    clock.now += 12.7
    assert state.age("check") == "12 s ago"
    clock.now += 60
    assert state.age("check") == "1 min ago"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-0.2, "0 s ago"), (0.9, "0 s ago"), (59.9, "59 s ago"), (60, "1 min ago"), (7300, "2 h ago")],
)
def test_age_text(seconds: float, text: str) -> None:
    assert age_text(seconds) == text


def test_a_passing_check_clears_the_problems_of_a_failed_one() -> None:
    state = RunState()

    state.apply(failed())
    assert [p.code for p in state.problems] == ["kid_not_found"]
    assert [w.code for w in state.warnings] == ["long_cache"]

    state.apply(passed())
    assert state.problems == []
    assert state.warnings == []


def test_a_broken_key_file_stays_a_problem_until_a_reload_succeeds() -> None:
    state = RunState()
    bad = Problem("config", "PARTNER_PUBLIC_KEY: not a PEM", "run keygen")

    state.apply(ready())
    state.apply(Reload(ok=False, kid=None, thumbprint=None, problems=[bad], source=".env"))
    state.apply(passed())
    assert state.problems == [bad]
    assert state.kid == "partner-1"

    state.apply(Reload(ok=True, kid="partner-2", thumbprint="tp-2", source=".env"))
    assert state.problems == []
    assert (state.kid, state.thumbprint) == ("partner-2", "tp-2")


def test_a_restarted_tunnel_moves_the_jwks_urls_to_its_new_address() -> None:
    state = RunState()

    state.apply(ready())
    state.apply(Tunnel(state="down", public_url=None))
    assert state.tunnel_state == "down"
    state.apply(Tunnel(state="restarted", public_url="https://calm.trycloudflare.com"))

    assert state.tunnel_state == "up"
    assert state.jwks_urls == [
        "https://calm.trycloudflare.com/api/.well-known/jwks",
        "https://calm.trycloudflare.com/jwks.json",
    ]


def test_panel_shows_url_keys_latency_requests_fetches_and_hints() -> None:
    clock = Clock()
    state = RunState(clock=clock)
    for event in [ready(), passed(requests=2), failed(requests=3)]:
        state.apply(event)
    state.apply(Fetch(path="/jwks.json", client="1.2.3.4", user_agent="AIR/1.0", status=200))
    state.apply(Reload(ok=True, kid="partner-1", thumbprint="tp-1", source=".env.local"))
    clock.now += 5
    recorder = RichConsole(record=True, width=100)

    recorder.print(render_panel(state))

    text = recorder.export_text()
    assert PUBLIC in text
    assert "kid partner-1 · ES256" in text
    assert "thumbprint    tp-1" in text  # the reload replaced the key
    assert "FAILED 200 · 87 ms · 5 s ago" in text
    assert "5 sent through the tunnel" in text
    assert "1 passed · 1 failed" in text
    assert "1.2.3.4 (AIR/1.0) /jwks.json 200 · 5 s ago · 1 in total" in text
    assert "ok kid=partner-1 (from .env.local)" in text
    assert f"fix: {KID_HINT}" in text
    assert "long_cache" in text


def test_panel_before_any_check_says_so() -> None:
    state = RunState()
    state.apply(ready())
    state.apply(Reload(ok=False, kid=None, thumbprint=None, source=".env"))
    recorder = RichConsole(record=True, width=100)

    recorder.print(render_panel(state))

    text = recorder.export_text()
    assert "none yet" in text
    assert "FAILED (from .env)" in text
    assert "problems      none" in text


def test_a_problem_without_a_hint_shows_no_fix_line() -> None:
    bad = Problem("config", ".env: NEXT_PUBLIC_PARTNER_ID is empty", "")
    state = RunState()
    state.apply(Reload(ok=False, kid=None, thumbprint=None, problems=[bad], source=".env"))
    recorder = RichConsole(record=True, width=100)

    recorder.print(render_panel(state))

    assert "config — .env: NEXT_PUBLIC_PARTNER_ID is empty" in recorder.export_text()
    assert "fix:" not in recorder.export_text()


def test_a_rotation_shows_how_soon_the_new_key_was_live() -> None:
    state = RunState()
    rotated = Check(
        ok=True, url=PUBLIC + "/jwks.json", status=200, latency_ms=3.0, thumbprint="tp-2",
        requests=1, propagation_ms=84.6,
    )  # fmt: skip
    for event in [ready(), Reload(ok=True, kid="p", thumbprint="tp-2", source=".env"), rotated]:
        state.apply(event)
    recorder = RichConsole(record=True, width=120)

    recorder.print(render_panel(state))

    assert "ok kid=p (from .env) · 0 s ago · live through the tunnel in 85 ms" in (
        recorder.export_text()
    )


def test_panel_lists_warnings_apart_from_problems() -> None:
    state = RunState()
    warned = Check(
        ok=True, url=URLS[0], status=200, latency_ms=4.0, thumbprint="tp-1",
        warnings=[Problem("long_cache", "max-age=3600", "serve a max-age of 60 s or less")],
    )  # fmt: skip
    for event in [ready(), warned]:
        state.apply(event)
    recorder = RichConsole(record=True, width=120)

    recorder.print(render_panel(state))

    text = recorder.export_text()
    assert "problems      none" in text
    assert "warnings      long_cache" in text
