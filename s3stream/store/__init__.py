"""Object-store backends behind one interface, and the URLs that name them.

``open_store(url)`` picks one:

- ``file:///path/to/dir`` (or a plain path): a local directory, created if
  missing (LocalStore);
- ``s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1``: S3
  or any S3-compatible server (S3Store). Optional parameters:
  ``access_key_id``, ``secret_access_key_file`` (a file holding the secret
  key: the way to give one, as the URL is visible in the process list),
  ``secret_access_key``, ``multipart_threshold``, ``part_size``,
  ``max_attempts``, ``connect_timeout``, ``read_timeout``,
  ``max_pool_connections``, ``conditional_writes`` (``enforced``, the
  default, checked at open; or ``unenforced-single-writer`` for a server
  that ignores If-None-Match / If-Match, see docs/object-format.md); values
  are percent-encoded as in any query.
  Without keys, credentials come from botocore's default chain, the one
  boto3 uses (the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY environment
  variables, AWS_PROFILE and the shared credentials file, an instance or
  container role);
- ``memory://``: a new, empty in-process store (MemoryStore), for tests.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlparse, urlsplit, urlunsplit

from native.buffers import BytesLike
from s3stream.store.base import (
    ConditionalWrites,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreClosed,
    ObjectStoreError,
    PreconditionFailed,
)
from s3stream.store.local import LocalStore
from s3stream.store.memory import MemoryStore

if TYPE_CHECKING:
    from s3stream.store.s3 import S3Store


def _s3_store_class() -> type[S3Store]:
    """S3Store, imported when first needed: botocore is slow to import (most
    of the quarter of a second boto3 and botocore took), which an engine on
    a local directory (and every ``tidelog`` command on one) need not pay."""
    store_class: type[S3Store] = importlib.import_module("s3stream.store.s3").S3Store
    return store_class


def __getattr__(name: str) -> Any:
    if name == "S3Store":
        return _s3_store_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# URL parameter -> (S3Store argument, its type)
_S3_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "endpoint": ("endpoint_url", str),
    "region": ("region", str),
    "access_key_id": ("access_key_id", str),
    "secret_access_key": ("secret_access_key", str),
    "secret_access_key_file": ("secret_access_key_file", str),
    "multipart_threshold": ("multipart_threshold", int),
    "part_size": ("part_size", int),
    "max_attempts": ("max_attempts", int),
    "connect_timeout": ("connect_timeout", float),
    "read_timeout": ("read_timeout", float),
    "max_pool_connections": ("max_pool_connections", int),
    "conditional_writes": ("conditional_writes", ConditionalWrites),
}


_SECRET_WORDS = ("secret", "password", "token")


def _is_secret(parameter: str) -> bool:
    name = parameter.lower()
    return not name.endswith("_file") and any(word in name for word in _SECRET_WORDS)


def secret_parameters(url: str) -> list[str]:
    """The parameters of ``url`` that carry a secret in clear."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return []
    names = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
    return sorted(name for name in names if _is_secret(name))


def redact_url(url: str) -> str:
    """``url`` as it may be shown in a log line or an error: the value of
    every secret parameter, and any password in a location, replaced by
    ``***`` (an endpoint given as a parameter is redacted the same way).

    A secret holding an ``&`` or a ``#`` that was not percent-encoded spills
    its tail into another parameter or the fragment, so of an s3:// URL only
    the parameters tidelog knows are shown, and never a fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an object store URL that does not parse)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        if ":" in userinfo:
            netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = parts.query
    s3 = parts.scheme == "s3"
    if query:
        shown = []
        for name, value in parse_qsl(query, keep_blank_values=True):
            if _is_secret(name):
                visible = "***"
            elif s3 and name not in _S3_OPTIONS:
                shown.append("***")
                continue
            elif "://" in value:
                visible = redact_url(value)
            else:
                visible = value
            shown.append(f"{quote(name, safe='')}={quote(visible, safe='/:*@')}")
        query = "&".join(shown)
    fragment = "***" if s3 and parts.fragment else parts.fragment
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def open_store(url: str) -> ObjectStore:
    """The object store a URL names (see the module docstring); ValueError if
    it names none. Errors show the URL redacted (redact_url)."""
    shown = redact_url(url)
    parsed = urlparse(url)
    if parsed.scheme == "memory":
        if parsed.netloc or parsed.path or parsed.query:
            raise ValueError(f"memory:// takes no location or parameters: {shown!r}")
        return MemoryStore()
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file URLs name a local path (file:///...), not a host: {shown!r}")
        if parsed.query:
            raise ValueError(f"file URLs take no parameters: {shown!r}")
        return _local(shown, unquote(parsed.path))
    if not parsed.scheme:
        return _local(shown, url)
    if parsed.scheme == "s3":
        return _s3(parsed.netloc, unquote(parsed.path), parsed.query)
    check_scheme(url)
    raise AssertionError(f"{shown!r}: a scheme check_scheme let through")


def check_scheme(url: str) -> None:
    """ValueError, as open_store says it, for a URL that names no kind of
    store: a command can refuse it before it opens or makes anything."""
    scheme = urlparse(url).scheme
    if scheme and scheme not in ("file", "s3", "memory"):
        raise ValueError(
            f"unsupported object store URL {redact_url(url)!r} (file://, s3://, memory://)"
        )


def _local(shown: str, path: str) -> LocalStore:
    if not path:
        raise ValueError(f"no directory in {shown!r}")
    return LocalStore(path)


def _read_secret(path: str, where: str) -> str:
    """The secret key in the file ``path`` (one line; its end of line is not part of it)."""
    try:
        secret = Path(path).read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not text"
        raise ValueError(
            f"cannot read secret_access_key_file {path} for {where}: {reason}"
        ) from None
    if not secret:
        raise ValueError(f"secret_access_key_file {path} for {where} is empty")
    return secret


def _s3(bucket: str, prefix: str, query: str) -> S3Store:
    if not bucket:
        raise ValueError("no bucket in the s3:// URL")
    where = f"s3://{bucket}/{prefix.lstrip('/')}"  # not the query: it may hold a secret
    parameters = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(parameters) - set(_S3_OPTIONS))
    if unknown:
        # An unknown name may be the tail of a secret holding an '&': then unnamed.
        named = "" if secret_parameters(f"?{query}") else f" {', '.join(unknown)}"
        raise ValueError(
            f"unknown s3 URL parameters{named} for {where} (known: {', '.join(_S3_OPTIONS)};"
            " percent-encode an '&' in a value as %26)"
        )
    options: dict[str, Any] = {}
    for name, values in parameters.items():
        argument, kind = _S3_OPTIONS[name]
        if len(values) > 1:
            raise ValueError(f"s3 URL parameter {name} given {len(values)} times for {where}")
        try:
            if not values[0]:
                raise ValueError("empty")
            options[argument] = kind(values[0])
        except ValueError:
            shown = "***" if _is_secret(name) else repr(values[0])
            raise ValueError(f"bad s3 URL parameter {name}={shown} for {where}") from None
    secret_file = options.pop("secret_access_key_file", None)
    if secret_file is not None:
        if "secret_access_key" in options:
            raise ValueError(
                f"s3 URL for {where} gives both secret_access_key and secret_access_key_file"
            )
        options["secret_access_key"] = _read_secret(secret_file, where)
    return _s3_store_class()(bucket, prefix, **options)


__all__ = [
    "BytesLike",
    "ConditionalWrites",
    "LocalStore",
    "MemoryStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreClosed",
    "ObjectStoreError",
    "PreconditionFailed",
    "S3Store",
    "open_store",
    "redact_url",
    "secret_parameters",
]
