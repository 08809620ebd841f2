"""Starts a test broker, cuts its close short with an exception in the
engine's close, closes it again, and exits as a script does (through the
interpreter's exit, atexit and all):

    child_broker_closes_twice.py

Prints one JSON line: whether the data directory and the engine's close
were there after each close. The exit hook's complaints, if any, go to
stderr."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

from engine import exit_close
from engine.testing import start


def cut_short_once(close_store: Callable[[bool], None]) -> Callable[[bool], None]:
    """The engine's last close step, raising the first time it runs."""
    calls = 0

    def step(flush: bool) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the close was cut short")
        close_store(flush)

    return step


def state(broker: Any) -> dict[str, bool]:
    return {
        "directory": os.path.exists(broker.data_dir),
        "engine_closed": broker.engine.close_report is not None,
        "left_to_the_exit_hook": broker.engine in set(exit_close._open_engines),
    }


def main() -> None:
    logging.basicConfig(level=logging.WARNING)  # a warning, at exit too, to stderr
    broker = start()
    broker.create_topic("t")
    with broker.engine.producer() as producer:
        producer.send("t", b"acknowledged").result(10)
    broker.engine._close_store = cut_short_once(broker.engine._close_store)  # type: ignore[method-assign]
    try:
        broker.close()
    except RuntimeError as error:
        first = {"raised": str(error), **state(broker)}
    else:
        first = {"raised": "", **state(broker)}
    broker.close()
    print(json.dumps({"first": first, "second": state(broker)}))


if __name__ == "__main__":
    main()
