"""Fixtures shared by every test module: an isolated home and cwd, keys, a test CA."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devtunnel.config import KNOWN_VARS
from devtunnel.keys import KeyPair
from tests.fakes import env_text

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in its own cwd and HOME, with no key variables from the outside.

    HOME and XDG_CONFIG_HOME point into tmp_path, so nothing can read or write the
    user's real `~/.config/ngrok`.
    """
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for name in (*KNOWN_VARS, "NGROK_AUTHTOKEN", "PYNGROK_NGROK_PATH", "PORT", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(work)
    return work


@pytest.fixture(scope="session")
def ec_private() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def ec_pair(ec_private: ec.EllipticCurvePrivateKey) -> KeyPair:
    return KeyPair(ec_private.public_key(), ec_private, "ES256", "partner-ec", "partner-ec")


@pytest.fixture
def rsa_pair(rsa_private: rsa.RSAPrivateKey) -> KeyPair:
    return KeyPair(rsa_private.public_key(), rsa_private, "RS256", "partner-rsa", "partner-rsa")


def write_env(
    path: Path,
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    partner_id: str = "partner-1",
) -> Path:
    """An env file as AIR's examples hold it: one-line PEMs with literal \\n escapes."""
    path.write_text(env_text(private, partner_id), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def test_ca() -> trustme.CA:
    """A certificate authority made for the test run; nothing outside trusts it."""
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(test_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test CA's certificate as a PEM file, for --ca-file and SSL_CERT_FILE."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    test_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def server_cert(test_ca: trustme.CA) -> trustme.LeafCert:
    """A certificate from the test CA for localhost and 127.0.0.1."""
    return test_ca.issue_cert("localhost", "127.0.0.1")


@pytest.fixture
def tls_file(server_cert: trustme.LeafCert, tmp_path: Path) -> Path:
    """The server certificate's key and chain in one PEM file, as a fake tunnel agent serves TLS."""
    path = tmp_path / "agent-tls.pem"
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(path))
    return path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unused_port() -> Iterator[int]:
    yield free_port()
