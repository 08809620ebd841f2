"""From a request frame to its handler's response.

Requests the server cannot answer are treated as a Kafka broker treats
them: an ApiVersions request at a version it lacks gets a version-0
response with UNSUPPORTED_VERSION and the versions it has (so the client
can retry with one of them); any other API or version it does not advertise
closes the connection.

Which APIs and versions are served, how each request is decoded, and
whether it is handled on the event loop or the admin thread all come from
the handlers' registrations (handlers/registry.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from engine.protocol.apis import ApiKey
from engine.protocol.errors import UnsupportedRequest
from engine.protocol.frames import RequestHeader
from engine.server.context import NOBODY, Identity, RequestContext, Response, ServerState
from engine.server.handlers.api_versions import unsupported_api_versions
from engine.server.handlers.registry import registration

if TYPE_CHECKING:
    from engine.server.authentication import Authentication


_new = tuple.__new__


class Dispatched(NamedTuple):
    header: RequestHeader
    """The header to answer with (its version may differ, see above)."""
    response: Response
    answer_bytes: int
    """The most bytes the answer may carry, where its API bounds that apart
    from the request's own size (a Fetch's records), else 0."""


def dispatch(
    state: ServerState,
    header: RequestHeader,
    frame: memoryview,
    identity: Identity = NOBODY,
    authentication: Authentication | None = None,
) -> Dispatched:
    """Decodes and handles one request."""
    # One unpack, where each field read by name is a descriptor call (3.11).
    api_key, api_version, _, _, _ = header
    served = registration(api_key, api_version)
    if served is None:
        if api_key == ApiKey.API_VERSIONS:
            return Dispatched(header._replace(api_version=0), unsupported_api_versions(), 0)
        raise UnsupportedRequest(api_key, api_version)
    # tuple.__new__ itself: a NamedTuple's own __new__ is a Python call,
    # and these are made for every request.
    context = _new(RequestContext, (state, header, identity, authentication))
    response, answer_bytes = served.answer(context, frame)
    return _new(Dispatched, (header, response, answer_bytes))
