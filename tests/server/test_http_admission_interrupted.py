"""A Ctrl-C landing as an HTTP listener gives a closed connection's
admission back (``connection_lost``'s start, on an event loop run on the
main thread under Python's own SIGINT handler) is raised once the
admission is given back: the loop, run again, serves with its full count
(docs/design/0113)."""

from __future__ import annotations

import _thread
import asyncio
import sys
from dataclasses import dataclass
from types import FrameType

from aiohttp import web

from engine.server.http_site import HttpSite, _Gated
from tests.engine.interrupted import _put_back, _raising_sigint


@dataclass(frozen=True)
class Limits:
    max_connections: int = 1
    max_connections_per_address: int | None = None
    idle_timeout_s: float = 30.0


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def test_a_ctrl_c_landing_in_connection_lost_still_gives_the_admission_back() -> None:
    previous = _raising_sigint()
    loop = asyncio.new_event_loop()
    site = HttpSite()
    app = web.Application()
    app.router.add_get("/", _ok)
    try:
        loop.run_until_complete(site.start(app, "127.0.0.1", 0, Limits()))

        async def connect() -> asyncio.StreamWriter:
            _, writer = await asyncio.open_connection("127.0.0.1", site.port)
            while not site.admissions.admitted:
                await asyncio.sleep(0.01)
            return writer

        writer = loop.run_until_complete(connect())
        landed: list[str] = []

        def at_connection_lost(frame: FrameType, event: str, arg: object) -> None:
            # Pending as connection_lost starts: its own look handles it.
            if event == "call" and frame.f_code is _Gated.connection_lost.__code__:
                sys.settrace(None)
                landed.append(frame.f_code.co_qualname)
                _thread.interrupt_main()

        writer.close()
        sys.settrace(at_connection_lost)
        try:
            loop.run_until_complete(asyncio.sleep(10))
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("no KeyboardInterrupt came out of the loop")
        finally:
            sys.settrace(None)
        assert landed == ["_Gated.connection_lost"]
        assert site.admissions.admitted == 0
        assert site.admissions.by_address == {}

        async def served() -> bytes:
            reader, again = await asyncio.open_connection("127.0.0.1", site.port)
            again.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            again.close()
            return answer

        assert loop.run_until_complete(served()).startswith(b"HTTP/1.1 200")
    finally:
        loop.run_until_complete(site.stop())
        loop.close()
        _put_back(previous)
