"""The Kafka APIs this server serves: one registration per handler, made
beside the handler with its API key, the versions it serves and a note of
what each version adds (or what this server does with it).

Everything else is derived from the registrations and never listed again:
the ApiVersions answer (advertised_versions), the check of a request's
version (is_served), and dispatch (registration: how a request is decoded,
and whether it is handled on the event loop or on the admin thread).

The registry lives here, in the server, and not in engine/protocol/: what
is served is a fact about the handlers, and the protocol layer never
imports the server. engine/protocol/apis.py keeps only what the codec
needs: the API keys' names and each version's schema.

A client that sees a version in the ApiVersions answer will use it, so a
handler registers only versions whose every field it honours; newer ones
are added once the handler covers what they add.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from engine.protocol.apis import ApiKey
from engine.protocol.codec import decode_request
from engine.protocol.frames import RequestHeader
from engine.server.context import Body, Handler, RequestContext, Response, off_loop

Decoder = Callable[[RequestHeader, memoryview], Any]
"""A request body from its frame. Any: what it builds depends on the API
and version read from the wire, known only once the frame is there; each
handler states the types it takes (checked against its versions by
tests/server/test_registry.py)."""

AnswerBytes = Callable[[RequestContext, Any], int]
"""The most bytes the answer to a decoded request may carry."""

AdminFunction = Callable[[RequestContext, Any], Body]
"""A handler run on the admin thread: it returns its response, never an
awaitable (context.off_loop encodes it there)."""

LoopHandler = TypeVar("LoopHandler", bound=Handler)
AdminHandler = TypeVar("AdminHandler", bound=AdminFunction)


@dataclass(frozen=True)
class Registration:
    """One API as this server serves it."""

    key: ApiKey
    min_version: int
    max_version: int
    notes: Mapping[int, str]
    """What each version adds, or what this server does with it."""
    handler: Handler
    decode: Decoder
    admin_handler: AdminFunction | None
    """The same handler when it runs on the admin thread, else None."""
    advertised_min_version: int
    """The lowest version listed in ApiVersions: min_version, but for the
    one deliberate exception (Produce, see produce.py)."""
    answer_bytes: AnswerBytes | None = None
    """For an API whose answer may be far larger than its request (a
    Fetch's records), the most one answer may carry, or what the request
    holds until it is answered if that is more (a Fetch waiting for data):
    counted against the connection's budget from the moment the request is
    read, since the answer is built whether or not the client reads it.
    None: an answer about as large as its request, or bounded by the
    server's own state."""

    @property
    def name(self) -> str:
        """Kafka's name of the API (``OffsetForLeaderEpoch``)."""
        return "".join(part.capitalize() for part in self.key.name.split("_"))

    @property
    def off_loop(self) -> bool:
        """Decoded, handled and encoded on the server's admin thread (see
        context.off_loop): the request may be long to read and to carry out."""
        return self.admin_handler is not None

    def serves(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version

    def answer(self, context: RequestContext, frame: memoryview) -> tuple[Response, int]:
        """The handler's response to the request in ``frame``, and the most
        bytes it may carry when the registration says (else 0)."""
        admin = self.admin_handler
        if admin is not None:
            return off_loop(context, lambda: admin(context, self.decode(context.header, frame))), 0
        request = self.decode(context.header, frame)
        bound = 0 if self.answer_bytes is None else self.answer_bytes(context, request)
        return self.handler(context, request), bound


_REGISTRY: dict[ApiKey, Registration] = {}
_VERSIONS: dict[ApiKey, tuple[int, int]] = {}

SUPPORTED_VERSIONS: Mapping[ApiKey, tuple[int, int]] = MappingProxyType(_VERSIONS)
"""The versions served of each API, (lowest, highest): a read-only view of
the registrations."""


def handles(
    key: ApiKey,
    min_version: int,
    max_version: int,
    *,
    notes: Mapping[int, str],
    decode: Decoder = decode_request,
    advertised_min_version: int | None = None,
    answer_bytes: AnswerBytes | None = None,
) -> Callable[[LoopHandler], LoopHandler]:
    """Registers the decorated function as the handler of ``key`` at
    ``min_version`` to ``max_version``, run on the event loop."""

    def register(handler: LoopHandler) -> LoopHandler:
        _register(
            Registration(
                key=key,
                min_version=min_version,
                max_version=max_version,
                notes=MappingProxyType(dict(notes)),
                handler=handler,
                decode=decode,
                admin_handler=None,
                advertised_min_version=(
                    min_version if advertised_min_version is None else advertised_min_version
                ),
                answer_bytes=answer_bytes,
            )
        )
        return handler

    return register


def handles_off_loop(
    key: ApiKey, min_version: int, max_version: int, *, notes: Mapping[int, str]
) -> Callable[[AdminHandler], AdminHandler]:
    """Registers the decorated function as the handler of ``key`` at
    ``min_version`` to ``max_version``, run on the admin thread."""

    def register(handler: AdminHandler) -> AdminHandler:
        _register(
            Registration(
                key=key,
                min_version=min_version,
                max_version=max_version,
                notes=MappingProxyType(dict(notes)),
                handler=handler,
                decode=decode_request,
                admin_handler=handler,
                advertised_min_version=min_version,
            )
        )
        return handler

    return register


def _register(registration: Registration) -> None:
    if not 0 <= registration.min_version <= registration.max_version:
        raise ValueError(
            f"{registration.name}: versions {registration.min_version}"
            f"-{registration.max_version} are not a range"
        )
    if not 0 <= registration.advertised_min_version <= registration.min_version:
        raise ValueError(
            f"{registration.name}: advertised from v{registration.advertised_min_version},"
            f" above the v{registration.min_version} it serves from"
        )
    stray = sorted(
        v
        for v in registration.notes
        if not registration.advertised_min_version <= v <= registration.max_version
    )
    if stray:
        raise ValueError(f"{registration.name}: notes for versions it does not list: {stray}")
    key = registration.key
    if key in _REGISTRY:
        raise ValueError(f"{registration.name} ({int(key)}) is registered twice")
    _REGISTRY[key] = registration
    _VERSIONS[key] = (registration.min_version, registration.max_version)


def registrations() -> Iterator[Registration]:
    """Every registration, by API key."""
    return iter(sorted(_REGISTRY.values(), key=lambda r: r.key))


def registration(api_key: int, api_version: int) -> Registration | None:
    """The registration serving this API at this version, if any."""
    found: Registration | None = _REGISTRY.get(api_key)  # type: ignore[call-overload]
    # serves(), without its call: once a request.
    if found is not None and found.min_version <= api_version <= found.max_version:
        return found
    return None


def is_served(api_key: int, api_version: int) -> bool:
    return registration(api_key, api_version) is not None


def advertised_versions() -> list[dict[str, int]]:
    """The ApiVersions answer's list: every API, by key."""
    return [
        {
            "api_key": int(r.key),
            "min_version": r.advertised_min_version,
            "max_version": r.max_version,
        }
        for r in registrations()
    ]
