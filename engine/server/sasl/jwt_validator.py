"""The two OAUTHBEARER token validators Kafka has: the secure one (KIP-768,
Kafka's OAuthBearerValidatorCallbackHandler), which verifies a JWS signed
with RS256/384/512, PS256/384/512 or ES256/384/512 against the provider's
JWKS (engine/server/sasl/jwks.py), and the unsecured one (Kafka's
OAuthBearerUnsecuredValidatorCallbackHandler), which takes an unsigned
token (``alg: none``) for development and only when configured so.

The algorithm comes from the token but is checked against the key before
anything is verified: only the asymmetric algorithms above, each only with
a key of its type (RSA for RS*/PS*, EC of the algorithm's curve for ES*)
and with the key's own ``alg`` when the set names one. So ``none`` never
passes the secure validator, and an HS256 token made with a public key as
its secret finds no key it may be checked with (the algorithm-confusion
attacks). Signatures are verified by ``cryptography``.

Claims are checked as Kafka's ValidatorAccessTokenValidator checks them:
``exp`` and ``iat`` required, ``exp`` and ``nbf`` against the clock with
``clock.skew.seconds`` of leeway, ``iss`` and ``aud`` when expected ones
are configured, and the subject claim (``sub`` unless configured) a
non-empty string, which becomes the user name.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.server.sasl.jwks import JsonWebKey, KeySource
from engine.server.sasl.oauthbearer import InvalidToken, ValidatedToken

MAX_TOKEN_BYTES = 16384
"""A token longer than this is refused before it is decoded (Kafka's
bound is only the SASL frame's); providers' access tokens are 1-4 KiB."""
_HASHES = {"256": "SHA256", "384": "SHA384", "512": "SHA512"}
SIGNED_ALGORITHMS = frozenset(f"{kind}{bits}" for kind in ("RS", "PS", "ES") for bits in _HASHES)
_ES_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


@dataclass(frozen=True)
class ClaimRules:
    """What the claims of an accepted token must hold."""

    sub_claim_name: str = "sub"
    scope_claim_name: str = "scope"
    expected_audience: tuple[str, ...] = ()
    """Any one of them in ``aud``; empty: not checked."""
    expected_issuer: str | None = None
    clock_skew_s: int = 30
    require_iat: bool = True


@dataclass(frozen=True)
class DecodedToken:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _b64url(part: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken(f"the {what} is not base64url") from None


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url(part, what))
    except (ValueError, RecursionError):
        raise InvalidToken(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidToken(f"the {what} is not a JSON object")
    return value


def decode(token: str) -> DecodedToken:
    """A JWS compact serialization's parts, unverified; raises InvalidToken."""
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidToken(f"a token of {len(token)} bytes, more than {MAX_TOKEN_BYTES}")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken(f"a token of {len(parts)} parts, not the three of a JWS")
    header = _json_object(parts[0], "header")
    claims = _json_object(parts[1], "payload")
    signature = _b64url(parts[2], "signature")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    return DecodedToken(header, claims, signing_input, signature)


def _number(claims: dict[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise InvalidToken(f"no {name!r} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidToken(f"the {name!r} claim is not a number")
    return float(value)


def check_claims(claims: dict[str, Any], rules: ClaimRules, now_ms: int) -> ValidatedToken:
    """The principal and expiry of claims that hold ``rules`` at ``now_ms``;
    raises InvalidToken naming the claim that does not."""
    now_s = now_ms / 1000
    expires = _number(claims, "exp", required=True)
    assert expires is not None
    if now_s > expires + rules.clock_skew_s:
        raise InvalidToken(f"the token expired at {expires:.0f} (now {now_s:.0f})")
    not_before = _number(claims, "nbf", required=False)
    if not_before is not None and now_s < not_before - rules.clock_skew_s:
        raise InvalidToken(f"the token is not valid before {not_before:.0f} (now {now_s:.0f})")
    _number(claims, "iat", required=rules.require_iat)
    if rules.expected_issuer is not None and claims.get("iss") != rules.expected_issuer:
        raise InvalidToken(f"issuer {_shown(claims.get('iss'))}, not the expected one")
    if rules.expected_audience:
        audience = claims.get("aud")
        given = [audience] if isinstance(audience, str) else audience
        if not isinstance(given, list) or not set(rules.expected_audience) & {
            a for a in given if isinstance(a, str)
        }:
            raise InvalidToken(f"audience {_shown(audience)}, none of the expected ones")
    subject = claims.get(rules.sub_claim_name)
    if not isinstance(subject, str) or not subject.strip():
        raise InvalidToken(f"no subject: the {rules.sub_claim_name!r} claim is not a name")
    scope = claims.get(rules.scope_claim_name)
    if isinstance(scope, str):
        scopes = tuple(scope.split())
    elif isinstance(scope, list):
        scopes = tuple(s for s in scope if isinstance(s, str))
    else:
        scopes = ()
    return ValidatedToken(subject, int(expires * 1000), scopes)


def _shown(value: object) -> str:
    """A claim's value for the log, cut short: claims are the peer's bytes."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _usable(key: JsonWebKey, alg: str) -> bool:
    """Whether ``key`` may verify a signature made with ``alg``."""
    if key.alg is not None and key.alg != alg:
        return False
    if alg.startswith("ES"):
        return key.kty == "EC" and key.crv == _ES_CURVES[alg]
    return key.kty == "RSA"


def verify_signature(decoded: DecodedToken, key: JsonWebKey, alg: str) -> bool:
    """Whether ``decoded``'s signature is ``key``'s over its signing input."""
    # The oauth extra, imported by the servers that verify tokens only.
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils  # noqa: PLC0415

    algorithm: hashes.HashAlgorithm = getattr(hashes, _HASHES[alg[2:]])()
    try:
        if alg.startswith("ES"):
            assert isinstance(key.key, ec.EllipticCurvePublicKey)
            size = (key.key.curve.key_size + 7) // 8
            if len(decoded.signature) != 2 * size:
                return False
            r = int.from_bytes(decoded.signature[:size], "big")
            s = int.from_bytes(decoded.signature[size:], "big")
            der = utils.encode_dss_signature(r, s)
            key.key.verify(der, decoded.signing_input, ec.ECDSA(algorithm))
        else:
            assert isinstance(key.key, rsa.RSAPublicKey)
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if alg.startswith("RS")
                else padding.PSS(padding.MGF1(algorithm), algorithm.digest_size)
            )
            key.key.verify(decoded.signature, decoded.signing_input, pad, algorithm)
    except InvalidSignature:
        return False
    return True


class JwksValidator:
    """Kafka's secure validator: a JWS verified with a key of ``keys``."""

    def __init__(self, keys: KeySource, rules: ClaimRules, now_ms: Callable[[], int]) -> None:
        self._keys = keys
        self._rules = rules
        self._now_ms = now_ms

    def validate(self, token: str) -> ValidatedToken:
        decoded = decode(token)
        alg = decoded.header.get("alg")
        if not isinstance(alg, str) or alg not in SIGNED_ALGORITHMS:
            raise InvalidToken(
                f"algorithm {_shown(alg)} is not one of {', '.join(sorted(SIGNED_ALGORITHMS))}"
            )
        kid = decoded.header.get("kid")
        if not isinstance(kid, (str, type(None))):
            raise InvalidToken("a key id that is not a string")
        key = self._key(kid, alg)
        if not verify_signature(decoded, key, alg):
            raise InvalidToken(f"the signature does not verify with key {_shown(kid)}")
        return check_claims(decoded.claims, self._rules, self._now_ms())

    def _key(self, kid: str | None, alg: str) -> JsonWebKey:
        keys = self._keys.keys
        if kid is not None:
            named = [key for key in keys if key.kid == kid]
            if not named:
                self._keys.missing(kid)
                raise InvalidToken(f"no key {_shown(kid)} in the key set (it is read again)")
        else:
            named = list(keys)
        usable = [key for key in named if _usable(key, alg)]
        if len(usable) != 1:
            which = f"key {_shown(kid)}" if kid is not None else "the key set (it names no key)"
            found = "no key" if not usable else "more than one key"
            raise InvalidToken(f"{found} for algorithm {alg} in {which}")
        return usable[0]


class UnsecuredValidator:
    """Kafka's unsecured validator: an unsigned JWS (``alg: none``, an empty
    signature), for development only. Its claims are checked as a signed
    token's, but anyone may write them."""

    def __init__(self, rules: ClaimRules, now_ms: Callable[[], int]) -> None:
        self._rules = rules
        self._now_ms = now_ms

    def validate(self, token: str) -> ValidatedToken:
        decoded = decode(token)
        if decoded.header.get("alg") != "none":
            raise InvalidToken(
                f"algorithm {_shown(decoded.header.get('alg'))}: the unsecured validator takes"
                " only 'none'"
            )
        if decoded.signature:
            raise InvalidToken("an unsecured token with a signature")
        return check_claims(decoded.claims, self._rules, self._now_ms())
