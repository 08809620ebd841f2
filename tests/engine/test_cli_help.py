"""Every `tidelog` command's --help says what it does and what each of its
flags means (docs/cli.md: "Each command's --help describes it and its
flags")."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

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
