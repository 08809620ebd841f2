"""Errors of the protocol layer: requests that cannot be understood.

A request that cannot be decoded cannot be answered (its response version,
and often its correlation id, are unknown), so, as a Kafka broker does, the
server closes that client's connection and keeps serving everyone else.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A request that breaks the protocol; the connection is closed."""


class MalformedRequest(ProtocolError):
    """The bytes do not decode as the request they claim to be."""


class UnsupportedRequest(ProtocolError):
    """An API key or version this server does not implement (and did not
    advertise in ApiVersions)."""

    def __init__(self, api_key: int, api_version: int) -> None:
        super().__init__(f"API key {api_key} version {api_version} is not supported")
        self.api_key = api_key
        self.api_version = api_version


class RequestTooLarge(ProtocolError):
    """A size prefix beyond the server's socket.request.max.bytes."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a request of {size} bytes is larger than the limit of {limit}")
        self.size = size
        self.limit = limit
