"""The watcher sees every way a key file changes; a reload never yields a half-loaded key."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from devtunnel.config import KeyOptions, Settings, resolve_settings
from devtunnel.jwks import key_thumbprint
from devtunnel.keys import load_keypair
from devtunnel.watch import KeyChange, reload_keys, watch_files
from tests.conftest import write_env

WAIT_S = 5.0


class Watcher:
    """watch_files running in a task, its changes in a queue."""

    def __init__(self, paths: list[Path], poll: bool) -> None:
        self.poll = poll
        self.stop = asyncio.Event()
        self.changes: asyncio.Queue[KeyChange] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(paths, poll))

    async def _run(self, paths: list[Path], poll: bool) -> None:
        async for change in watch_files(paths, self.stop, poll=poll):
            await self.changes.put(change)

    async def settle(self) -> None:
        # Watching starts a moment after awatch is entered; polling takes its first scan later.
        await asyncio.sleep(1.0 if self.poll else 0.3)

    async def next(self) -> KeyChange:
        return await asyncio.wait_for(self.changes.get(), WAIT_S)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self._task, WAIT_S)


async def watchers(poll: bool) -> AsyncIterator[Callable[[list[Path]], Watcher]]:
    """Start watchers of one kind on demand; close every one of them afterwards."""
    made: list[Watcher] = []

    def start(paths: list[Path]) -> Watcher:
        made.append(Watcher(paths, poll))
        return made[-1]

    yield start
    for watcher in made:
        await watcher.close()


@pytest.fixture(params=[False, True], ids=["events", "poll"])
async def watcher(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[list[Path]], Watcher]]:
    """A watcher by file events, and one by polling (--poll, for WSL and Docker mounts)."""
    async for start in watchers(request.param):
        yield start


@pytest.fixture
async def event_watcher() -> AsyncIterator[Callable[[list[Path]], Watcher]]:
    """A watcher by file events only, for what polling cannot see in time."""
    async for start in watchers(poll=False):
        yield start


async def test_atomic_save_is_seen(
    watcher: Callable[[list[Path]], Watcher], isolated: Path
) -> None:
    target = isolated / ".env.local"
    target.write_text("A=1\n")
    w = watcher([target])
    await w.settle()

    tmp = isolated / ".env.local.tmp~"
    tmp.write_text("A=2\n")
    os.replace(tmp, target)

    change = await w.next()
    assert target in change.paths
    assert change.source == str(target)


async def test_in_place_write_is_seen(
    watcher: Callable[[list[Path]], Watcher], isolated: Path
) -> None:
    target = isolated / ".env"
    target.write_text("A=1\n")
    w = watcher([target])
    await w.settle()

    with target.open("a") as handle:
        handle.write("B=2\n")

    assert target in (await w.next()).paths


async def test_delete_and_recreate_are_both_seen(
    watcher: Callable[[list[Path]], Watcher], isolated: Path
) -> None:
    target = isolated / ".env.local"
    target.write_text("A=1\n")
    w = watcher([target])
    await w.settle()

    target.unlink()
    assert target in (await w.next()).paths
    await asyncio.sleep(0.3)
    target.write_text("A=3\n")
    assert target in (await w.next()).paths


async def test_a_file_created_later_is_seen(
    event_watcher: Callable[[list[Path]], Watcher], isolated: Path
) -> None:
    target = isolated / ".env.local"
    w = event_watcher([target])
    await w.settle()

    target.write_text("NEXT_PUBLIC_PARTNER_ID=x\n")

    assert target in (await w.next()).paths


async def test_other_files_in_the_directory_are_ignored(
    event_watcher: Callable[[list[Path]], Watcher], isolated: Path
) -> None:
    target = isolated / ".env.local"
    target.write_text("A=1\n")
    w = event_watcher([target])
    await w.settle()

    (isolated / "notes.txt").write_text("unrelated")
    (isolated / ".env.example").write_text("A=0\n")
    await asyncio.sleep(0.6)
    assert w.changes.empty()

    target.write_text("A=2\n")
    change = await w.next()
    assert change.paths == frozenset({target})


async def test_no_watchable_directory_yields_nothing(tmp_path: Path) -> None:
    stop = asyncio.Event()
    changes = [c async for c in watch_files([tmp_path / "missing" / ".env"], stop)]
    assert changes == []


def _resolver(cwd: Path) -> Callable[[], Settings]:
    return lambda: resolve_settings(KeyOptions(), environ={}, cwd=cwd)


def test_reload_loads_the_new_keys(isolated: Path) -> None:
    env = isolated / ".env.local"
    write_env(env, ec.generate_private_key(ec.SECP256R1()), "partner-a")
    first = load_keypair(_resolver(isolated)())
    rotated = ec.generate_private_key(ec.SECP256R1())
    write_env(env, rotated, "partner-b")

    result = reload_keys(_resolver(isolated), first)

    assert result.problems == []
    assert result.pair is not None
    assert result.pair.kid == "partner-b"
    assert key_thumbprint(result.pair.public) == key_thumbprint(rotated.public_key())


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        ('PARTNER_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----\\nMIGH', "truncated"),
        ("PARTNER_PRIVATE_KEY=bm90IGEga2V5\n", "not a valid key"),
        ("SIGNING_ALGORITHM=HS256\nPARTNER_PRIVATE_KEY=x\n", "HS256"),
    ],
    ids=["half-written", "garbage", "bad-alg"],
)
def test_reload_of_a_bad_file_keeps_the_last_good_keys(
    isolated: Path, content: str, fault: str
) -> None:
    env = isolated / ".env.local"
    write_env(env, ec.generate_private_key(ec.SECP256R1()))
    good = load_keypair(_resolver(isolated)())
    env.write_text(content)

    result = reload_keys(_resolver(isolated), good)

    assert result.pair is None
    [problem] = result.problems
    assert problem.code == "config"
    assert ".env.local" in problem.detail
    assert fault in problem.detail
    assert problem.hint


def test_reload_of_a_mismatched_pair_names_both_sources(isolated: Path) -> None:
    env = isolated / ".env.local"
    write_env(env, ec.generate_private_key(ec.SECP256R1()))
    good = load_keypair(_resolver(isolated)())
    other = isolated / ".env"
    write_env(other, ec.generate_private_key(ec.SECP256R1()))
    # The private key from .env.local, a public key from another pair via .env.
    text = env.read_text().splitlines()
    env.write_text("\n".join(line for line in text if "PUBLIC" not in line) + "\n")

    result = reload_keys(_resolver(isolated), good)

    assert result.pair is None
    assert "PARTNER_PRIVATE_KEY in .env.local" in result.problems[0].detail
    assert "PARTNER_PUBLIC_KEY in .env" in result.problems[0].detail


def test_partner_id_change_keeps_an_ephemeral_key(isolated: Path) -> None:
    ephemeral = load_keypair(_resolver(isolated)(), ephemeral_ok=True)
    assert ephemeral.ephemeral
    (isolated / ".env.local").write_text("NEXT_PUBLIC_PARTNER_ID=partner-new\n")

    result = reload_keys(_resolver(isolated), ephemeral)

    assert result.pair is not None
    assert result.pair.kid == "partner-new"
    assert result.pair.ephemeral
    assert result.pair.private is ephemeral.private


def test_keys_appearing_replace_an_ephemeral_key(isolated: Path) -> None:
    ephemeral = load_keypair(_resolver(isolated)(), ephemeral_ok=True)
    lasting = ec.generate_private_key(ec.SECP256R1())
    write_env(isolated / ".env.local", lasting, "partner-1")

    result = reload_keys(_resolver(isolated), ephemeral)

    assert result.pair is not None
    assert not result.pair.ephemeral
    assert key_thumbprint(result.pair.public) == key_thumbprint(lasting.public_key())


ROTATIONS = 50
CLIENTS = 32


async def test_rotation_under_load_serves_only_whole_valid_documents(isolated: Path) -> None:
    """32 clients fetch while the keys change 50 times, every third write garbage first."""
    import json

    import aiohttp

    from devtunnel.jwks import PRIVATE_MEMBERS, thumbprint
    from tests.upprocess import UpProcess

    env = isolated / ".env.local"
    first = ec.generate_private_key(ec.SECP256R1())
    write_env(env, first, "partner-load")
    valid = {key_thumbprint(first.public_key())}
    up = UpProcess(["--tunnel", "none", "--interval", "3600"], isolated)
    served: set[str] = set()
    faults: list[str] = []
    fetched = 0
    done = asyncio.Event()

    async def client(session: aiohttp.ClientSession, url: str) -> None:
        nonlocal fetched
        while not done.is_set():
            async with session.get(url) as response:
                body = await response.read()
            fetched += 1
            if response.status != 200:
                faults.append(f"status {response.status}")
                continue
            [key] = json.loads(body)["keys"]
            if key["kid"] != "partner-load" or PRIVATE_MEMBERS & key.keys():
                faults.append(f"bad key {sorted(key)} kid {key['kid']}")
            served.add(thumbprint(key))

    try:
        ready = await asyncio.to_thread(up.wait_for, "ready")
        await asyncio.to_thread(up.wait_for, "check")
        url = ready["jwks_urls"][0]
        async with aiohttp.ClientSession() as session:
            clients = [asyncio.create_task(client(session, url)) for _ in range(CLIENTS)]
            for n in range(ROTATIONS):
                key = ec.generate_private_key(ec.SECP256R1())
                valid.add(key_thumbprint(key.public_key()))
                if n % 3 == 0:
                    text = write_env(env, key, "partner-load").read_text()
                    env.write_text(text[: len(text) * 2 // 3])  # a half-finished save
                    broken = await asyncio.to_thread(up.wait_for, "reload")
                    assert broken["ok"] is False, broken
                    env.write_text(text)
                else:
                    tmp = env.with_name(".env.local.swp")
                    write_env(tmp, key, "partner-load")
                    os.replace(tmp, env)
                want = key_thumbprint(key.public_key())
                reload = await asyncio.to_thread(up.wait_for, "reload", lambda e: e["ok"])
                assert reload["thumbprint"] == want
            done.set()
            await asyncio.gather(*clients)
    finally:
        done.set()
        await asyncio.to_thread(up.stop)

    assert faults == []
    assert served <= valid
    assert want in served
    assert fetched > ROTATIONS * CLIENTS
    reloads = [e for e in up.events if e["event"] == "reload"]
    assert sum(e["ok"] for e in reloads) == ROTATIONS
    assert sum(not e["ok"] for e in reloads) == len(range(0, ROTATIONS, 3))


def test_an_ephemeral_key_follows_an_algorithm_change_and_refuses_a_bad_one(
    isolated: Path,
) -> None:
    ephemeral = load_keypair(_resolver(isolated)(), ephemeral_ok=True)
    env = isolated / ".env.local"

    env.write_text("SIGNING_ALGORITHM=RS256\n")
    rsa_result = reload_keys(_resolver(isolated), ephemeral)
    env.write_text("SIGNING_ALGORITHM=HS256\n")
    bad_result = reload_keys(_resolver(isolated), ephemeral)

    assert rsa_result.pair is not None
    assert (rsa_result.pair.alg, rsa_result.pair.ephemeral) == ("RS256", True)
    assert bad_result.pair is None
    assert "SIGNING_ALGORITHM in .env.local" in bad_result.problems[0].detail
