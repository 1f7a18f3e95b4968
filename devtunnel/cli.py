"""The command line: parse arguments, wire the parts, turn errors into messages and exit codes.

Heavy modules (aiohttp, cryptography, pyngrok) are imported inside the command
that needs them, so that `devtunnel --help` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from devtunnel import __version__
from devtunnel.config import DEFAULT_CHECK_INTERVAL_S, DEFAULT_CHECK_TIMEOUT_S, DEFAULT_PATHS

if TYPE_CHECKING:
    from devtunnel.config import Settings
    from devtunnel.keys import KeyPair

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

DEFAULT_HOST = "127.0.0.1"
DEFAULT_KEYGEN_ENV_FILE = Path(".env.local")

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run devtunnel with `argv`; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)

    from devtunnel.errors import ConfigError, DevtunnelError

    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        _report(exc)
        return EXIT_CONFIG
    except DevtunnelError as exc:
        _report(exc)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:
        # A bug of ours: one line, not a traceback (-vv shows it), and a way to report it.
        logger.debug("unexpected error", exc_info=True)
        _say(f"devtunnel: unexpected error: {type(exc).__name__}: {exc}")
        _say("  hint: this is a devtunnel bug; run again with -vv and report what it shows")
        return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command (the contract in DESIGN.md)."""
    parser = argparse.ArgumentParser(
        prog="devtunnel",
        description="A public HTTPS JWKS URL for local AIR Kit work, in one command.",
    )
    parser.add_argument("--version", action="version", version=f"devtunnel {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines")
    parser.set_defaults(handler=lambda _args: _usage(parser))
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    keys = argparse.ArgumentParser(add_help=False)
    group = keys.add_argument_group("keys (flags > environment > .env, .env.local)")
    group.add_argument(
        "--env-file",
        action="append",
        type=Path,
        metavar="F",
        help="env file to read (repeatable; replaces .env and .env.local)",
    )
    group.add_argument("--partner-id", metavar="ID", help="Partner ID: the JWT and JWKS kid")
    group.add_argument("--alg", metavar="A", help="RS256 or ES256 (default: from the key)")
    group.add_argument("--private-key", type=Path, metavar="F", help="private key PEM file")
    group.add_argument("--public-key", type=Path, metavar="F", help="public key PEM file")

    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    server.add_argument(
        "--port", type=_port_number, metavar="P", help="port to listen on (0: any free)"
    )
    server.add_argument(
        "--path",
        action="append",
        metavar="P",
        dest="paths",
        help=f"JWKS path (repeatable; default {' and '.join(DEFAULT_PATHS)})",
    )
    server.add_argument("--upstream", metavar="URL", help="proxy every other path to this app")
    server.add_argument("--json", action="store_true", help="print events as JSON lines")

    _add_up(commands, [keys, server])
    _add_serve(commands, [keys, server])
    _add_check(commands, [keys])
    _add_keygen(commands)
    _add_token(commands, [keys])
    _add_jwks(commands, [keys])
    return parser


Parents: TypeAlias = list[argparse.ArgumentParser]
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_up(commands: Commands, parents: Parents) -> None:
    up = commands.add_parser(
        "up", parents=parents, help="serve the JWKS, open a tunnel, print the URL to register"
    )
    up.add_argument("--tunnel", choices=("ngrok", "cloudflared", "none"), default="ngrok")
    up.add_argument("--domain", metavar="D", help="the ngrok domain to ask for")
    up.add_argument("--ngrok-path", type=Path, metavar="F", help="ngrok agent binary")
    up.add_argument("--cloudflared-path", type=Path, metavar="F", help="cloudflared binary")
    up.add_argument(
        "--interval",
        type=_seconds,
        default=DEFAULT_CHECK_INTERVAL_S,
        metavar="S",
        help=f"seconds between checks (default {DEFAULT_CHECK_INTERVAL_S:g})",
    )
    up.add_argument("--no-watch", action="store_true", help="do not reload when key files change")
    up.add_argument("--poll", action="store_true", help="poll for file changes (WSL, Docker)")
    up.add_argument("--once", action="store_true", help="start, check once, stop")
    up.set_defaults(handler=_cmd_up)


def _add_serve(commands: Commands, parents: Parents) -> None:
    serve = commands.add_parser("serve", parents=parents, help="serve the JWKS only")
    serve.add_argument(
        "--max-age", type=int, metavar="S", help="Cache-Control max-age (default: no-cache)"
    )
    serve.set_defaults(handler=_cmd_serve)


def _add_check(commands: Commands, parents: Parents) -> None:
    check = commands.add_parser(
        "check", parents=parents, help="check a JWKS URL as a remote verifier would"
    )
    check.add_argument("url", metavar="URL")
    check.add_argument("--timeout", type=_seconds, default=DEFAULT_CHECK_TIMEOUT_S, metavar="S")
    check.add_argument("--ca-file", type=Path, metavar="F", help="extra CA certificates (PEM)")
    check.add_argument("--json", action="store_true", help="print one check event as JSON")
    check.set_defaults(handler=_cmd_check)


def _add_keygen(commands: Commands) -> None:
    keygen = commands.add_parser("keygen", help="make a new signing key pair")
    keygen.add_argument("--alg", choices=("RS256", "ES256"), default="ES256")
    keygen.add_argument("--bits", type=int, metavar="N", help="RSA key size (default 2048)")
    where = keygen.add_mutually_exclusive_group()
    where.add_argument(
        "--env-file",
        type=Path,
        metavar="F",
        help=f"env file to write (default {DEFAULT_KEYGEN_ENV_FILE})",
    )
    where.add_argument("--out", type=Path, metavar="DIR", help="write private.pem and public.pem")
    keygen.add_argument("--force", action="store_true", help="replace existing keys (keeps .bak)")
    keygen.set_defaults(handler=_cmd_keygen)


def _add_token(commands: Commands, parents: Parents) -> None:
    token = commands.add_parser("token", parents=parents, help="print a signed Partner JWT")
    token.add_argument("--scope", choices=("issue", "verify"), default="issue")
    token.add_argument("--ttl", type=int, default=300, metavar="S", help="lifetime (max 900)")
    token.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="K=V",
        help="extra claim; V is read as JSON when it parses, else as text",
    )
    token.set_defaults(handler=_cmd_token)


def _add_jwks(commands: Commands, parents: Parents) -> None:
    jwks = commands.add_parser("jwks", parents=parents, help="print or write the JWKS document")
    jwks.add_argument("--out", type=Path, metavar="F", help="write it here (atomic replace)")
    jwks.set_defaults(handler=_cmd_jwks)


# Commands


def _cmd_jwks(args: argparse.Namespace) -> int:
    from devtunnel.files import atomic_write
    from devtunnel.jwks import render_keys

    pair = _load_keys(args, need_partner_id=True)
    body = render_keys([pair])
    if args.out is None:
        sys.stdout.write(body.decode("utf-8"))
        return EXIT_OK
    _write_output(args.out, body, atomic_write)
    _say(f"wrote {args.out} (kid {pair.kid}, {pair.alg})")
    return EXIT_OK


def _cmd_token(args: argparse.Namespace) -> int:
    from devtunnel.tokens import parse_claims, sign_partner_jwt

    claims = parse_claims(args.claim)
    pair = _load_keys(args, need_partner_id=True, need_private=True)
    print(sign_partner_jwt(pair, scope=args.scope, ttl=args.ttl, claims=claims))
    return EXIT_OK


def _cmd_keygen(args: argparse.Namespace) -> int:
    from devtunnel.errors import ConfigError
    from devtunnel.files import write_env_keys, write_pem_files
    from devtunnel.jwks import key_thumbprint
    from devtunnel.keys import DEFAULT_RSA_BITS, MAX_RSA_BITS, MIN_RSA_BITS, generate_private_key

    if args.bits is not None and args.alg != "RS256":
        raise ConfigError(
            "--bits", f"sets an RSA key size, but --alg is {args.alg}", "add --alg RS256"
        )
    bits = DEFAULT_RSA_BITS if args.bits is None else args.bits
    if not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
        raise ConfigError(
            "--bits",
            f"is {bits}; RS256 needs {MIN_RSA_BITS} to {MAX_RSA_BITS}",
            "use --bits 2048 (the default) or 3072",
        )
    private = generate_private_key(args.alg, bits)
    if args.out is not None:
        written = write_pem_files(args.out, private, force=args.force)
    else:
        written = write_env_keys(
            args.env_file or DEFAULT_KEYGEN_ENV_FILE, private, force=args.force
        )

    for path in written.files:
        _say(f"wrote {path}")
    for path in written.backups:
        _say(f"kept the previous file as {path}")
    _say(f"{args.alg} key, thumbprint {key_thumbprint(private.public_key())}")
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from devtunnel.console import make_console
    from devtunnel.errors import ConfigError
    from devtunnel.server import DEFAULT_PORT, JwksServer, JwksStore, create_app

    # Procfile platforms (Heroku, Render, Railway) say where to listen through $PORT.
    port: int = args.port
    if port is None:
        text = os.environ.get("PORT", "").strip()
        try:
            port = _port_number(text) if text else DEFAULT_PORT
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(
                "PORT (environment)", str(exc), "set PORT=8787, or pass --port"
            ) from None

    pair = _load_keys(args, ephemeral_ok=True)
    # Plain lines even on a terminal: serve has no panel to draw, only fetches to list.
    console = make_console(json_mode=args.json, live=False)
    if pair.ephemeral:
        console.note(
            f"no key configured: serving an ephemeral {pair.alg} key that ends with this process",
            "warning",
        )
        console.note("  run `devtunnel keygen` to make one that lasts")
    if pair.partner_id is None:
        console.note(
            f"no Partner ID, so the kid is {pair.kid}: "
            "AIR will answer 401 until NEXT_PUBLIC_PARTNER_ID is set",
            "warning",
        )

    paths = tuple(args.paths or DEFAULT_PATHS)
    store = JwksStore(pair)
    app = create_app(
        store, paths=paths, max_age=args.max_age, upstream=args.upstream, on_fetch=console.emit
    )
    server = JwksServer(app)
    stop = asyncio.Event()

    async def serve() -> int:
        await server.start(args.host, port)
        try:
            current = store.current
            console.note(
                f"serving kid {current.kid} ({current.alg}, thumbprint {current.thumbprint}) at"
            )
            for path in paths:
                console.note(f"{server.local_url}{path}")
            if args.upstream:
                console.note(f"every other path goes to {args.upstream}")
            console.note("Ctrl-C stops")
            await stop.wait()
            console.note("stopping: finishing the requests in flight")
        finally:
            await server.stop()
        return EXIT_OK

    try:
        return asyncio.run(_until_signal(serve(), stop.set))
    finally:
        console.close()


def _cmd_check(args: argparse.Namespace) -> int:
    import asyncio

    from devtunnel.check import check_jwks
    from devtunnel.console import print_check_report
    from devtunnel.keys import load_keypair

    # Keys are optional here: a Partner ID alone still says which kid must be served.
    settings = key_settings(args)
    pair = None
    if settings.private_key is not None or settings.public_key is not None:
        pair = load_keypair(settings)
    kid = pair.kid if pair is not None else None
    if kid is None and settings.partner_id is not None:
        kid = settings.partner_id.text.strip()

    result = asyncio.run(
        check_jwks(args.url, pair=pair, kid=kid, timeout=args.timeout, ca_file=args.ca_file)
    )
    if args.json:
        print(result.to_event().to_json())
    else:
        print_check_report(result)
    return EXIT_OK if result.ok else EXIT_FAILED


def _cmd_up(args: argparse.Namespace) -> int:
    import asyncio

    from devtunnel.console import NoteHandler, make_console
    from devtunnel.keys import load_keypair
    from devtunnel.session import Session, UpOptions

    settings = key_settings(args)
    pair = load_keypair(settings, ephemeral_ok=True)
    options = UpOptions(
        host=args.host,
        port=args.port if args.port is not None else 0,
        paths=tuple(args.paths or DEFAULT_PATHS),
        tunnel=args.tunnel,
        domain=args.domain,
        ngrok_path=args.ngrok_path,
        cloudflared_path=args.cloudflared_path,
        interval=args.interval,
        watch=not args.no_watch,
        poll=args.poll,
        upstream=args.upstream,
        once=args.once,
    )
    console = make_console(json_mode=args.json)
    root = logging.getLogger()
    handlers, root.handlers = root.handlers, [NoteHandler(console)]
    try:
        session = Session(
            options,
            settings=settings,
            resolve=lambda: key_settings(args),
            pair=pair,
            emit=console.emit,
            note=console.note,
        )
        return asyncio.run(_until_signal(session.run(), session.stop))
    finally:
        root.handlers = handlers
        console.close()


# Helpers


async def _until_signal(run: Coroutine[None, None, int], stop: Callable[[], None]) -> int:
    """Run `run`, turning SIGINT and SIGTERM into a clean stop."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    try:
        return await run
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def key_settings(args: argparse.Namespace) -> Settings:
    """The key settings that the KEYS flags and the environment describe."""
    from devtunnel.config import KeyOptions, resolve_settings

    options = KeyOptions(
        env_files=tuple(args.env_file) if args.env_file else None,
        partner_id=args.partner_id,
        alg=args.alg,
        private_key=args.private_key,
        public_key=args.public_key,
    )
    return resolve_settings(options)


def _load_keys(
    args: argparse.Namespace,
    *,
    need_partner_id: bool = False,
    need_private: bool = False,
    ephemeral_ok: bool = False,
) -> KeyPair:
    from devtunnel.keys import load_keypair

    return load_keypair(
        key_settings(args),
        need_partner_id=need_partner_id,
        need_private=need_private,
        ephemeral_ok=ephemeral_ok,
    )


def _write_output(path: Path, body: bytes, write: Callable[[Path, bytes], None]) -> None:
    from devtunnel.errors import ConfigError

    try:
        write(path, body)
    except OSError as exc:
        raise ConfigError(
            f"--out {path}",
            f"cannot be written ({exc.strerror})",
            "check that the folder exists and is writable",
        ) from None


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not seconds > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} must be above 0 seconds")
    return seconds


def _port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is out of range (0 to 65535; 0: any free)")
    return port


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_CONFIG


def _say(text: str) -> None:
    """A line for people: always stderr, so stdout stays clean for data and --json."""
    print(text, file=sys.stderr)


def _report(exc: Exception) -> None:
    from devtunnel.errors import DevtunnelError

    _say(f"devtunnel: error: {exc}")
    if isinstance(exc, DevtunnelError) and exc.hint:
        _say(f"  hint: {exc.hint}")


def _configure_logging(verbosity: int) -> None:
    level = logging.DEBUG if verbosity > 1 else logging.INFO if verbosity else logging.WARNING
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # pyngrok relays every agent line, raw logfmt at the agent's own level (a dying agent's
    # "lvl=crit" among them). devtunnel says what went wrong in its own words, so the agent's
    # lines show only with -vv.
    agent_level = logging.DEBUG if verbosity > 1 else logging.CRITICAL + 1
    logging.getLogger("pyngrok").setLevel(agent_level)
