"""Log levels changed while running: the BROKER_LOGGER config resource
(KIP-412). DescribeConfigs lists the process's loggers (the root logger,
``tidelog`` and every ``tidelog.*`` logger the code uses) with their
effective level in Kafka's names; IncrementalAlterConfigs SET gives one a
level, DELETE returns it to its parent's. Nothing is stored: a restart
returns to the levels the process was started with, as in Kafka.

Kafka's level names map onto Python's: TRACE (below DEBUG, level 5),
DEBUG, INFO, WARN (WARNING), ERROR, FATAL (CRITICAL).
"""

from __future__ import annotations

import logging

from engine.errors import EngineError, InvalidConfig
from engine.protocol.kafka_code import KafkaCode

ROOT = "root"
"""Kafka's name of the root logger (Log4jController.ROOT_LOGGER)."""
_PREFIX = "tidelog"
TRACE = 5
LEVELS = {
    "FATAL": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARN": logging.WARNING,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
    "TRACE": TRACE,
}
"""Kafka's valid levels (LogLevelConfig.VALID_LOG_LEVELS) as Python's."""

log = logging.getLogger("tidelog.server")


class LoggerRequestRefused(EngineError):
    """An operation Kafka refuses on a logger (DELETE of the root logger,
    APPEND or SUBTRACT)."""

    code = KafkaCode.INVALID_REQUEST

    def __init__(self, message: str) -> None:
        super().__init__(message)


def level_name(level: int) -> str:
    """Kafka's name of a Python level (a level between two names takes the
    lower one: what it lets through)."""
    for name, value in sorted(LEVELS.items(), key=lambda item: -item[1]):
        if level >= value:
            return name
    return "TRACE"


def logger_names() -> list[str]:
    """The loggers a BROKER_LOGGER resource lists, root first."""
    manager = logging.Logger.manager
    names = {
        name
        for name, found in list(manager.loggerDict.items())
        if isinstance(found, logging.Logger) and name.startswith(_PREFIX + ".")
    }
    return [ROOT, _PREFIX, *sorted(names)]


def levels() -> dict[str, str]:
    """Every listed logger's effective level, by Kafka's name."""
    return {name: level_name(logger(name).getEffectiveLevel()) for name in logger_names()}


def logger(name: str) -> logging.Logger:
    """The logger a BROKER_LOGGER config names ("root": the root logger)."""
    return logging.getLogger() if name == ROOT else logging.getLogger(name)


def check(name: str, operation: str, level: str | None) -> None:
    """Refuses what Kafka's ConfigAdminManager.validateLogLevelConfigs does."""
    if name not in logger_names():
        raise InvalidConfig(name, level, f"Logger {name} does not exist!")
    if operation == "SET":
        if level not in LEVELS:
            raise InvalidConfig(
                name,
                level,
                f"Cannot set the log level of {name} to {level} as it is not a supported "
                f"log level. Valid log levels are {', '.join(LEVELS)}",
            )
    elif operation == "DELETE":
        if name == ROOT:
            raise LoggerRequestRefused(
                f"Removing the log level of the {ROOT} logger is not allowed"
            )
    else:
        raise LoggerRequestRefused(
            f"{operation} operation is not allowed for the BROKER_LOGGER resource"
        )


def set_level(name: str, level: str | None) -> None:
    """Sets a checked level, or with None returns the logger to its parent's."""
    if level is None:
        log.info("Unset the log level of %s", name)
        logger(name).setLevel(logging.NOTSET)
    else:
        log.info("Updating the log level of %s to %s", name, level)
        logger(name).setLevel(LEVELS[level])
