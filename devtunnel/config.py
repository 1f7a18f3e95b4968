"""Settings from flags, then the process environment, then env files.

The variable names are the ones AIR Kit's example apps read, so one `.env.local`
serves both the app and devtunnel. Every value remembers where it came from, so
that an error can name its source ("PARTNER_PRIVATE_KEY in .env.local").
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv.parser import parse_stream

from devtunnel.errors import ConfigError

logger = logging.getLogger(__name__)

PARTNER_ID_VARS = ("NEXT_PUBLIC_PARTNER_ID", "PARTNER_ID")
ALG_VAR = "SIGNING_ALGORITHM"
PRIVATE_KEY_VAR = "PARTNER_PRIVATE_KEY"
PUBLIC_KEY_VAR = "PARTNER_PUBLIC_KEY"
KNOWN_VARS = (*PARTNER_ID_VARS, ALG_VAR, PRIVATE_KEY_VAR, PUBLIC_KEY_VAR)

_RAW_BINDING_RE = re.compile(
    r"\s*(?:export\s+)?(" + "|".join(KNOWN_VARS) + r")\s*=\s*(.*?)\s*$", re.DOTALL
)

# How long a check waits for the JWKS, as a verifier would (jose waits 5 s; the rest is
# room for a slow tunnel), and how often `up` checks: ngrok's free plan allows 20,000
# requests a month.
DEFAULT_CHECK_TIMEOUT_S = 10.0
DEFAULT_CHECK_INTERVAL_S = 60.0

# AIR's Next.js examples serve the JWKS at the first path, its plug-and-play template at the
# second; AIR fetches exactly the registered URL, so devtunnel serves both.
DEFAULT_PATHS = ("/api/.well-known/jwks", "/jwks.json")

# Next.js reads `.env` then `.env.local`; the later file wins.
DEFAULT_ENV_FILES = (Path(".env"), Path(".env.local"))


@dataclass(frozen=True)
class Value:
    """One setting and where it came from, e.g. `PARTNER_ID in .env.local`."""

    text: str
    source: str
    path: Path | None = None


@dataclass(frozen=True)
class KeyOptions:
    """The KEYS flags shared by every command that reads keys."""

    env_files: tuple[Path, ...] | None = None
    partner_id: str | None = None
    alg: str | None = None
    private_key: Path | None = None
    public_key: Path | None = None


@dataclass(frozen=True)
class Settings:
    """The resolved key settings, each with its source."""

    partner_id: Value | None = None
    alg: Value | None = None
    private_key: Value | None = None
    public_key: Value | None = None
    env_files: tuple[Path, ...] = ()
    key_files: tuple[Path, ...] = field(default=())

    def watch_paths(self) -> tuple[Path, ...]:
        """The files whose change can change the keys: env files (present or not) and key files."""
        return (*self.env_files, *self.key_files)


def read_env_file(path: Path, source: str | None = None) -> dict[str, str]:
    """Read the bindings of one env file; later lines win, unparsable lines are skipped.

    `source` names the file in errors (default: its path), e.g. `--env-file dev.env`.
    """
    source = source or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "no such env file", "check the --env-file path") from None
    except UnicodeDecodeError:
        raise ConfigError(source, "is not UTF-8 text", "save the env file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(
            source, f"cannot be read ({exc.strerror})", "check its permissions"
        ) from None

    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            logger.debug("%s line %d: not a KEY=value line", path, binding.original.line)
            # A half-written or mis-quoted key line: keep its raw value, so that the key
            # parser says what is wrong with it rather than the key seeming "not set".
            raw = _RAW_BINDING_RE.match(binding.original.string)
            if raw is not None:
                values[raw.group(1)] = raw.group(2)
        elif binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    return values


def resolve_settings(
    options: KeyOptions,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Resolve the key settings: flags win over the process environment, which wins over files."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd

    explicit = options.env_files is not None
    env_files = options.env_files if options.env_files is not None else DEFAULT_ENV_FILES
    layers: list[tuple[str, Path | None, Mapping[str, str]]] = [("environment", None, environ)]
    # The later file wins, so it is consulted first.
    for name in reversed(env_files):
        path = name if name.is_absolute() else cwd / name
        if not explicit and not path.exists():
            continue
        source = f"--env-file {name}" if explicit else str(name)
        layers.append((f"in {name}", path, read_env_file(path, source)))

    def lookup(*names: str) -> Value | None:
        for where, path, values in layers:
            for var in names:
                text = values.get(var, "").strip()
                if text:
                    return Value(text, f"{var} {where}" if path else f"{var} (environment)", path)
        return None

    key_files: list[Path] = []

    def from_flag(flag: str, text: str | None) -> Value | None:
        return Value(text.strip(), flag) if text is not None and text.strip() else None

    def from_file(flag: str, name: Path | None) -> Value | None:
        if name is None:
            return None
        path = name if name.is_absolute() else cwd / name
        key_files.append(path)
        source = f"{flag} {name}"
        try:
            return Value(path.read_text(encoding="utf-8"), source, path)
        except FileNotFoundError:
            raise ConfigError(source, "no such file", f"check the {flag} path") from None
        except (UnicodeDecodeError, IsADirectoryError):
            raise ConfigError(source, "is not a PEM text file", "give a PEM key file") from None
        except OSError as exc:
            raise ConfigError(
                source, f"cannot be read ({exc.strerror})", "check its permissions"
            ) from None

    return Settings(
        partner_id=from_flag("--partner-id", options.partner_id) or lookup(*PARTNER_ID_VARS),
        alg=from_flag("--alg", options.alg) or lookup(ALG_VAR),
        private_key=from_file("--private-key", options.private_key) or lookup(PRIVATE_KEY_VAR),
        public_key=from_file("--public-key", options.public_key) or lookup(PUBLIC_KEY_VAR),
        env_files=tuple(name if name.is_absolute() else cwd / name for name in env_files),
        key_files=tuple(key_files),
    )
