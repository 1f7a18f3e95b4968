"""Compute the expected JWK and RFC 7638 thumbprint of the committed test keys.

Independent of devtunnel and of joserfc (which devtunnel uses): the JWK comes from
PyJWT's `to_jwk`, the thumbprint from RFC 7638 §3's canonical JSON and hashlib.
Run from this folder: `../../.venv/bin/python make_expected.py`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from jwt.algorithms import ECAlgorithm, RSAAlgorithm

HERE = Path(__file__).parent
# RFC 7638 §3.2: the required members only, sorted, no whitespace.
REQUIRED = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}
KEYS = {
    "rsa2048": RSAAlgorithm(RSAAlgorithm.SHA256),
    "ec-p256": ECAlgorithm(ECAlgorithm.SHA256),
}


def main() -> None:
    for name, algorithm in KEYS.items():
        private = algorithm.prepare_key((HERE / f"{name}-private.pem").read_bytes())
        jwk = algorithm.to_jwk(private.public_key(), as_dict=True)  # type: ignore[union-attr]
        members = {member: jwk[member] for member in REQUIRED[jwk["kty"]]}
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
        digest = hashlib.sha256(canonical.encode("utf-8")).digest()
        thumbprint = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

        (HERE / f"{name}.jwk.json").write_text(json.dumps(jwk, indent=2, sort_keys=True) + "\n")
        (HERE / f"{name}.thumbprint").write_text(thumbprint + "\n")
        print(f"{name}: {thumbprint}")


if __name__ == "__main__":
    main()
