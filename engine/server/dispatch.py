"""From a request frame to its handler's response.

Requests the server cannot answer are treated as a Kafka broker treats
them: an ApiVersions request at a version it lacks gets a version-0
response with UNSUPPORTED_VERSION and the versions it has (so the client
can retry with one of them); any other API or version it does not advertise
closes the connection.

Topic administration (HANDLERS_OFF_LOOP) is decoded, handled and encoded
on the server's admin thread (context.off_loop): a CreateTopics request
may name thousands of topics, and even reading it would stall the event
loop for everyone else.
"""

from __future__ import annotations

from typing import Any

from engine.protocol.apis import ApiKey, is_supported
from engine.protocol.codec import body_offset, decode_request
from engine.protocol.errors import UnsupportedRequest
from engine.protocol.frames import RequestHeader
from engine.protocol.produce import decode_produce
from engine.server.context import RequestContext, Response, ServerState, off_loop
from engine.server.handlers import HANDLERS, HANDLERS_OFF_LOOP
from engine.server.handlers.api_versions import unsupported_api_versions


def dispatch(
    state: ServerState, header: RequestHeader, frame: memoryview
) -> tuple[RequestHeader, Response]:
    """Decodes and handles one request; returns the header to answer with
    (its version may differ, see above) and the handler's response."""
    if not is_supported(header.api_key, header.api_version):
        if header.api_key == ApiKey.API_VERSIONS:
            return header._replace(api_version=0), unsupported_api_versions()
        raise UnsupportedRequest(header.api_key, header.api_version)
    off = HANDLERS_OFF_LOOP.get(ApiKey(header.api_key))
    if off is not None:
        context = RequestContext(state, header)
        handler = off
        return header, off_loop(context, lambda: handler(context, decode_request(header, frame)))
    request: Any
    if header.api_key == ApiKey.PRODUCE:
        request = decode_produce(frame, body_offset(header, frame), header.api_version)
    else:
        request = decode_request(header, frame)
    context = RequestContext(state, header)
    return header, HANDLERS[ApiKey(header.api_key)](context, request)
