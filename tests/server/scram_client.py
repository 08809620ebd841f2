"""The client side of SASL/SCRAM (RFC 5802, RFC 7677) for tests on the
wire: SCRAM-SHA-256 and SCRAM-SHA-512, with extensions in the client-first
message (``tokenauth=true`` logs in with a delegation token, as Kafka's
ScramSaslClient sends it)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

from kio.index import load_request_schema

from engine.credentials import SCRAM_HASHES
from engine.protocol.apis import ApiKey
from tests.server.wire import Wire, build


def client_first_bare(user: str, nonce: bytes | None = None, extensions: bytes = b"") -> bytes:
    """``n=user,r=nonce`` and the extensions (``tokenauth=true``), if any."""
    name = user.replace("=", "=3D").replace(",", "=2C").encode()
    nonce = base64.b64encode(os.urandom(18)) if nonce is None else nonce
    bare = b"n=" + name + b",r=" + nonce
    return bare + b"," + extensions if extensions else bare


def client_final(
    client_first_bare: bytes, server_first: bytes, password: str, mechanism: str = "SCRAM-SHA-512"
) -> bytes:
    """RFC 5802's client-final-message, its proof made from ``password``."""
    hash_name = SCRAM_HASHES[mechanism]
    fields = dict(item.split(b"=", 1) for item in server_first.split(b","))
    salted = hashlib.pbkdf2_hmac(
        hash_name, password.encode(), base64.b64decode(fields[b"s"]), int(fields[b"i"])
    )
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    stored_key = hashlib.new(hash_name, client_key).digest()
    without_proof = b"c=biws,r=" + fields[b"r"]
    auth_message = client_first_bare + b"," + server_first + b"," + without_proof
    signature = hmac.digest(stored_key, auth_message, hash_name)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return without_proof + b",p=" + base64.b64encode(proof)


def scram_login(
    wire: Wire, mechanism: str, user: str, password: str, extensions: bytes = b""
) -> tuple[Any, Any]:
    """A whole exchange on ``wire``: SaslHandshake v1, then the two
    SaslAuthenticate v2 requests; the answers to the first and the last
    (the last is None when the first was refused)."""
    handshake = wire.request(
        build(load_request_schema(ApiKey.SASL_HANDSHAKE, 1), mechanism=mechanism)
    )
    assert handshake.error_code == 0, handshake
    bare = client_first_bare(user, extensions=extensions)
    authenticate = load_request_schema(ApiKey.SASL_AUTHENTICATE, 2)
    first = wire.request(build(authenticate, auth_bytes=b"n,," + bare))
    if first.error_code != 0:
        return first, None
    final = client_final(bare, bytes(first.auth_bytes), password, mechanism)
    return first, wire.request(build(authenticate, auth_bytes=final))


def token_login(wire: Wire, mechanism: str, token_id: str, token_hmac: bytes) -> tuple[Any, Any]:
    """A login with a delegation token: its id as the user, the base64 of
    its HMAC as the password, ``tokenauth=true``."""
    password = base64.b64encode(token_hmac).decode()
    return scram_login(wire, mechanism, token_id, password, b"tokenauth=true")
