"""Instructions per Fetch of many partitions on the server's event loop,
counted by callgrind: a count that holds whatever else the machine runs.

    python bench/fetch_instructions.py [--base /path/to/tree] [--head .]
                                       [--partitions 1000] [--fetches 4] [--json]

Each tree (its own code, its C extension built in place) runs a child
under callgrind: an engine with a topic of ``--partitions`` partitions,
one record each, and the wire server on this thread's event loop, to
which the child sends ``--fetches`` raw Fetch v11 requests of every
partition (no session, as librdkafka and kafkajs send them, max_wait 0)
over loopback, after a first one (its one-time imports). The figure is
the main thread's instructions over those fetches alone (counting is
turned on and off around them with callgrind_control), per Fetch: the
server's loop, and the child's own sending and reading, the same in both
trees:

- ``records``: every partition from its start: one record each, from the
  log cache (each Fetch with a partition limit of its own, so that none
  is answered by the one before's shared read: many_fetch_bench.py's
  ``records_fetch``);
- ``caught_up``: every partition at its end;
- ``one_percent``: every hundredth partition from its start (its one
  record, read from the log cache as ``records`` reads it), the others at
  their end: a consumer of many partitions of which a few got new records.

``--cases`` picks some of them (all by default).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import _callgrind_costs

CASES = {"records": 0, "caught_up": 1, "one_percent": 2}
"""Each case's ``offset`` as the child takes it (2: one partition in a
hundred from its start, the others at their end)."""


def _child(partitions: int, offset: int, fetches: int) -> None:
    """Sets up, then says ``ready`` and waits for a line before the
    fetches (the parent turns counting on meanwhile), and says ``done``
    and waits for another after them (the parent dumps the counts)."""
    from many_fetch_bench import TOPIC, fetch_v11, records_fetch

    import engine
    from engine.server.config import ServerConfig
    from engine.server.server import Server

    def step(word: str) -> None:
        print(word, flush=True)
        sys.stdin.readline()

    with tempfile.TemporaryDirectory() as scratch, engine.open(Path(scratch) / "d") as opened:
        opened.create_topic(TOPIC, partitions)
        with opened.producer() as producer:
            for sent in [producer.send(TOPIC, b"r", partition=p) for p in range(partitions)]:
                sent.result(600)

        async def run() -> None:
            server = Server(opened, ServerConfig(host="127.0.0.1", port=0))
            await server.start()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            frames = [
                records_fetch(n + 1, partitions, n)
                if offset == 0
                else _one_percent_fetch(n + 1, partitions, n)
                if offset == 2
                # caught up: nothing to read, nothing shared
                else fetch_v11(n + 1, partitions, offset, 0)
                for n in range(fetches + 1)
            ]

            async def one(frame: bytes) -> None:
                writer.write(frame)
                await writer.drain()
                (size,) = struct.unpack(">i", await reader.readexactly(4))
                await reader.readexactly(size)

            await one(frames[0])  # the first Fetch's one-time imports, uncounted
            step("ready")
            for frame in frames[1:]:
                await one(frame)
            step("done")
            writer.close()
            await server.stop()

        asyncio.run(run())


_ENTRY_V11 = struct.Struct(">iiqqi")


def _one_percent_fetch(correlation_id: int, partitions: int, n: int) -> bytes:
    """fetch_v11 at every partition's end but every hundredth, read from
    its start with a partition limit of the ``n``th Fetch's own (so that
    none is answered by the Fetch before's shared read)."""
    from many_fetch_bench import PARTITION_MAX_BYTES, fetch_v11

    frame = bytearray(fetch_v11(correlation_id, partitions, 1, 0))
    first = len(frame) - 6 - _ENTRY_V11.size * partitions  # then no forgotten topics, no rack
    for partition in range(0, partitions, 100):
        at = first + _ENTRY_V11.size * partition
        frame[at : at + _ENTRY_V11.size] = _ENTRY_V11.pack(
            partition, -1, 0, -1, PARTITION_MAX_BYTES - n
        )
    return bytes(frame)


def _counted(tree: Path, partitions: int, offset: int, fetches: int) -> int:
    """The child's main thread's instructions over its fetches alone."""
    script = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory() as out:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}/callgrind.out",
            sys.executable,
            script,
            "--child",
            str(partitions),
            str(offset),
            str(fetches),
        ]
        env = os.environ | {"PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
        child = subprocess.Popen(
            command, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert child.stdin is not None and child.stdout is not None

        def control(*what: str) -> None:
            for word in what:
                subprocess.run(
                    ["callgrind_control", word, str(child.pid)], check=True, capture_output=True
                )

        def expect(word: str) -> None:
            line = child.stdout.readline() if child.stdout else ""
            if line.strip() != word:
                raise RuntimeError(f"the child said {line!r}, not {word!r}")

        expect("ready")
        control("--zero", "--instr=on")
        child.stdin.write("go\n")
        child.stdin.flush()
        expect("done")
        control("--dump", "--instr=off")
        child.stdin.write("end\n")
        child.stdin.flush()
        if child.wait(600) != 0:
            raise RuntimeError("the child failed")
        # The first dump (part 1: the one --dump wrote) of the main thread (1).
        return _callgrind_costs._total(Path(out) / "callgrind.out.1-01")


def _per_fetch(tree: Path, partitions: int, fetches: int, cases: list[str]) -> dict[str, float]:
    return {case: _counted(tree, partitions, CASES[case], fetches) / fetches for case in cases}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, default=None, help="a tree to compare with")
    parser.add_argument("--head", type=Path, default=Path("."))
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--fetches", type=int, default=4)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trees = [t for t in (args.base, args.head) if t is not None]
    figures: dict[str, dict[str, float]] = {}
    for tree in trees:
        for case, value in _per_fetch(
            tree.resolve(), args.partitions, args.fetches, args.cases
        ).items():
            figures.setdefault(case, {})[str(tree.resolve())] = value
    heading = f"instructions per Fetch of {args.partitions}"
    _callgrind_costs.report(figures, heading, as_json=args.json)


if __name__ == "__main__":
    main()
