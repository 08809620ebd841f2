"""Every command that opens or reads a data directory offline names it with
the same three options (engine/cli/offline.py add_data_options): --data-dir,
--object-store and the TOML config file, with one help text each, and reads
them back as tidelog serve would; a command that reads the object store
(read_object_store) closes it after, and says why it could not read with
the store's URL redacted."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from engine.cli.main import _build_parser, main
from engine.cli.offline import (
    CONFIG_HELP,
    data_dir,
    file_config,
    object_store_url,
    read_object_store,
)
from engine.cli.serve import DEFAULT_DATA_DIR
from engine.errors import EngineError
from engine.server.config import FileConfig
from s3stream import ObjectStore, ObjectStoreError, open_store
from s3stream.store import redact_url

OFFLINE = (
    (("users",), ("list",)),
    (("unmask",), ("list",)),
    (("fork",), ("t", "f")),
    (("schemas",), ("list",)),
    (("verify",), ()),
    (("lookup",), ("t", "--header", "h", "--value", "v")),
    (("state",), ("t", "--at", "0")),
    (("tables", "status"), ()),
    (("inspect", "wal"), ()),
    (("inspect", "manifest"), ()),
    (("inspect", "objects"), ()),
)
"""Each (sub)command whose parser holds the options, and what else it needs
to parse after them."""


def _subparser(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = _build_parser(path[0])
    for word in path:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = commands.choices[word]
    return parser


def _helps(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    return {o: a.help for a in parser._actions for o in a.option_strings}


@pytest.mark.parametrize(("path", "rest"), OFFLINE, ids=[" ".join(p) for p, _ in OFFLINE])
def test_an_offline_command_names_its_data_directory_as_the_others_do(
    path: tuple[str, ...], rest: tuple[str, ...]
) -> None:
    helps = _helps(_subparser(path))
    assert helps["--data-dir"] == f"local data directory (default {DEFAULT_DATA_DIR})"
    assert helps["--object-store"] == "as for tidelog serve (default: DATA_DIR/objects)"
    # fork's -c/--config is a topic config of the fork's own.
    config = "--config-file" if path[0] == "fork" else "--config"
    assert (helps[config] or "").startswith(CONFIG_HELP)
    args = _build_parser(path[0]).parse_args(
        [*path, "--data-dir", "d", "--object-store", "memory://", config, "c.toml", *rest]
    )
    assert (args.data_dir, args.object_store, args.config) == ("d", "memory://", "c.toml")


def test_the_directory_and_store_come_from_the_flags_then_the_file_then_the_default(
    tmp_path: Path,
) -> None:
    none = argparse.Namespace(data_dir=None, object_store=None, config=None)
    assert file_config(none) == FileConfig()
    assert data_dir(none, FileConfig()) == DEFAULT_DATA_DIR
    default_store = "file://" + os.path.abspath(os.path.join(DEFAULT_DATA_DIR, "objects"))
    assert object_store_url(none, FileConfig()) == default_store
    config = os.path.join(tmp_path, "tidelog.toml")
    with open(config, "w") as out:
        out.write('[engine]\ndata_dir = "from-file"\n')
    file = file_config(argparse.Namespace(config=config))
    assert data_dir(none, file) == "from-file"
    assert object_store_url(none, file).endswith(os.path.join("from-file", "objects"))
    flags = argparse.Namespace(data_dir="flag", object_store="memory://", config=config)
    assert data_dir(flags, file) == "flag"
    assert object_store_url(flags, file) == "memory://"


def _store_args(url: str) -> argparse.Namespace:
    return argparse.Namespace(data_dir=None, object_store=url, config=None)


def test_a_read_of_the_object_store_gets_the_store_the_options_name(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    open_store(f"file://{bucket}").put("manifest", b"m")

    def read(store: ObjectStore) -> bytes:
        return store.get("manifest")

    found = read_object_store("x", _store_args(f"file://{bucket}"), FileConfig(), read)
    assert found == b"m"


def test_a_read_that_cannot_run_says_why_and_never_shows_a_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def never(store: ObjectStore) -> None:
        raise AssertionError("read without a store")

    assert read_object_store("x", _store_args("nope://x"), FileConfig(), never) is None
    assert "tidelog x: unsupported object store URL 'nope://x'" in capsys.readouterr().err

    def refused(store: ObjectStore) -> None:
        raise EngineError("no such topic")

    assert read_object_store("x", _store_args("memory://"), FileConfig(), refused) is None
    assert capsys.readouterr().err == "tidelog x: no such topic\n"

    secret = "s3://b/p?endpoint=http://127.0.0.1:1&access_key_id=a&secret_access_key=hunter2"

    def failed(store: ObjectStore) -> None:
        raise ObjectStoreError("get", "manifest", "connection refused")

    assert read_object_store("x", _store_args(secret), FileConfig(), failed) is None
    err = capsys.readouterr().err
    assert err.startswith(f"tidelog x: {redact_url(secret)}: get 'manifest'")
    assert "hunter2" not in err


READERS = (
    ("verify",),
    ("lookup", "t", "--header", "h", "--value", "v"),
    ("state", "t", "--at", "0"),
    ("fork", "t", "f"),
    ("users", "list"),
    ("unmask", "list"),
    ("schemas", "list"),
    ("schemas", "get", "s"),
)
"""Commands that only read a data directory (fork: the parent topic must be in it)."""


@pytest.mark.parametrize("command", READERS, ids=[" ".join(c[:2]) for c in READERS])
def test_a_reader_refuses_a_data_directory_that_is_not_there_and_makes_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    """A mistyped --data-dir would otherwise be made, empty, and read as an
    empty store: a verify of nothing passes, a list shows no one."""
    missing = tmp_path / "typo"
    place = 1 if command[0] in ("users", "unmask", "schemas") else len(command)
    argv = [*command[:place], "--data-dir", str(missing), *command[place:]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tidelog {command[0]}: no "), err
    assert str(missing) in err
    assert err.count("\n") == 1
    assert not missing.exists()


def test_a_user_can_be_added_before_the_first_start(tmp_path: Path) -> None:
    data = tmp_path / "new"
    password = tmp_path / "password"
    password.write_text("pw\n")
    added = ["users", "--data-dir", str(data), "add", "ops", "--password-file", str(password)]
    assert main([*added, "--mechanism", "PLAIN"]) == 0
    assert main(["users", "--data-dir", str(data), "list"]) == 0


def test_a_head_that_is_not_hex_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "t:0", "--expect-head", "zz", "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "tidelog verify: --expect-head 'zz' is not hex: give the head link verify printed\n"
    )
