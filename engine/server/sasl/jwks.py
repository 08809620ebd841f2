"""JSON Web Key Sets (RFC 7517): the public keys an identity provider signs
its tokens with, as the OAUTHBEARER validator uses them, and where they
come from (a file, or an http(s) endpoint refreshed on a schedule and when
a token names a key the set lacks, as Kafka's RefreshingHttpsJwks).

Only public signature keys are kept: RSA (``n``, ``e``) and EC on P-256,
P-384 and P-521 (``crv``, ``x``, ``y``). A key for encryption
(``use: enc``), of another type (``oct`` among them: a shared secret has
no place in a public key set) or that does not parse is skipped, so that
one odd key does not take the others down. Keys are built with
``cryptography``, imported when a key set is first read (the ``oauth``
extra).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from engine import clock

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

log = logging.getLogger("tidelog.server")

MAX_JWKS_BYTES = 1 << 20
"""A key set larger than this is refused: a provider publishes a handful of keys."""
FETCH_TIMEOUT_S = 10.0
"""How long one fetch of the endpoint may take, connecting included."""
EC_CURVES = frozenset(("P-256", "P-384", "P-521"))


class JwksError(ValueError):
    """A key set that cannot be read or used, with where it came from and why."""


@dataclass(frozen=True)
class JsonWebKey:
    kid: str | None
    kty: str
    """``RSA`` or ``EC``."""
    alg: str | None
    """The one algorithm the key is for, when the set says."""
    crv: str | None
    key: RSAPublicKey | EllipticCurvePublicKey


def _b64url_int(value: object) -> int:
    if not isinstance(value, str) or not value:
        raise ValueError("not a base64url string")
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return int.from_bytes(raw, "big")


def _public_key(jwk: dict[str, Any]) -> JsonWebKey | None:
    """The key ``jwk`` describes, or None when it is not a public signature key."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: PLC0415 (oauth extra)

    kty, use = jwk.get("kty"), jwk.get("use", "sig")
    kid, alg = jwk.get("kid"), jwk.get("alg")
    if use != "sig" or not isinstance(kid, (str, type(None))):
        return None
    if not isinstance(alg, (str, type(None))):
        return None
    try:
        if kty == "RSA":
            numbers = rsa.RSAPublicNumbers(_b64url_int(jwk.get("e")), _b64url_int(jwk.get("n")))
            return JsonWebKey(kid, "RSA", alg, None, numbers.public_key())
        if kty == "EC":
            crv = jwk.get("crv")
            if crv not in EC_CURVES:
                return None
            curves = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
            point = ec.EllipticCurvePublicNumbers(
                _b64url_int(jwk.get("x")), _b64url_int(jwk.get("y")), curves[crv]
            )
            return JsonWebKey(kid, "EC", alg, crv, point.public_key())
    except (ValueError, binascii.Error, TypeError):
        return None
    return None


def parse_jwks(document: bytes, origin: str) -> tuple[JsonWebKey, ...]:
    """The usable keys of a JWKS document; raises JwksError when it is not one."""
    if len(document) > MAX_JWKS_BYTES:
        raise JwksError(f"{origin}: a key set of {len(document)} bytes, more than {MAX_JWKS_BYTES}")
    try:
        parsed = json.loads(document)
    except (ValueError, RecursionError) as error:
        raise JwksError(f"{origin}: not JSON ({error})") from None
    keys = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(keys, list):
        raise JwksError(f"{origin}: not a JWK set (no 'keys' list)")
    usable = tuple(
        key for key in (_public_key(k) for k in keys if isinstance(k, dict)) if key is not None
    )
    if keys and not usable:
        log.warning(
            "%s: none of its %d keys is a public RSA or EC signature key", origin, len(keys)
        )
    return usable


Fetch = Callable[[str], Awaitable[bytes]]
"""Reads the key set at a URL (http(s) or file) into bytes."""


async def fetch_url(url: str) -> bytes:
    """The body at ``url``: a file:// path read off the loop, or an
    http(s) GET with a timeout, refused past MAX_JWKS_BYTES."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        return await asyncio.to_thread(_read_file, path, url)
    import aiohttp  # noqa: PLC0415 (only a server with an https key set reads one)

    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers={"Accept": "application/json"}) as response,
        ):
            if response.status != 200:
                raise JwksError(f"{url}: HTTP {response.status}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksError(f"{url}: a key set of more than {MAX_JWKS_BYTES} bytes")
    except (aiohttp.ClientError, TimeoutError) as error:
        raise JwksError(f"{url}: {type(error).__name__}: {error}") from None
    return bytes(body)


def _read_file(path: Path, url: str) -> bytes:
    try:
        with path.open("rb") as file:
            body = file.read(MAX_JWKS_BYTES + 1)
    except OSError as error:
        raise JwksError(f"{url}: {error.strerror or error}") from None
    if len(body) > MAX_JWKS_BYTES:
        raise JwksError(f"{url}: a key set of more than {MAX_JWKS_BYTES} bytes")
    return body


class KeySource:
    """The keys at ``url``, kept fresh: read again every ``refresh_s``, and
    early when a token names a key id the set lacks (:meth:`missing`), at
    most once every ``min_refresh_s``, so that tokens with made-up key ids
    cannot turn the server into a client hammering the provider. A failed
    read keeps the keys it had and is retried after a backoff that doubles
    from ``retry_backoff_s`` up to ``retry_backoff_max_s``."""

    def __init__(
        self,
        url: str,
        *,
        refresh_s: float,
        min_refresh_s: float,
        retry_backoff_s: float,
        retry_backoff_max_s: float,
        fetch: Fetch = fetch_url,
        now: Callable[[], float] = clock.monotonic,
    ) -> None:
        self.url = url
        self._refresh_s = refresh_s
        self._min_refresh_s = min_refresh_s
        self._retry_backoff_s = retry_backoff_s
        self._retry_backoff_max_s = retry_backoff_max_s
        self._fetch = fetch
        self._now = now
        self._keys: tuple[JsonWebKey, ...] = ()
        self._last_read: float | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reads = 0
        """Successful reads of the key set (for tests and the log)."""

    @property
    def keys(self) -> tuple[JsonWebKey, ...]:
        return self._keys

    async def load(self) -> None:
        """Reads the key set once; raises JwksError (the keys it had stay)."""
        self._last_read = self._now()
        self._keys = parse_jwks(await self._fetch(self.url), self.url)
        self.reads += 1
        log.info("OAUTHBEARER: %d keys from %s", len(self._keys), self.url)

    async def start(self, *, loaded: bool = False) -> None:
        """A first read unless ``loaded`` (a failure is logged and retried,
        not raised: the provider may come up after the server), then the
        refresh loop."""
        healthy = True
        if not loaded:
            try:
                await self.load()
            except JwksError as error:
                log.warning("OAUTHBEARER: cannot read the key set: %s; retrying", error)
                healthy = False
        self._task = asyncio.create_task(self._refresh_loop(healthy))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(FETCH_TIMEOUT_S):
                    await self._task
            self._task = None

    def missing(self, kid: str | None) -> None:
        """A token named a key the set lacks: read the set again soon."""
        if not self._wake.is_set():
            shown = kid if kid is None or len(kid) <= 80 else kid[:77] + "..."
            log.info("OAUTHBEARER: no key %r in %s; reading it again", shown, self.url)
        self._wake.set()

    async def _refresh_loop(self, healthy: bool) -> None:
        backoff = self._retry_backoff_s
        while True:
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a
                # cancel that comes as the event is set, and stop() would hang.
                async with asyncio.timeout(self._refresh_s if healthy else backoff):
                    await self._wake.wait()
                assert self._last_read is not None
                early = self._last_read + self._min_refresh_s - self._now()
                if early > 0:
                    await asyncio.sleep(early)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.load()
                healthy, backoff = True, self._retry_backoff_s
            except Exception as error:  # the loop outlives any one bad read
                if isinstance(error, JwksError):
                    log.warning("OAUTHBEARER: cannot read the key set: %s; keeping the last", error)
                else:
                    log.exception("OAUTHBEARER: reading the key set failed; keeping the last")
                if not healthy:
                    backoff = min(backoff * 2, self._retry_backoff_max_s)
                healthy = False
