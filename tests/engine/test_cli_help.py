"""Every `tidelog` command's --help says what it does and what each of its
flags means, and ends with an example that runs (docs/cli.md: "Each
command's --help describes it and its flags and ends with an example")."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli.main import _COMMANDS, _build_parser

_NOT_FLAGS = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def _parsers() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Each command's parser and its subcommands', by their words."""
    for command in _COMMANDS:
        root = _build_parser(command)
        stack = [(command, _subcommands(root)[command])]
        while stack:
            words, parser = stack.pop()
            yield words, parser
            stack += [(f"{words} {n}", p) for n, p in _subcommands(parser).items()]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {
        name: child
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, child in action.choices.items()
    }


def test_every_command_describes_itself() -> None:
    for command in _COMMANDS:
        description = _subcommands(_build_parser(command))[command].description
        assert description and len(description) > 30, command


def test_every_flag_of_every_command_says_what_it_means() -> None:
    unexplained = [
        f"{words} {action.option_strings[-1]}"
        for words, parser in _parsers()
        for action in parser._actions
        if action.option_strings and not isinstance(action, _NOT_FLAGS) and not action.help
    ]
    assert unexplained == []


def test_every_command_ends_its_help_with_an_example_that_parses() -> None:
    refused = []
    for words, parser in _parsers():
        heading, *lines = (parser.epilog or "\n").replace("\\\n", " ").splitlines()
        if heading not in ("example:", "examples:") or not lines:
            refused.append(f"{words}: no example at the end of its help")
        for line in lines:
            argv = shlex.split(line[line.index("tidelog ") :].split(" > ")[0])[1:]
            try:
                with contextlib.redirect_stderr(io.StringIO()):
                    _build_parser(argv[0]).parse_args(argv)
            except SystemExit:
                refused.append(f"{words}: {line.strip()} does not parse")
            if not all(word in argv for word in words.split()):
                refused.append(f"{words}: {line.strip()} is another command's")
    assert refused == []


def test_a_description_is_wrapped_and_an_example_kept_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    for words, parser in _parsers():
        description, epilog = parser._get_formatter(), parser._get_formatter()
        description.add_text(parser.description)
        epilog.add_text(parser.epilog)
        assert max(len(line) for line in description.format_help().splitlines()) <= 80, words
        assert epilog.format_help().splitlines() == (parser.epilog or "").splitlines(), words


def test_docs_cli_md_names_every_command_and_action() -> None:
    """Each command and each action of one is in docs/cli.md: as a command
    line (``tidelog users --data-dir D add ...``), or named in backticks on
    the line that names its command (``| `users add`, `remove`, `list` |``)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    unnamed = []
    for words, _ in _parsers():
        parts = words.split()
        line = r"tidelog " + r" (?:\S+ )*?".join(map(re.escape, parts)) + r"\b"
        named = [rf"`{re.escape(parts[0])}\b", *(rf"[` ]{re.escape(p)}`" for p in parts[1:])]
        if not re.search(line, text) and not any(
            all(re.search(pattern, row) for pattern in named) for row in text.splitlines()
        ):
            unnamed.append(words)
    assert unnamed == []
