"""An engine in another process, driven line by line, for the takeover tests.

    child_engine.py DATA_DIR OBJECT_STORE_URL

Opens the engine (uploads only on flush or close) and then reads one JSON
command per stdin line, answering each with one JSON line on stdout:
``{"ok": result}`` or ``{"error": class name, "message": str, "code": Kafka
code, "fenced": isinstance(error, engine.Fenced)}``. Commands:

    ["create_topic", name, partitions]
    ["send", topic, partition, values]     embedded producer; one answer per value
    ["produce", topic, partition, value]   one batch through Engine.produce
    ["flush"]
    ["offsets", topic, partition]
    ["close"]                              closes the engine and exits
"""

from __future__ import annotations

import json
import sys
from typing import Any

import engine
from s3stream import StreamStoreConfig
from tests.engine.helpers_records import batch

CONFIG = engine.EngineConfig(
    cleaner_interval_s=3600,
    store=StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600),
)


def outcome(call: Any) -> dict[str, Any]:
    try:
        return {"ok": call()}
    except engine.EngineError as error:
        return {
            "error": type(error).__name__,
            "message": str(error),
            "code": error.error_code,
            "fenced": isinstance(error, engine.Fenced),
        }


def main() -> None:
    e = engine.open(sys.argv[1], sys.argv[2], CONFIG)
    producer = e.producer()
    print(json.dumps({"ok": "open"}), flush=True)
    for line in sys.stdin:
        command, *args = json.loads(line)
        if command == "close":
            producer.close()
            print(json.dumps(outcome(e.close)), flush=True)
            return
        print(json.dumps(run(e, producer, command, args)), flush=True)


def run(e: engine.Engine, producer: engine.Producer, command: str, args: list[Any]) -> Any:
    if command == "create_topic":
        return outcome(lambda: e.create_topic(args[0], args[1]).name)
    if command == "send":
        topic, partition, values = args
        answers = []
        for value in values:
            try:
                future = producer.send(topic, value.encode(), partition=partition)
            except engine.EngineError as error:
                answers.append(outcome(lambda error=error: _raise(error)))
                continue
            answers.append(outcome(lambda future=future: future.result().offset))
        return answers
    if command == "produce":
        topic, partition, value = args
        return outcome(lambda: e.produce(topic, partition, batch([value.encode()])).base_offset)
    if command == "flush":
        return outcome(lambda: e.flush(30))
    if command == "offsets":
        return outcome(lambda: list(e.offsets(args[0], args[1])))
    raise ValueError(f"unknown command {command!r}")


def _raise(error: Exception) -> None:
    raise error


if __name__ == "__main__":
    main()
