"""An identity provider for the OAUTHBEARER tests: signing keys made with
``cryptography``, their JWKS, and tokens minted with them (JWS compact
serialization, written here from RFC 7515 so that the server's verifier is
checked against an independent signer), plus the forged tokens a server
must refuse: unsigned, and HS256 with the public key as the secret."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

ISSUER = "https://idp.test/realms/agents"
_TIMEOUT = 30.0
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


class JwksServer:
    """The provider's JWKS endpoint on loopback, counting its reads."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.reads = 0
        self.status = 200
        """What the endpoint answers: 200 and the key set, or this error."""
        self.failures = 0
        self._open = threading.Event()
        self._open.set()
        """Cleared while reads are held (:meth:`holding`)."""
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served._open.wait(_TIMEOUT)
                body = served.provider.document()
                if served.status != 200:
                    served.failures += 1
                    self.send_error(served.status)
                    return
                served.reads += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/realms/agents/certs"

    def read_again(self, since: int) -> None:
        """Waits until the server has read the set after ``since`` reads."""
        deadline = time.monotonic() + _TIMEOUT
        while self.reads <= since:
            assert time.monotonic() < deadline, "the JWKS was not read again"
            time.sleep(0.02)

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Holds every read that comes (the server waits on its fetch)
        until the block ends, when each is answered with the set as it is
        then: what the server holds cannot change inside the block, however
        late a read it had scheduled before comes."""
        self._open.clear()
        try:
            yield
        finally:
            self._open.set()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(_TIMEOUT)
