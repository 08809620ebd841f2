"""The repeated-line filter, on a clock the test moves."""

from __future__ import annotations

import logging
import sys
import threading

from engine.log_limit import RepeatFilter, limit_repeated_lines


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(
    message: str, *args: object, name: str = "tidelog.x", level: int = logging.WARNING
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def written(repeat: RepeatFilter, line: logging.LogRecord) -> str | None:
    return line.getMessage() if repeat.filter(line) else None


def test_a_repeated_template_is_written_once_per_interval_with_the_count_held_back() -> None:
    clock = Clock()
    repeat = RepeatFilter(interval_s=10, clock=clock)
    assert written(repeat, record("%s: closing the connection: %s", "a:1", "bad")) == (
        "a:1: closing the connection: bad"
    )
    for second in range(1, 10):  # different arguments, the same template: held back
        clock.now = 1000.0 + second
        assert written(repeat, record("%s: closing the connection: %s", f"b:{second}", "x")) is None
    clock.now = 1010.0
    assert written(repeat, record("%s: closing the connection: %s", "c:1", "bad")) == (
        "c:1: closing the connection: bad (9 more like this in the last 10 s)"
    )
    clock.now = 1011.0
    assert written(repeat, record("%s: closing the connection: %s", "d:1", "bad")) is None
    clock.now = 1025.0  # one held back, then a quiet interval: the count comes with the next
    assert written(repeat, record("%s: closing the connection: %s", "e:1", "bad")) == (
        "e:1: closing the connection: bad (1 more like this in the last 15 s)"
    )


def test_lines_are_told_apart_by_logger_level_and_template() -> None:
    clock = Clock()
    repeat = RepeatFilter(interval_s=10, clock=clock)
    assert written(repeat, record("disk full: %s", 1)) is not None
    assert written(repeat, record("disk full: %s", 1, name="wal")) is not None
    assert written(repeat, record("disk full: %s", 1, level=logging.ERROR)) is not None
    assert written(repeat, record("disk still full: %s", 1)) is not None
    assert written(repeat, record("disk full: %s", 2)) is None


def test_info_and_debug_lines_are_never_held_back() -> None:
    repeat = RepeatFilter(interval_s=10, clock=Clock())
    for level in (logging.DEBUG, logging.INFO):
        for _ in range(5):
            assert written(repeat, record("%s: connected", "a:1", level=level)) is not None


def test_a_quiet_template_after_an_interval_is_written_without_a_count() -> None:
    clock = Clock()
    repeat = RepeatFilter(interval_s=10, clock=clock)
    assert written(repeat, record("uploaded %d", 1)) == "uploaded 1"
    clock.now += 60
    assert written(repeat, record("uploaded %d", 2)) == "uploaded 2"


def test_many_distinct_templates_are_remembered_within_a_bound() -> None:
    clock = Clock()
    repeat = RepeatFilter(interval_s=10, clock=clock)
    for index in range(10_000):
        assert written(repeat, record(f"line {index}")) is not None
    assert len(repeat._seen) <= 4096


def test_installed_on_a_loggers_handlers() -> None:
    logger = logging.getLogger("tidelog.test-log-limit")
    logger.propagate = False
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect()
    logger.addHandler(handler)
    try:
        limit_repeated_lines(logger)
        for index in range(100):
            logger.warning("%d: refused", index)
        assert lines == ["0: refused"]
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_every_handler_of_a_logger_writes_the_same_lines() -> None:
    logger = logging.getLogger("tidelog.test-log-limit-handlers")
    logger.propagate = False
    first: list[str] = []
    second: list[str] = []

    class Collect(logging.Handler):
        def __init__(self, lines: list[str]) -> None:
            super().__init__()
            self.lines = lines

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

    handlers = [Collect(first), Collect(second)]  # say, stderr and a file
    for handler in handlers:
        logger.addHandler(handler)
    clock = Clock()
    try:
        repeat = limit_repeated_lines(logger, interval_s=10)
        repeat._clock = clock
        for index in range(5):
            logger.warning("%d: refused", index)
        clock.now += 10
        logger.warning("%d: refused", 5)
        expected = ["0: refused", "5: refused (4 more like this in the last 10 s)"]
        assert first == expected
        assert second == expected
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.propagate = True


def test_lines_from_many_threads_past_the_bound_of_templates_never_raise() -> None:
    repeat = RepeatFilter(interval_s=0)
    failures: list[BaseException] = []

    def log_distinct(thread: int) -> None:
        try:
            for index in range(5000):
                repeat.filter(record(f"thread {thread} line {index}"))
        except BaseException as error:  # what a logging call would raise to its caller
            failures.append(error)

    threads = [threading.Thread(target=log_distinct, args=(n,)) for n in range(4)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave inside the filter, as under load
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(switch)
    assert not failures
    assert len(repeat._seen) <= 4096
