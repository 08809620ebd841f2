"""Instructions per Fetch of many partitions on the server's event loop,
counted by callgrind: a count that holds whatever else the machine runs.

    python bench/fetch_instructions.py [--base /path/to/tree] [--head .]
                                       [--partitions 1000] [--fetches 4] [--json]

Each tree (its own code, its C extension built in place) runs a child
under callgrind: an engine with a topic of ``--partitions`` partitions,
one record each, and the wire server on this thread's event loop, to
which the child sends ``--fetches`` raw Fetch v11 requests of every
partition (no session, as librdkafka and kafkajs send them, max_wait 0)
over loopback. The figure is the main thread's instructions (the server's
loop, and the child's own reading of the answers, the same in both trees)
with those fetches less those of the same child with none, per Fetch:

- ``records``: every partition from its start: one record each, from the
  log cache;
- ``caught_up``: every partition at its end.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import tempfile
from pathlib import Path

import _callgrind_costs

CASES = {"records": 0, "caught_up": 1}


def _child(partitions: int, offset: int, fetches: int) -> None:
    from many_fetch_bench import TOPIC, fetch_v11

    import engine
    from engine.server.config import ServerConfig
    from engine.server.server import Server

    with tempfile.TemporaryDirectory() as scratch, engine.open(Path(scratch) / "d") as opened:
        opened.create_topic(TOPIC, partitions)
        with opened.producer() as producer:
            for sent in [producer.send(TOPIC, b"r", partition=p) for p in range(partitions)]:
                sent.result(600)

        async def run() -> None:
            server = Server(opened, ServerConfig(host="127.0.0.1", port=0))
            await server.start()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            for n in range(fetches):
                writer.write(fetch_v11(n + 1, partitions, offset, 0))
                await writer.drain()
                (size,) = struct.unpack(">i", await reader.readexactly(4))
                await reader.readexactly(size)
            writer.close()
            await server.stop()

        asyncio.run(run())


def _per_fetch(tree: Path, partitions: int, fetches: int) -> dict[str, float]:
    script = str(Path(__file__).resolve())
    child = [script, "--child", str(partitions)]
    none = _callgrind_costs.thread_instructions(tree, [*child, "1", "0"])[0]
    figures = {}
    for case, offset in CASES.items():
        some = _callgrind_costs.thread_instructions(tree, [*child, str(offset), str(fetches)])[0]
        figures[case] = (some - none) / fetches
    return figures


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, default=None, help="a tree to compare with")
    parser.add_argument("--head", type=Path, default=Path("."))
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--fetches", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trees = [t for t in (args.base, args.head) if t is not None]
    figures: dict[str, dict[str, float]] = {}
    for tree in trees:
        for case, value in _per_fetch(tree.resolve(), args.partitions, args.fetches).items():
            figures.setdefault(case, {})[str(tree.resolve())] = value
    heading = f"instructions per Fetch of {args.partitions}"
    _callgrind_costs.report(figures, heading, as_json=args.json)


if __name__ == "__main__":
    main()
