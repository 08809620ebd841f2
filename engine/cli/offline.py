"""The data directory of an offline command (``users``, ``unmask``, ``fork``,
``schemas`` without ``--url``, ``inspect``, ``verify``, ``lookup``,
``state``, ``tables status``): the options that name it, and opening it as
``tidelog serve`` opens it — the directory from ``--data-dir``, else the
config file's, else the default; the object store likewise — so not while a
server holds it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from engine import refusal
from engine.cli.serve import DEFAULT_DATA_DIR
from engine.engine import Engine, EngineConfig
from engine.errors import EngineError
from engine.server.config import FileConfig, load_config_file
from s3stream import ObjectStore, ObjectStoreError, S3StreamError, open_store
from s3stream.store import redact_url

T = TypeVar("T")

CONFIG_HELP = "a TOML config file, as for tidelog serve"


def add_data_options(
    parser: Any, *, config_option: str = "--config", config_help: str = CONFIG_HELP
) -> None:
    """Adds --data-dir, --object-store and the config file's option
    (``config_option``, read back as ``args.config``) to ``parser``."""
    parser.add_argument("--data-dir", help=f"local data directory (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--object-store", help="as for tidelog serve (default: DATA_DIR/objects)")
    # The metavar argparse derives from the option's own name, not from dest.
    metavar = config_option.lstrip("-").replace("-", "_").upper()
    parser.add_argument(
        config_option,
        dest="config",
        help=config_help,
        **({} if metavar == "CONFIG" else {"metavar": metavar}),
    )


def file_config(args: argparse.Namespace) -> FileConfig:
    """The settings of the config file ``args`` name, none without one
    (ConfigFileError or OSError for a file that cannot be read)."""
    return load_config_file(args.config) if args.config else FileConfig()


def data_dir(args: argparse.Namespace, file: FileConfig) -> str:
    """``--data-dir``, else the config file's, else the default."""
    return str(args.data_dir or file.data_dir or DEFAULT_DATA_DIR)


def object_store_url(args: argparse.Namespace, file: FileConfig) -> str:
    """The object store a command reads: ``--object-store``, the config
    file's, or DATA_DIR/objects (as ``tidelog serve`` chooses it)."""
    url: str | None = args.object_store or file.object_store
    if url is None:
        url = "file://" + os.path.abspath(os.path.join(data_dir(args, file), "objects"))
    return url


def read_object_store(
    command: str, args: argparse.Namespace, file: FileConfig, read: Callable[[ObjectStore], T]
) -> T | None:
    """What ``read`` finds in the object store ``args`` and ``file`` name
    (object_store_url), the store closed after; or None with the reason on
    stderr: a URL that names no store, the engine's refusal of what it
    found, or the store's own failure (its URL redacted)."""
    url = object_store_url(args, file)
    missing = _missing_local_store(url)
    if missing is not None:
        # Opening a local store makes its directory: a mistyped path would
        # read as an empty store, and a verify of nothing would pass.
        print(
            f"tidelog {command}: no object store at {missing}: name the server's data directory"
            " (--data-dir) or object store (--object-store)",
            file=sys.stderr,
        )
        return None
    try:
        store = open_store(url)
    except ValueError as error:
        print(f"tidelog {command}: {error}", file=sys.stderr)
        return None
    try:
        return read(store)
    except EngineError as error:
        print(f"tidelog {command}: {error}", file=sys.stderr)
        return None
    except (S3StreamError, ObjectStoreError) as error:
        print(f"tidelog {command}: {redact_url(url)}: {error}", file=sys.stderr)
        return None
    finally:
        store.close()


def _missing_local_store(url: str) -> str | None:
    """The directory a local store's URL (``file://``, or a bare path)
    names when it does not exist; None for any other store."""
    parsed = urlparse(url)
    if parsed.scheme not in ("", "file"):
        return None
    path = unquote(parsed.path) if parsed.scheme else url
    return None if not path or os.path.isdir(path) else path


def open_engine(
    command: str, args: argparse.Namespace, file: FileConfig, *, create: bool = True
) -> Engine | None:
    """The engine, or None with the reason it cannot be opened on stderr
    (a server holds the directory, damage, an unreachable store). With
    ``create`` false, a data directory that does not exist is such a
    reason: a command that only reads makes none."""
    directory = data_dir(args, file)
    if not create and not os.path.isdir(directory):
        print(
            f"tidelog {command}: no data directory at {directory}: name the server's"
            " with --data-dir (or --config)",
            file=sys.stderr,
        )
        return None
    try:
        return Engine.open(
            directory, args.object_store or file.object_store, EngineConfig(store=file.store)
        )
    except refusal.REFUSALS as error:
        print(f"tidelog {command}: {refusal.describe(error, directory)}", file=sys.stderr)
        return None
