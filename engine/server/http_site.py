"""An aiohttp application served on one address on the server's event loop:
what the Schema Registry API and the operations endpoints share."""

from __future__ import annotations

from aiohttp import web


class HttpSite:
    """Starts an application on host:port; stops it; tells the bound port."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def port(self) -> int:
        """The bound port (the one the OS chose, for port 0)."""
        assert self._site is not None and self._site._server is not None, "not started"
        sockets = self._site._server.sockets  # type: ignore[attr-defined]
        return int(sockets[0].getsockname()[1])

    async def start(self, app: web.Application, host: str, port: int) -> None:
        # No access log (a scrape a second would flood it) and no signal
        # handlers: the process's own shutdown owns SIGTERM and SIGINT.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await self._site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
