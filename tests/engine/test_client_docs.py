"""docs/engine.md's "Embedded clients" names every option the embedded
producer, transactional producer and consumer take, with its default where
the option's line gives one."""

from __future__ import annotations

import inspect
import re
from ast import literal_eval
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.client.consumer import Consumer
from engine.client.producer import Producer
from engine.client.transactional_producer import TransactionalProducer

DOC = Path(__file__).resolve().parents[2] / "docs" / "engine.md"
SECTION = DOC.read_text().split("## Embedded clients", 1)[1].split("\n## Code map", 1)[0]


@pytest.mark.parametrize("client", [Producer, TransactionalProducer, Consumer])
def test_every_option_of_an_embedded_client_is_documented(client: Callable[..., object]) -> None:
    options = [
        name
        for name, parameter in inspect.signature(client).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    assert options
    assert [name for name in options if not re.search(rf"`[^`]*\b{name}\b", SECTION)] == []


def test_a_documented_default_is_the_clients() -> None:
    """``name=value`` in a documented signature, against the constructor's
    (a value in braces is an example of a mapping, not a default)."""
    defaults = {
        name: parameter.default
        for client in (Producer, TransactionalProducer, Consumer)
        for name, parameter in inspect.signature(client.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    units = {"KiB": 1024, "MiB": 1024 * 1024}
    wrong = []
    for signature in re.findall(r"`e\.(?:producer|consumer)\(([^`]*)\)`", SECTION):
        for name, text in re.findall(r"(\w+)=\s*([^,]*[^,\s])", signature):
            if name not in defaults or text.startswith("{") or text == '"..."':
                continue
            number = re.fullmatch(r"(\d+) (KiB|MiB)", text)
            value = int(number.group(1)) * units[number.group(2)] if number else literal_eval(text)
            if value != defaults[name]:
                wrong.append(f"{name}={text} (the client's: {defaults[name]!r})")
    assert wrong == []
