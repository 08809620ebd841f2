"""The operations endpoints, on the server's asyncio loop with aiohttp:
``/metrics`` (the engine's registry, with the server's collectors, in
Prometheus' text format), ``/healthz`` (the process answers) and
``/readyz`` (the engine can take writes: open, not fenced, and the object
store answered a probe within ``object_store_window_s``).

A readiness check probes the object store itself (a HEAD off the loop,
bounded by ``probe_timeout_s``; checks that arrive together share one
probe), so a store that stopped answering turns ``/readyz`` to 503 with
the reason in a JSON body, and back to 200 once it answers again.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from engine import clock
from engine.engine import Engine
from engine.server.http_config import HttpConfig
from engine.server.http_site import HttpSite
from s3stream.store import ObjectStoreError

log = logging.getLogger("tidelog.http")


class OperationsServer:
    """Serves the endpoints until stopped; the engine is the caller's."""

    def __init__(self, engine: Engine, config: HttpConfig) -> None:
        self.engine = engine
        self.config = config
        self._http = HttpSite()
        self._probes = ThreadPoolExecutor(1, "tidelog-probe")
        self._probe: asyncio.Future[None] | None = None
        self._reachable_at: float | None = None
        """When (clock.monotonic) the object store last answered a probe."""
        self._last_error = ""

    @property
    def port(self) -> int:
        """The bound port (the one the OS chose, for port 0)."""
        return self._http.port

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def start(self) -> None:
        assert self.config.listen is not None, "no listen address"
        host, port = self.config.listen
        await self._http.start(self.app(), host, port, self.config)
        log.info(
            "operations endpoints on http://%s:%d (/metrics, /healthz, /readyz)", host, self.port
        )

    async def stop(self) -> None:
        await self._http.stop()
        self._probes.shutdown(wait=False, cancel_futures=True)

    async def _metrics(self, _request: web.Request) -> web.Response:
        # Collecting reads every partition and group: off the loop.
        loop = asyncio.get_running_loop()
        text = await loop.run_in_executor(None, self.engine.metrics().text)
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        reason = await self.not_ready()
        if reason is None:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "reason": reason}, status=503)

    async def not_ready(self) -> str | None:
        """Why the engine cannot take writes now, or None."""
        engine = self.engine
        if engine.closed:
            return "the engine is closed"
        if engine.store.fenced:
            return "fenced: another server took the object store over"
        await self._probe_store()
        window = self.config.object_store_window_s
        if self._reachable_at is None or clock.monotonic() - self._reachable_at > window:
            return f"the object store has not answered within {window:g} s" + (
                f" (last error: {self._last_error})" if self._last_error else ""
            )
        return None

    async def _probe_store(self) -> None:
        if self._probe is None or self._probe.done():
            loop = asyncio.get_running_loop()
            self._probe = asyncio.ensure_future(
                loop.run_in_executor(self._probes, self.engine.store.probe_object_store)
            )
        try:
            await asyncio.wait_for(asyncio.shield(self._probe), self.config.probe_timeout_s)
        except TimeoutError:
            self._last_error = f"a probe took longer than {self.config.probe_timeout_s:g} s"
        except ObjectStoreError as error:
            self._last_error = str(error)
        except Exception as error:  # a backend's own failure: the store did not answer
            self._last_error = f"{type(error).__name__}: {error}"
        else:
            self._reachable_at = clock.monotonic()
            self._last_error = ""
