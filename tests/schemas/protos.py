""".proto text for the PROTOBUF tests of the registry's store and of the
Schema Registry API."""

from __future__ import annotations


def proto(body: str, package: str = "shop", syntax: str = "proto3") -> str:
    """A .proto file of ``body`` (messages, imports) in ``package``."""
    return f'syntax = "{syntax}";\npackage {package};\n{body}\n'
