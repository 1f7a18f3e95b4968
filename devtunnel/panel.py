"""The live panel of `devtunnel up`: the run's state folded from its events, and its rendering.

`RunState` knows only what the events said; `render_panel` draws it in the spirit of ngrok's
own console. The styles here are the console's palette: colour on values, never on labels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from devtunnel.events import Check, Event, Fetch, Problem, Ready, Reload, Stopped, Tunnel

OK = "green"
FAILED = "bold red"
WARNING = "yellow"
VALUE = "bold"


@dataclass
class RunState:
    """What the live panel shows, derived only from the events received."""

    clock: Callable[[], float] = time.monotonic
    public_url: str | None = None
    jwks_urls: list[str] = field(default_factory=list)
    tunnel: str = "?"
    tunnel_state: str = "starting"
    kid: str | None = None
    alg: str | None = None
    thumbprint: str | None = None
    seen: dict[str, float] = field(default_factory=dict)  # event name -> clock when last seen
    last_check: Check | None = None
    checks_passed: int = 0
    checks_failed: int = 0
    requests_sent: int = 0
    last_fetch: Fetch | None = None
    fetches: int = 0
    last_reload: Reload | None = None
    check_problems: list[Problem] = field(default_factory=list)
    reload_problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    propagation_ms: float | None = None  # the last rotation: change seen → served publicly
    stopped: str | None = None

    @property
    def problems(self) -> list[Problem]:
        """What is wrong now: a broken key file stays listed until a reload succeeds."""
        return [*self.reload_problems, *self.check_problems]

    def apply(self, event: Event) -> None:
        """Fold one event into the state."""
        self.seen[event.name] = self.clock()
        match event:
            case Ready():
                self.public_url, self.jwks_urls = event.public_url, list(event.jwks_urls)
                self.tunnel, self.tunnel_state = event.tunnel, "up"
                self.kid, self.alg, self.thumbprint = event.kid, event.alg, event.thumbprint
            case Check():
                self.last_check = event
                self.checks_passed += event.ok
                self.checks_failed += not event.ok
                self.requests_sent += event.requests
                if event.propagation_ms is not None:
                    self.propagation_ms = event.propagation_ms
                self.check_problems = [] if event.ok else list(event.problems)
                self.warnings = list(event.warnings)
            case Fetch():
                self.last_fetch = event
                self.fetches += event.count
            case Reload():
                self.last_reload = event
                self.reload_problems = [] if event.ok else list(event.problems)
                if event.ok:
                    self.kid, self.thumbprint = event.kid, event.thumbprint
                    self.alg = event.alg or self.alg
            case Tunnel():
                self.tunnel_state = "down" if event.state == "down" else "up"
                if event.public_url and event.public_url != self.public_url:
                    old, self.public_url = self.public_url or "", event.public_url
                    self.jwks_urls = [event.public_url + url[len(old) :] for url in self.jwks_urls]
            case Stopped():
                self.stopped = event.reason

    def age(self, name: str) -> str:
        """How long ago the last event of this name came, as the panel shows it."""
        at = self.seen.get(name)
        return "never" if at is None else age_text(self.clock() - at)


def age_text(seconds: float) -> str:
    """'12 s ago', '3 min ago', '2 h ago'."""
    if seconds < 60:
        return f"{max(0, int(seconds))} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    return f"{int(seconds // 3600)} h ago"


def render_panel(state: RunState) -> Panel:
    """The status panel, in the spirit of ngrok's own console."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column()
    tunnel_style = OK if state.tunnel_state == "up" else FAILED
    grid.add_row("public URL", Text.assemble((state.public_url or "-", VALUE)))
    grid.add_row("tunnel", Text.assemble(f"{state.tunnel} · ", (state.tunnel_state, tunnel_style)))
    grid.add_row("keys", f"kid {state.kid} · {state.alg}")
    grid.add_row("thumbprint", str(state.thumbprint))
    grid.add_row("last check", _check_cell(state))
    grid.add_row(
        "checks",
        Text.assemble((str(state.checks_passed), OK), " passed · ")
        + Text.assemble((str(state.checks_failed), FAILED if state.checks_failed else ""))
        + Text(" failed"),
    )
    grid.add_row("own requests", f"{state.requests_sent} sent through the tunnel by devtunnel")
    grid.add_row("last fetch", _fetch_cell(state))
    grid.add_row("last reload", _reload_cell(state))

    if not state.problems:
        grid.add_row("problems", Text.assemble(("none", OK)))
    for label, items, style in (
        ("problems", state.problems, FAILED),
        ("warnings", state.warnings, WARNING),
    ):
        for index, problem in enumerate(items):
            cell = Text.assemble((problem.code, style), f" — {problem.detail}")
            if problem.hint:
                cell.append(f"\nfix: {problem.hint}")
            grid.add_row(label if index == 0 else "", cell)
    return Panel(grid, title="devtunnel", title_align="left", expand=False)


def _check_cell(state: RunState) -> Text:
    check = state.last_check
    if check is None:
        return Text("none yet")
    verdict = ("ok", OK) if check.ok else ("FAILED", FAILED)
    return Text.assemble(
        verdict, f" {check.status or '-'} · {latency_text(check.latency_ms)} · ",
        state.age("check"),
    )  # fmt: skip


def _fetch_cell(state: RunState) -> str:
    fetch = state.last_fetch
    if fetch is None:
        return "none yet"
    agent = fetch.user_agent or "no user agent"
    return (
        f"{fetch.client} ({agent}) {fetch.path} {fetch.status} · "
        f"{state.age('fetch')} · {state.fetches} in total"
    )


def _reload_cell(state: RunState) -> Text:
    reload = state.last_reload
    if reload is None:
        return Text("none")
    age = state.age("reload")
    if reload.ok:
        live = state.propagation_ms
        shown = f" · live through the tunnel in {live:.0f} ms" if live is not None else ""
        return Text.assemble(("ok", OK), f" kid={reload.kid}{source_text(reload)} · {age}{shown}")
    return Text.assemble(
        ("FAILED", FAILED), f"{source_text(reload)} · {age} — still serving the last good keys"
    )


def closing_line(state: RunState) -> Text:
    """The last line a live run leaves in scrollback."""
    reason = f" ({state.stopped})" if state.stopped else ""
    return Text(
        f"stopped{reason} · checks: {state.checks_passed} passed, {state.checks_failed} failed"
        f" · {state.requests_sent} requests sent through the tunnel"
    )


def latency_text(latency: float | None) -> str:
    """A latency as the panel and the lines show it: '42 ms', or '- ms' when unknown."""
    return "- ms" if latency is None else f"{latency:.0f} ms"


def source_text(event: Reload) -> str:
    """Where a reload read its keys from, as a suffix: ' (from .env.local)'."""
    return f" (from {event.source})" if event.source else ""
