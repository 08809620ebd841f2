"""Forks a child from a process with an open engine, the child exiting as
a script does (through the interpreter's exit, atexit and all):

    child_forks_and_exits.py DATA_DIR

The parent closes its engine, opens the directory again while the child
runs, lets the child exit, writes once more, and prints one JSON line:
``{"child_exit": code, "values": [...]}``, the values read back after a
last reopen."""

from __future__ import annotations

import json
import os
import select
import sys

import engine
from tests.engine.helpers_records import batch, read_partition


def main(data_dir: str) -> None:
    e = engine.open(data_dir)
    e.create_topic("t", 1)
    e.produce("t", 0, batch([b"before the fork"]))
    go_read, go_write = os.pipe()
    if os.fork() == 0:
        select.select([go_read], [], [], 60)
        sys.exit(0)  # the interpreter's exit: its atexit handlers run
    e.close()
    with engine.open(data_dir) as reopened:
        reopened.produce("t", 0, batch([b"after the fork"]))
        os.write(go_write, b"x")
        _, status = os.wait()
        reopened.produce("t", 0, batch([b"after the child"]))
    with engine.open(data_dir) as last:
        values = [r.value.decode() for r in read_partition(last, "t", 0) if r.value]
    print(json.dumps({"child_exit": os.waitstatus_to_exitcode(status), "values": values}))


if __name__ == "__main__":
    main(sys.argv[1])
