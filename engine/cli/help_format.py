"""How a command's --help lays out its text: the description wrapped to the
terminal as argparse wraps it, the examples kept line for line."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.HelpFormatter):
    """Wraps text written as one paragraph; keeps text written in lines as
    written. An epilog's examples are command lines to copy: wrapped, one
    would break in the middle of a flag."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def examples(*command_lines: str) -> str:
    """An epilog of ``command_lines``, each indented under its heading."""
    heading = "example:" if len(command_lines) == 1 else "examples:"
    return "\n  ".join((heading, *command_lines))


def add_action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    *command_lines: str,
) -> argparse.ArgumentParser:
    """A subcommand whose --help says ``summary`` and ends with its examples."""
    return actions.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog=examples(*command_lines),
        formatter_class=HelpFormatter,
    )
