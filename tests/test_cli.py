"""The jwks, keygen and token commands as a user runs them, and what they say about bad input."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from devtunnel.cli import main
from devtunnel.jwks import thumbprint
from devtunnel.keys import private_pem, public_pem
from tests.conftest import DATA, write_env
from tests.keyformats import encodings, env_lines, escaped, private_formats, public_formats

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
COMMANDS = ("up", "serve", "check", "keygen", "token", "jwks")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# The program itself


def test_python_m_devtunnel_prints_the_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devtunnel", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env=os.environ.copy(),
    )
    assert result.returncode == 0
    assert re.fullmatch(r"devtunnel \d+\.\d+\.\d+\n", result.stdout)


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s+\S", out, re.MULTILINE), command


def test_no_command_prints_the_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("usage: devtunnel")


# Bad input: one line naming the source and the fault, one line of what to do


@dataclass(frozen=True)
class Ctx:
    work: Path
    monkeypatch: pytest.MonkeyPatch
    ec: ec.EllipticCurvePrivateKey
    rsa: rsa.RSAPrivateKey
    cert_pem: str

    def env(self, name: str, value: str) -> None:
        self.monkeypatch.setenv(name, value)

    def file(self, name: str, text: str) -> None:
        (self.work / name).write_text(text, encoding="utf-8")

    def env_local(self, text: str) -> None:
        self.file(".env.local", text)


def pem_of(key: object, fmt: serialization.PrivateFormat, password: bytes | None = None) -> str:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption).decode()  # type: ignore[attr-defined]


PKCS8 = serialization.PrivateFormat.PKCS8
LEGACY = serialization.PrivateFormat.TraditionalOpenSSL


@dataclass(frozen=True)
class Bad:
    name: str
    argv: tuple[str, ...]
    setup: Callable[[Ctx], None]
    error: str


def ec_key_in_env(ctx: Ctx) -> None:
    ctx.env_local(f'PARTNER_PRIVATE_KEY="{escaped(private_pem(ctx.ec))}"\n')


def private_env(text: Callable[[Ctx], str]) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.env("PARTNER_PRIVATE_KEY", text(ctx))


JWKS = ("jwks", "--partner-id", "p1")
TOKEN = ("token", "--partner-id", "p1")
ENV_PRIVATE = "PARTNER_PRIVATE_KEY (environment)"

BAD_INPUTS = [
    Bad(
        "encrypted-pkcs8",
        JWKS,
        private_env(lambda c: pem_of(c.ec, PKCS8, b"secret")),
        f"{ENV_PRIVATE}: is an encrypted private key (PKCS#8)",
    ),
    Bad(
        "legacy-encrypted-pem",
        JWKS,
        private_env(lambda c: pem_of(c.ec, LEGACY, b"secret")),
        f"{ENV_PRIVATE}: is an encrypted private key (legacy Proc-Type PEM)",
    ),
    Bad(
        "ed25519",
        JWKS,
        private_env(lambda c: pem_of(ed25519.Ed25519PrivateKey.generate(), PKCS8)),
        f"{ENV_PRIVATE}: is a key of type Ed25519; AIR accepts RS256 (RSA) or ES256 (EC P-256)",
    ),
    Bad(
        "p384",
        JWKS,
        private_env(lambda c: pem_of(ec.generate_private_key(ec.SECP384R1()), PKCS8)),
        f"{ENV_PRIVATE}: is an EC key on secp384r1; ES256 needs P-256 (secp256r1)",
    ),
    Bad(
        "rsa1024",
        JWKS,
        private_env(lambda c: pem_of(rsa.generate_private_key(65537, 1024), PKCS8)),  # noqa: S505
        f"{ENV_PRIVATE}: is a 1024-bit RSA key; RS256 needs at least 2048",
    ),
    Bad(
        "certificate-pem",
        JWKS,
        lambda c: c.env_local(f'PARTNER_PUBLIC_KEY="{c.cert_pem}"\n'),
        "PARTNER_PUBLIC_KEY in .env.local: is a certificate, not a key",
    ),
    Bad(
        "certificate-body",
        JWKS,
        lambda c: c.env("PARTNER_PUBLIC_KEY", "".join(c.cert_pem.splitlines()[1:-1])),
        "PARTNER_PUBLIC_KEY (environment): is a certificate, not a key",
    ),
    Bad(
        "truncated-pem",
        JWKS,
        private_env(lambda c: private_pem(c.ec).split("-----END")[0]),
        f"{ENV_PRIVATE}: is truncated: no END line after BEGIN PRIVATE KEY",
    ),
    Bad(
        "half-written-env-line",
        JWKS,
        lambda c: c.env_local('PARTNER_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----\\nMIGHAgEAMBM'),
        "PARTNER_PRIVATE_KEY in .env.local: is truncated: no END line after BEGIN PRIVATE KEY",
    ),
    Bad(
        "mismatched-begin-end",
        JWKS,
        private_env(lambda c: private_pem(c.ec).replace("END PRIVATE", "END RSA PRIVATE")),
        f"{ENV_PRIVATE}: has BEGIN PRIVATE KEY but END RSA PRIVATE KEY",
    ),
    Bad(
        "garbled-base64",
        JWKS,
        private_env(lambda c: "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg!*"),
        f"{ENV_PRIVATE}: is neither a PEM key nor a base64 key body (garbled?)",
    ),
    Bad(
        "base64-of-garbage",
        JWKS,
        private_env(lambda c: "VGhpcyBpcyBub3QgYSBrZXkgYXQgYWxsLCBqdXN0IHRleHQu"),
        f"{ENV_PRIVATE}: is not a valid key (truncated or garbled?)",
    ),
    Bad(
        "empty-key-file",
        (*JWKS, "--private-key", "empty.pem"),
        lambda c: c.file("empty.pem", "\n"),
        "--private-key empty.pem: is empty",
    ),
    Bad(
        "only-escapes-in-env-file",
        JWKS,
        lambda c: c.env_local("PARTNER_PRIVATE_KEY='\\n\\n'\n"),
        "PARTNER_PRIVATE_KEY in .env.local: is empty",
    ),
    Bad(
        "public-key-as-private",
        JWKS,
        private_env(lambda c: public_pem(c.ec.public_key())),
        f"{ENV_PRIVATE}: holds a public key where the private key belongs",
    ),
    Bad(
        "private-key-as-public",
        JWKS,
        lambda c: c.env("PARTNER_PUBLIC_KEY", escaped(private_pem(c.rsa))),
        "PARTNER_PUBLIC_KEY (environment): holds a private key where the public key belongs",
    ),
    Bad(
        "mismatched-pair",
        (*JWKS, "--public-key", "other.pem"),
        lambda c: (ec_key_in_env(c), c.file("other.pem", public_pem(c.rsa.public_key())))[0],
        "PARTNER_PRIVATE_KEY in .env.local and --public-key other.pem: are not a key pair: "
        "tokens signed with this private key will fail verification",
    ),
    Bad(
        "hs256",
        JWKS,
        lambda c: (ec_key_in_env(c), c.file(".env", "SIGNING_ALGORITHM=HS256\n"))[0],
        "SIGNING_ALGORITHM in .env: is 'HS256', not one of RS256, ES256",
    ),
    Bad(
        "rs256-with-an-ec-key",
        JWKS,
        lambda c: (ec_key_in_env(c), c.env("SIGNING_ALGORITHM", "RS256"))[0],
        "SIGNING_ALGORITHM (environment): is RS256 but the key from "
        "PARTNER_PRIVATE_KEY in .env.local is for ES256",
    ),
    Bad(
        "jwks-without-partner-id",
        ("jwks",),
        ec_key_in_env,
        "NEXT_PUBLIC_PARTNER_ID: not set: the JWT kid and the JWKS kid must be your Partner ID",
    ),
    Bad(
        "token-without-partner-id",
        ("token",),
        ec_key_in_env,
        "NEXT_PUBLIC_PARTNER_ID: not set: the JWT kid and the JWKS kid must be your Partner ID",
    ),
    Bad(
        "partner-id-with-spaces",
        ("jwks", "--env-file", "dev.env"),
        lambda c: (ec_key_in_env(c), c.file("dev.env", "PARTNER_ID=my partner\n"))[0],
        "PARTNER_ID in dev.env: is not a valid Partner ID "
        "(empty, or has spaces or control characters)",
    ),
    Bad(
        "missing-env-file",
        (*JWKS, "--env-file", "missing.env"),
        ec_key_in_env,
        "--env-file missing.env: no such env file",
    ),
    Bad(
        "missing-private-key-file",
        (*JWKS, "--private-key", "missing.pem"),
        lambda c: None,
        "--private-key missing.pem: no such file",
    ),
    Bad(
        "no-key-at-all",
        JWKS,
        lambda c: None,
        "PARTNER_PRIVATE_KEY: not set, and no --private-key given",
    ),
    Bad(
        "token-with-a-public-key-only",
        TOKEN,
        lambda c: c.env("PARTNER_PUBLIC_KEY", public_pem(c.ec.public_key())),
        "PARTNER_PRIVATE_KEY: not set: signing needs the private key",
    ),
    Bad(
        "ttl-901",
        (*TOKEN, "--ttl", "901"),
        ec_key_in_env,
        "--ttl: is 901 s; AIR accepts 1 to 900 s",
    ),
    Bad("ttl-0", (*TOKEN, "--ttl", "0"), ec_key_in_env, "--ttl: is 0 s; AIR accepts 1 to 900 s"),
    Bad(
        "claim-without-equals",
        (*TOKEN, "--claim", "email"),
        ec_key_in_env,
        "--claim email: is not K=V",
    ),
    Bad(
        "claim-exp",
        (*TOKEN, "--claim", "exp=1"),
        ec_key_in_env,
        "--claim exp: is set by devtunnel",
    ),
    Bad(
        "keygen-rsa-1024",
        ("keygen", "--alg", "RS256", "--bits", "1024"),
        lambda c: None,
        "--bits: is 1024; RS256 needs 2048 to 8192",
    ),
    Bad(
        "keygen-bits-for-an-ec-key",
        ("keygen", "--bits", "1024"),
        lambda c: None,
        "--bits: sets an RSA key size, but --alg is ES256",
    ),
    Bad(
        "keygen-over-existing-keys",
        ("keygen",),
        ec_key_in_env,
        "PARTNER_PRIVATE_KEY in .env.local: already holds a key",
    ),
    Bad(
        "keygen-over-existing-pem-files",
        ("keygen", "--out", "."),
        lambda c: c.file("public.pem", public_pem(c.ec.public_key())),
        "--out .: already has public.pem",
    ),
    Bad(
        "jwks-out-into-a-missing-folder",
        (*JWKS, "--out", "missing/jwks.json"),
        ec_key_in_env,
        "--out missing/jwks.json: cannot be written (No such file or directory)",
    ),
]

LONG_BASE64 = re.compile(r"[A-Za-z0-9+/]{40,}")


def test_bad_inputs_each_have_their_own_message() -> None:
    assert len(BAD_INPUTS) >= 20
    assert len({(bad.argv[0], bad.error) for bad in BAD_INPUTS}) == len(BAD_INPUTS)


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[bad.name for bad in BAD_INPUTS])
def test_bad_input_exits_2_with_a_source_a_fault_and_a_hint(
    bad: Bad,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ec_private: ec.EllipticCurvePrivateKey,
    rsa_private: rsa.RSAPrivateKey,
    server_cert: trustme.LeafCert,
) -> None:
    cert_pem = server_cert.cert_chain_pems[0].bytes().decode()
    bad.setup(Ctx(isolated, monkeypatch, ec_private, rsa_private, cert_pem))
    before = tree(isolated)

    code, out, err = run(capsys, *bad.argv)

    assert code == 2
    assert out == ""
    error, hint = err.splitlines()
    assert error == f"devtunnel: error: {bad.error}"
    assert re.fullmatch(r"  hint: \S.{8,}", hint), hint
    assert "Traceback" not in err
    assert "-----BEGIN" not in err
    assert not LONG_BASE64.search(err), err
    assert tree(isolated) == before


# Keys reach the commands every way a user may give them


def key_for(
    name: str, ec_private: ec.EllipticCurvePrivateKey, rsa_private: rsa.RSAPrivateKey
) -> PrivateKey:
    return ec_private if name == "ec" else rsa_private


DELIVERIES = ["environment", ".env", ".env.local", "key file"]


@pytest.mark.parametrize("delivery", DELIVERIES)
@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_every_format_and_encoding_gives_the_same_jwks(
    key_type: str,
    delivery: str,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ec_private: ec.EllipticCurvePrivateKey,
    rsa_private: rsa.RSAPrivateKey,
) -> None:
    key = key_for(key_type, ec_private, rsa_private)
    code, expected, _ = run(capsys, "jwks", "--partner-id", "p1", "--private-key", "ref.pem")
    assert code == 2  # no reference file yet: proves the run below reads what we give it
    (isolated / "ref.pem").write_text(private_pem(key))
    code, expected, _ = run(capsys, "jwks", "--partner-id", "p1", "--private-key", "ref.pem")
    (isolated / "ref.pem").unlink()
    assert code == 0

    tried = 0
    for kind, formats in (("private", private_formats(key)), ("public", public_formats(key))):
        variable = f"PARTNER_{kind.upper()}_KEY"
        for fmt, pem in formats.items():
            forms = env_lines(pem) if delivery.startswith(".env") else encodings(pem)
            # Parsing an RSA private key costs ~40 ms: RSA runs one encoding per format and
            # delivery (tests/test_keys.py parses every RSA encoding once).
            chosen = list(forms.items())
            if key_type == "rsa":
                chosen = [chosen[(tried + DELIVERIES.index(delivery)) % len(chosen)]]
            for encoding, text in chosen:
                argv = ["jwks", "--partner-id", "p1"]
                if delivery == "environment":
                    monkeypatch.setenv(variable, text)
                elif delivery == "key file":
                    (isolated / "key.pem").write_text(text, encoding="utf-8")
                    argv += [f"--{kind}-key", "key.pem"]
                else:
                    (isolated / delivery).write_text(f"{variable}={text}\n", encoding="utf-8")

                code, out, err = run(capsys, *argv)

                assert (code, err) == (0, ""), (kind, fmt, encoding)
                assert out == expected, (kind, fmt, encoding)
                monkeypatch.delenv(variable, raising=False)
                for name in (".env", ".env.local", "key.pem"):
                    (isolated / name).unlink(missing_ok=True)
                tried += 1
    assert tried >= 4


def test_flags_win_over_the_environment_which_wins_over_env_files(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]
    write_env(isolated / ".env", keys[0], "from-env")
    write_env(isolated / ".env.local", keys[1], "from-env-local")
    (isolated / "flag.pem").write_text(private_pem(keys[3]))
    (isolated / "flag.pub").write_text(public_pem(keys[3].public_key()))

    def served(*argv: str) -> tuple[str, int]:
        code, out, err = run(capsys, "jwks", *argv)
        assert (code, err) == (0, "")
        jwk = json.loads(out)["keys"][0]
        return jwk["kid"], int.from_bytes(jwt.utils.base64url_decode(jwk["x"]), "big")

    def x(key: ec.EllipticCurvePrivateKey) -> int:
        return key.public_key().public_numbers().x

    assert served() == ("from-env-local", x(keys[1]))
    assert served("--env-file", ".env") == ("from-env", x(keys[0]))

    monkeypatch.setenv("PARTNER_PRIVATE_KEY", private_pem(keys[2]))
    monkeypatch.setenv("PARTNER_PUBLIC_KEY", public_pem(keys[2].public_key()))
    monkeypatch.setenv("PARTNER_ID", "from-process")
    assert served() == ("from-process", x(keys[2]))
    assert served("--env-file", ".env") == ("from-process", x(keys[2]))

    flags = ("--partner-id", "flag", "--private-key", "flag.pem", "--public-key", "flag.pub")
    assert served(*flags) == ("flag", x(keys[3]))


def test_env_file_flags_replace_the_default_files(
    isolated: Path, capsys: pytest.CaptureFixture[str], rsa_private: rsa.RSAPrivateKey
) -> None:
    write_env(isolated / ".env.local", ec.generate_private_key(ec.SECP256R1()), "default")
    write_env(isolated / "one.env", rsa_private, "one")
    (isolated / "two.env").write_text("PARTNER_ID=two\n")

    code, out, _ = run(capsys, "jwks", "--env-file", "one.env", "--env-file", "two.env")

    jwk = json.loads(out)["keys"][0]
    assert (code, jwk["kid"], jwk["alg"]) == (0, "two", "RS256")


# jwks


def test_jwks_out_writes_the_document_and_says_so(
    isolated: Path, capsys: pytest.CaptureFixture[str], ec_private: ec.EllipticCurvePrivateKey
) -> None:
    write_env(isolated / ".env.local", ec_private, "partner-5")

    code, out, err = run(capsys, "jwks", "--out", "jwks.json")

    document = json.loads((isolated / "jwks.json").read_text())
    assert code == 0
    assert out == ""
    assert err == "wrote jwks.json (kid partner-5, ES256)\n"
    assert document["keys"][0]["kid"] == "partner-5"
    assert sorted(p.name for p in isolated.iterdir()) == [".env.local", "jwks.json"]


def test_jwks_out_failing_midway_keeps_the_old_file_and_no_temp_file(
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    write_env(isolated / ".env.local", ec_private, "partner-5")
    (isolated / "jwks.json").write_text('{"keys": []}\n')

    def fail(src: object, dst: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", fail)
    code, _, err = run(capsys, "jwks", "--out", "jwks.json")

    assert code == 2
    assert err.splitlines()[0] == (
        "devtunnel: error: --out jwks.json: cannot be written (Input/output error)"
    )
    assert (isolated / "jwks.json").read_text() == '{"keys": []}\n'
    assert sorted(p.name for p in isolated.iterdir()) == [".env.local", "jwks.json"]


# token


@pytest.mark.parametrize("name", ["rsa2048", "ec-p256"])
def test_a_token_from_devtunnel_token_verifies_with_pyjwt(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = str(DATA / f"{name}-private.pem")
    argv = ["--partner-id", "partner-42", "--private-key", key_file]

    code, out, _ = run(capsys, "jwks", *argv)
    assert code == 0
    jwk = jwt.PyJWK(json.loads(out)["keys"][0])
    code, out, err = run(
        capsys, "token", *argv, "--scope", "verify", "--ttl", "600",
        "--claim", "email=dev@example.com", "--claim", "n=3", "--claim", 'x={"a": [1]}',
    )  # fmt: skip
    token = out.strip()

    claims = jwt.decode(token, jwk.key, algorithms=[jwk.algorithm_name])
    assert (code, err) == (0, "")
    assert out.count("\n") == 1
    assert jwt.get_unverified_header(token) == {
        "alg": "RS256" if name == "rsa2048" else "ES256",
        "kid": "partner-42",
        "typ": "JWT",
    }
    assert claims["partnerId"] == "partner-42"
    assert claims["scope"] == "verify"
    assert claims["exp"] - claims["iat"] == 600
    assert (claims["email"], claims["n"], claims["x"]) == ("dev@example.com", 3, {"a": [1]})


# keygen


def test_keygen_writes_env_local_that_jwks_and_token_then_use(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "keygen")

    path = isolated / ".env.local"
    assert (code, out) == (0, "")
    lines = err.splitlines()
    assert lines[0] == "wrote .env.local"
    assert lines[1].startswith("ES256 key, thumbprint ")
    assert mode(path) == 0o600
    names = [line.split("=", 1)[0] for line in path.read_text().splitlines()]
    assert names == ["PARTNER_PRIVATE_KEY", "PARTNER_PUBLIC_KEY", "SIGNING_ALGORITHM"]

    code, out, _ = run(capsys, "jwks", "--partner-id", "p1")
    assert code == 0
    assert lines[1].endswith(" " + thumbprint(json.loads(out)["keys"][0]))
    code, out, _ = run(capsys, "token", "--partner-id", "p1")
    assert code == 0
    assert out.count(".") == 2


def test_keygen_keeps_every_other_line_of_the_env_file(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = (
        "# my app\n"
        "NEXT_PUBLIC_PARTNER_ID=partner-3\r\n"
        'MULTI="line one\n'
        "line two # not a comment\n"
        'line three"\n'
        "\n"
        "   # indented comment\n"
        "TAIL='no newline at the end'"
    )
    (isolated / "app.env").write_text(original, encoding="utf-8", newline="")

    code, _, _ = run(capsys, "keygen", "--env-file", "app.env")

    text = (isolated / "app.env").read_bytes().decode()
    assert code == 0
    assert text.startswith(original + "\n")
    code, out, _ = run(capsys, "token", "--env-file", "app.env")
    assert code == 0
    assert jwt.get_unverified_header(out.strip())["kid"] == "partner-3"


def test_keygen_writes_crlf_lines_into_a_crlf_env_file(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = b"# windows\r\nNEXT_PUBLIC_PARTNER_ID=partner-4\r\nPARTNER_PUBLIC_KEY=\r\nLAST=1"
    (isolated / ".env.local").write_bytes(original)

    code, _, _ = run(capsys, "keygen")

    data = (isolated / ".env.local").read_bytes()
    assert code == 0
    assert data.count(b"\n") == data.count(b"\r\n") == 6
    assert data.startswith(b"# windows\r\nNEXT_PUBLIC_PARTNER_ID=partner-4\r\nPARTNER_PUBLIC_KEY=")
    assert b"\r\nLAST=1\r\n" in data
    assert run(capsys, "token")[0] == 0


def test_keygen_force_keeps_the_old_keys_in_backups(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = isolated / ".env.local"
    run(capsys, "keygen")
    first = path.read_text()
    run(capsys, "keygen", "--force")
    second = path.read_text()

    code, _, err = run(capsys, "keygen", "--force")

    assert code == 0
    assert "kept the previous file as .env.local.bak" in err.splitlines()
    assert (isolated / ".env.local.bak").read_text() == second
    assert (isolated / ".env.local.bak.1").read_text() == first
    assert mode(isolated / ".env.local.bak") == 0o600
    assert len({first, second, path.read_text()}) == 3


def test_keygen_out_writes_pem_files(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "keygen", "--alg", "RS256", "--bits", "3072", "--out", "keys")

    private, public = isolated / "keys" / "private.pem", isolated / "keys" / "public.pem"
    assert code == 0
    assert err.splitlines()[:2] == ["wrote keys/private.pem", "wrote keys/public.pem"]
    assert mode(private) == 0o600
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 3072
    assert public.read_text() == public_pem(key.public_key())
    assert not (isolated / ".env.local").exists()

    code, out, _ = run(
        capsys,
        "jwks",
        "--partner-id",
        "p",
        "--private-key",
        str(private),
        "--public-key",
        str(public),
    )
    assert code == 0
    assert json.loads(out)["keys"][0]["alg"] == "RS256"


def test_a_tripped_private_member_guard_exits_1_and_writes_nothing(
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    import devtunnel.jwks

    write_env(isolated / ".env.local", ec_private, "p1")
    leaky = devtunnel.jwks.jwks_document

    def with_private_member(pairs: object) -> dict[str, list[dict[str, str]]]:
        document = leaky(pairs)  # type: ignore[arg-type]
        document["keys"][0]["d"] = "secret"
        return document

    monkeypatch.setattr(devtunnel.jwks, "jwks_document", with_private_member)
    code, out, err = run(capsys, "jwks", "--out", "jwks.json")

    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "devtunnel: error: JWKS: would publish private key members (p1:d)",
        "  hint: this is a devtunnel bug: please report it",
    ]
    assert not (isolated / "jwks.json").exists()


def test_an_unexpected_error_is_one_line_and_a_hint_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_pair: object, **_options: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr("devtunnel.tokens.sign_partner_jwt", broken)
    monkeypatch.setenv("NEXT_PUBLIC_PARTNER_ID", "p")
    monkeypatch.setenv("PARTNER_PRIVATE_KEY", private_pem(ec.generate_private_key(ec.SECP256R1())))

    code = main(["token"])

    assert code == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "devtunnel: unexpected error: RuntimeError: boom",
        "  hint: this is a devtunnel bug; run again with -vv and report what it shows",
    ]


def test_keygen_into_a_missing_folder_is_a_config_error(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = isolated / "missing" / ".env.local"

    code = main(["keygen", "--env-file", str(target)])

    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"devtunnel: error: {target}: cannot be written (No such file or directory)",
        "  hint: check that its folder exists",
    ]
    assert not target.parent.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "http://127.0.0.1:9/jwks", "--timeout", "0"], "--timeout: 0 must be above 0"),
        (["up", "--interval", "-1"], "--interval: -1 must be above 0 seconds"),
        (["up", "--interval", "soon"], "--interval: 'soon' is not a number of seconds"),
    ],
)
def test_seconds_must_be_a_positive_number(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2
    assert message in capsys.readouterr().err
