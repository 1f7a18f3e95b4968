"""Watch the files the keys come from; reload them, keeping the last good keys on any fault.

The directories are watched rather than the files, so that an editor's atomic save
(write a temp file, rename it over the old one), a deleted file and a new one are
all seen. Only changes to the files that settings were read from count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

from devtunnel.config import Settings
from devtunnel.errors import ConfigError
from devtunnel.events import Problem
from devtunnel.keys import KeyPair, load_keypair

logger = logging.getLogger(__name__)

# A burst of writes (an editor saving, keygen replacing a file) becomes one reload: the
# burst ends after STEP_MS of quiet, and never lasts longer than DEBOUNCE_MS.
DEBOUNCE_MS = 200
STEP_MS = 25
POLL_DELAY_MS = 100


@dataclass(frozen=True)
class KeyChange:
    """Watched files that changed in one burst, and when the burst was seen."""

    paths: frozenset[Path]
    seen_at: float = field(default_factory=time.monotonic)

    @property
    def source(self) -> str:
        """The changed file(s), for the `reload` event."""
        return ", ".join(sorted(str(path) for path in self.paths))


@dataclass(frozen=True)
class ReloadResult:
    """The keys a reload produced, or the problems that kept the last good ones."""

    pair: KeyPair | None
    problems: list[Problem]


async def watch_files(
    paths: Iterable[Path], stop: asyncio.Event, *, poll: bool = False
) -> AsyncIterator[KeyChange]:
    """Yield a KeyChange for each burst of changes to `paths` until `stop` is set."""
    targets = frozenset(path.absolute() for path in paths)
    directories = sorted({str(path.parent) for path in targets if path.parent.is_dir()})
    if not directories:
        return

    def is_target(_change: watchfiles.Change, name: str) -> bool:
        return Path(name) in targets

    logger.debug("watching %s for %s", directories, sorted(map(str, targets)))
    async for changes in watchfiles.awatch(
        *directories,
        watch_filter=is_target,
        debounce=DEBOUNCE_MS,
        step=STEP_MS,
        stop_event=stop,
        recursive=False,
        force_polling=poll or None,
        poll_delay_ms=POLL_DELAY_MS,
    ):
        changed = frozenset(Path(name) for _, name in changes)
        logger.debug("changed: %s", sorted(map(str, changed)))
        yield KeyChange(changed)


def reload_keys(resolve: Callable[[], Settings], current: KeyPair) -> ReloadResult:
    """Resolve settings and keys again; any fault is a problem, never a half-loaded key.

    With no key configured, an ephemeral key stays (with the new Partner ID, if any):
    a fresh one would only break tokens signed a moment ago.
    """
    try:
        keep = current.private if current.ephemeral else None
        pair = load_keypair(resolve(), ephemeral_ok=keep is not None, ephemeral_key=keep)
        return ReloadResult(pair, [])
    except ConfigError as exc:
        logger.info("reload kept the last good keys: %s", exc)
        return ReloadResult(None, [Problem("config", str(exc), exc.hint)])
