"""Opening the engine of a data directory for an offline command (``users``,
``unmask``, ``fork``, ``schemas`` without ``--url``): as ``tidelog serve``
opens it — the directory from ``--data-dir``, else the config file's, else
the default; the object store likewise — so not while a server holds it."""

from __future__ import annotations

import argparse
import sys

from engine import refusal
from engine.cli.serve import DEFAULT_DATA_DIR
from engine.engine import Engine, EngineConfig
from engine.server.config import FileConfig


def open_engine(command: str, args: argparse.Namespace, file: FileConfig) -> Engine | None:
    """The engine, or None with the reason it cannot be opened on stderr
    (a server holds the directory, damage, an unreachable store)."""
    data_dir = args.data_dir or file.data_dir or DEFAULT_DATA_DIR
    try:
        return Engine.open(
            data_dir, args.object_store or file.object_store, EngineConfig(store=file.store)
        )
    except refusal.REFUSALS as error:
        print(f"tidelog {command}: {refusal.describe(error, data_dir)}", file=sys.stderr)
        return None
