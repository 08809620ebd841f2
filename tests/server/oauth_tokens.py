"""An identity provider for the OAUTHBEARER tests: signing keys made with
``cryptography``, their JWKS, and tokens minted with them (JWS compact
serialization, written here from RFC 7515 so that the server's verifier is
checked against an independent signer), plus the forged tokens a server
must refuse: unsigned, and HS256 with the public key as the secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

ISSUER = "https://idp.test/realms/agents"
AUDIENCE = "tidelog"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _int(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @classmethod
    def rsa(cls, kid: str) -> SigningKey:
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str, curve: ec.EllipticCurve | None = None) -> SigningKey:
        return cls(kid, ec.generate_private_key(curve or ec.SECP256R1()))

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            return {"kty": "RSA", "kid": self.kid, "use": "sig", "n": _int(numbers.n),
                    "e": _int(numbers.e)}  # fmt: skip
        assert isinstance(public, ec.EllipticCurvePublicKey)
        size = (public.curve.key_size + 7) // 8
        point = public.public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[public.curve.name]
        return {"kty": "EC", "kid": self.kid, "use": "sig", "crv": crv,
                "x": b64url(point.x.to_bytes(size, "big")),
                "y": b64url(point.y.to_bytes(size, "big"))}  # fmt: skip

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, alg: str, signing_input: bytes) -> bytes:
        digest: hashes.HashAlgorithm = getattr(hashes, f"SHA{alg[2:]}")()
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            r, s = utils.decode_dss_signature(self.private.sign(signing_input, ec.ECDSA(digest)))
            size = (self.private.curve.key_size + 7) // 8
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if alg.startswith("RS")
            else padding.PSS(padding.MGF1(digest), digest.digest_size)
        )
        return self.private.sign(signing_input, pad, digest)


def jwks(*keys: SigningKey) -> bytes:
    return json.dumps({"keys": [key.jwk() for key in keys]}).encode()


def claims(subject: str, *, lifetime_s: int = 3600, **more: Any) -> dict[str, Any]:
    """A provider's usual claims for ``subject``, valid from now for ``lifetime_s``."""
    now = int(time.time())
    given: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now,
                             "exp": now + lifetime_s, "scope": "kafka agents"}  # fmt: skip
    given.update(more)
    return given


def _encode(header: dict[str, Any], payload: dict[str, Any]) -> bytes:
    return (
        f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    ).encode()


def mint(key: SigningKey, payload: dict[str, Any], *, alg: str | None = None,
         kid: str | None = None, header: dict[str, Any] | None = None) -> str:  # fmt: skip
    """A JWS of ``payload`` signed by ``key`` (kid: the key's, unless given)."""
    alg = alg or ("RS256" if isinstance(key.private, rsa.RSAPrivateKey) else "ES256")
    head = {"alg": alg, "typ": "JWT", "kid": kid or key.kid, **(header or {})}
    signing_input = _encode(head, payload)
    return f"{signing_input.decode()}.{b64url(key.sign(alg, signing_input))}"


def unsigned(payload: dict[str, Any]) -> str:
    """An ``alg: none`` token (Kafka's unsecured JWS): no signature."""
    return f"{_encode({'alg': 'none'}, payload).decode()}."


def hs256_with_public_key(key: SigningKey, payload: dict[str, Any]) -> str:
    """The algorithm-confusion forgery: HMAC-SHA256 keyed with the public key."""
    signing_input = _encode({"alg": "HS256", "typ": "JWT", "kid": key.kid}, payload)
    mac = hmac.digest(key.public_pem(), signing_input, hashlib.sha256)
    return f"{signing_input.decode()}.{b64url(mac)}"


@dataclass
class Provider:
    """The keys a provider publishes (what its JWKS serves right now)."""

    keys: list[SigningKey] = field(default_factory=list)

    def document(self) -> bytes:
        return jwks(*self.keys)
