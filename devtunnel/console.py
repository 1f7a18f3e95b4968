"""Render the session's events: a live panel on a terminal, plain lines off one, or JSON lines.

`session` emits events and never formats text; every word a person reads during `up` is
chosen here. Colour goes on values only, only on a terminal, and never when `NO_COLOR` is set
(https://no-color.org). The JWKS URL to register always stands alone on its own line, so a
double click copies it whole.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, TextIO

from rich.console import Console as RichConsole
from rich.console import RenderableType
from rich.live import Live
from rich.text import Text

from devtunnel.events import Check, Event, Fetch, Problem, Ready, Reload, Stopped, Tunnel
from devtunnel.keys import DEFAULT_KID
from devtunnel.panel import (
    FAILED,
    OK,
    VALUE,
    WARNING,
    RunState,
    closing_line,
    latency_text,
    render_panel,
    source_text,
)

if TYPE_CHECKING:
    from devtunnel.check import CheckResult

REGISTER_LINE = "Register it in AIR: Developer Dashboard → Account → General Settings → JWKS URL"
# Off a terminal nothing should wrap: a URL broken across two lines can be neither copied
# nor grepped. Lines are printed with soft wrap; this width only bounds a forced live panel.
PLAIN_WIDTH = 160
# The panel shows ages in whole seconds; two refreshes a second keep them current.
REFRESH_PER_SECOND = 2

LEVEL_STYLES = {"warning": WARNING, "error": FAILED}
STRUCTURE_ONLY = "structure only: give a Partner ID or keys to check kid and signature"


class Console(Protocol):
    """Where the session's events and notes for people go."""

    def emit(self, event: Event) -> None:
        """Show one event."""

    def note(self, text: str, level: str = "info") -> None:
        """Show a line for people; `level` is "info", "warning" or "error"."""

    def close(self) -> None:
        """End the run's display: stop a live panel, leave a closing line, flush."""


def make_console(
    *,
    json_mode: bool,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    live: bool | None = None,
    color: bool | None = None,
) -> Console:
    """The console for a run: JSON lines, a live panel (a terminal, or `live=True`), or plain lines.

    `live` and `color` default to whether stdout is a terminal; a non-empty `NO_COLOR`
    turns colour off whatever `color` says.
    """
    out = stdout or sys.stdout
    if json_mode:
        return JsonConsole(out, stderr or sys.stderr)

    live = out.isatty() if live is None else live
    rich = _rich_console(out, live=live, color=color)
    return LiveConsole(rich) if live else PlainConsole(rich)


def print_check_report(result: CheckResult, stdout: TextIO | None = None) -> None:
    """Print `devtunnel check`'s report, coloured by the same rules as a run's lines."""
    console = _rich_console(stdout or sys.stdout, live=False)
    for line in check_report(result):
        console.print(line, soft_wrap=True)


def _rich_console(out: TextIO, *, live: bool, color: bool | None = None) -> RichConsole:
    tty = out.isatty()
    color = (tty if color is None else color) and not os.environ.get("NO_COLOR")
    return RichConsole(
        file=out,
        force_terminal=live or color,
        no_color=not color,
        color_system=("auto" if tty else "standard") if color else None,
        width=None if tty else PLAIN_WIDTH,
        highlight=False,  # rich would colour every number and URL on its own
        markup=False,  # details quote "[Errno 111]" and the like: text, not markup
        emoji=False,
    )


class JsonConsole:
    """One JSON object per line on stdout and nothing else there; notes go to stderr."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self._out = stdout
        self._err = stderr

    def emit(self, event: Event) -> None:
        self._out.write(event.to_json() + "\n")
        self._out.flush()

    def note(self, text: str, level: str = "info") -> None:
        self._err.write(note_line(text, level).plain + "\n")
        self._err.flush()

    def close(self) -> None:
        self._out.flush()


class PlainConsole:
    """One line (and its fixes) per event, for logs, pipes and grep."""

    def __init__(self, console: RichConsole) -> None:
        self._console = console
        self._state = RunState()

    def emit(self, event: Event) -> None:
        self._state.apply(event)
        self._print(event_lines(event, self._state))

    def note(self, text: str, level: str = "info") -> None:
        self._print([note_line(text, level)])

    def close(self) -> None:
        self._console.file.flush()

    def _print(self, lines: Iterable[Text]) -> None:
        for line in lines:
            self._console.print(line, soft_wrap=True)


class LiveConsole(PlainConsole):
    """The banner once, in scrollback, then a status panel redrawn in rich's own thread."""

    def __init__(self, console: RichConsole) -> None:
        super().__init__(console)
        self._lock = threading.Lock()  # the refresh thread reads the state emit() writes
        self._live: Live | None = None
        self._closed = False

    def emit(self, event: Event) -> None:
        with self._lock:
            self._state.apply(event)

        # What must stay copyable goes to scrollback; the rest only to the panel.
        if isinstance(event, Ready) or (isinstance(event, Tunnel) and event.url_changed):
            self._print(event_lines(event, self._state))
        if self._live is None and not self._closed:
            self._live = Live(
                get_renderable=self._panel,
                console=self._console,
                refresh_per_second=REFRESH_PER_SECOND,
                redirect_stdout=False,  # never swap the process's streams behind the caller
                redirect_stderr=False,
            )
            self._live.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._live is not None:
            self._live.stop()
        self._print([closing_line(self._state)])
        super().close()

    def _panel(self) -> RenderableType:
        with self._lock:
            return render_panel(self._state)


class NoteHandler(logging.Handler):
    """Log records shown as console notes, so that no log line cuts across a live panel."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning"
        if record.levelno < logging.WARNING:
            level = "info"
        try:
            self._console.note(self.format(record), level)
        except Exception:  # logging must never take the run down
            self.handleError(record)


def note_line(text: str, level: str) -> Text:
    """A note for people; a warning or error says so first, once."""
    style = LEVEL_STYLES.get(level)
    if style is None:
        return Text(text)
    prefix = f"{level}:"
    body = text[len(prefix) :].lstrip() if text.startswith(prefix) else text
    return Text.assemble((prefix, style), " ", body)


def banner_lines(event: Ready) -> Iterator[Text]:
    """The URLs to register, each alone on its line, then the key and the tunnel."""
    many = len(event.jwks_urls) > 1
    yield Text("devtunnel is serving your JWKS at" + (" (either URL works):" if many else ":"))
    for url in event.jwks_urls:
        yield Text(url, style=VALUE)
    yield Text(REGISTER_LINE)
    for label, value in (
        ("kid", event.kid),
        ("alg", event.alg),
        ("thumbprint", event.thumbprint),
        ("tunnel", event.tunnel),
        ("local", event.local_url),
    ):
        yield Text.assemble(f"  {label:<12}", (value, VALUE))
    if event.tunnel == "none":
        yield _warning("--tunnel none: this URL is local only; AIR cannot reach it")
    elif event.url_changed:
        yield Text.assemble(f"  {'URL':<12}", ("CHANGED — re-register it", WARNING))
    else:
        yield Text.assemble(f"  {'URL':<12}", ("unchanged — nothing to re-register", OK))
    if event.kid == DEFAULT_KID:
        yield _warning(
            f"kid is {DEFAULT_KID}: AIR will answer 401 until NEXT_PUBLIC_PARTNER_ID is set"
        )


def event_lines(event: Event, state: RunState) -> Iterator[Text]:
    """Plain lines for one event, stable enough to grep; `state` already holds the event."""
    match event:
        case Ready():
            yield from banner_lines(event)
        case Check():
            yield from _check_lines(event)
        case Reload(ok=True):
            yield Text(
                f"reload ok kid={event.kid} thumbprint={event.thumbprint}{source_text(event)}"
            )
        case Reload():
            yield Text.assemble(
                "reload ", ("FAILED", FAILED), f" ({event.source or 'keys'})",
                " — still serving the last good keys",
            )  # fmt: skip
            yield from _problem_lines(event.problems, Text("  problem:"))
        case Fetch():
            times = f" \N{MULTIPLICATION SIGN}{event.count}" if event.count > 1 else ""
            agent = event.user_agent or "no user agent"
            yield Text(f"fetch {event.path} from {event.client} ({agent}) {event.status}{times}")
        case Tunnel(state="down"):
            yield Text.assemble("tunnel ", ("down", FAILED))
        case Tunnel():
            yield Text.assemble(
                f"tunnel {event.state} {event.public_url} ",
                ("(URL CHANGED — re-register it)", WARNING) if event.url_changed else "(same URL)",
            )
            if event.url_changed:
                yield from (Text(url, style=VALUE) for url in state.jwks_urls)
        case Stopped():
            yield Text(f"stopped ({event.reason})")
        case _:
            yield Text(event.to_json())


def _check_lines(event: Check) -> Iterator[Text]:
    if event.ok:
        yield Text.assemble(
            "check ", ("ok", OK), f" {event.status} {latency_text(event.latency_ms)}",
            f" thumbprint {event.thumbprint}" if event.thumbprint else "",
            f" (new key live {event.propagation_ms:.0f} ms after the change)"
            if event.propagation_ms is not None else "",
        )  # fmt: skip
    elif not event.problems:
        yield Text.assemble("check ", ("FAILED", FAILED), f" {event.status}")
    yield from _problem_lines(event.problems, Text.assemble("check ", ("FAILED", FAILED), ":"))
    yield from _problem_lines(event.warnings, Text("  warning:"))


def check_report(result: CheckResult) -> list[Text]:
    """`devtunnel check` for people: one line per stage run, the warnings, then the verdict."""
    width = max(len(stage.name) for stage in result.stages)
    fix = f"  {'':<{width}}  "
    lines = [Text(f"checking {result.url}")]
    for stage in result.stages:
        label = f" {stage.name:<{width}} "
        if stage.problem is None:
            lines.append(Text.assemble(("✓", OK), f"{label} {stage.note}"))
        else:
            failed = Text.assemble(("✗", FAILED), label)
            lines += _problem_lines([stage.problem], failed, ": ", fix)
    warned = Text.assemble(("!", WARNING), " warning ")
    lines += _problem_lines(result.warnings, warned, ": ", fix)

    if result.ok:
        verdict = Text.assemble(("OK", OK), ": a remote verifier can use this JWKS")
        verdict.append(f" ({STRUCTURE_ONLY})" if result.kid is None else "")
    else:
        count = f"{len(result.problems)} problem{'s' * (len(result.problems) != 1)}"
        codes = ", ".join(problem.code for problem in result.problems)
        verdict = Text.assemble(("FAILED", FAILED), f": {count} ({codes})")
    return [*lines, verdict]


def _problem_lines(
    problems: list[Problem], label: Text, sep: str = " — ", fix: str = "  "
) -> Iterator[Text]:
    for problem in problems:
        yield Text.assemble(label, f" {problem.code}{sep}{problem.detail}")
        if problem.hint:
            yield Text(f"{fix}fix: {problem.hint}")


def _warning(text: str) -> Text:
    return Text.assemble("  ", note_line(text, "warning"))
