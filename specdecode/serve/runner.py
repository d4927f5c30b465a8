"""Running the app under uvicorn with the server's own edges: an idle-connection timeout that also covers a
connection that never sends a request, and SIGTERM / SIGINT that stop accepting at once, give requests in flight
``--shutdown-timeout`` seconds, then end the rest with a final error event and exit with status 0.

Not here: the app (``app``), the command line (``cli.serve``).
"""

from __future__ import annotations

import contextlib

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import Server


class IdleTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol, with the keep-alive timeout armed from the moment a connection opens and again after
    every piece of a request that is not complete yet (uvicorn arms it only after a response, so a client that
    connects and sends nothing, or sends its headers a byte at a time, would hold the connection forever)."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self._arm()  # no request under way: the bytes so far do not make one

    def _arm(self) -> None:
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)


class GracefulServer(uvicorn.Server):
    """A uvicorn server that tells the app when it is asked to stop (before uvicorn waits for connections)."""

    def __init__(self, config: uvicorn.Config, app_server: Server):
        super().__init__(config)
        self.app_server = app_server

    def handle_exit(self, sig, frame) -> None:
        self.app_server.begin_shutdown()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self):
        """uvicorn raises a stopping signal again once it has shut down (the process then dies of it); a stop
        asked for by SIGTERM / SIGINT is this server's normal end: exit status 0."""
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


def make_server(
    server: Server, host: str = "127.0.0.1", port: int = 8000, *, idle_timeout: float = 15.0, log_level: str = "warning"
) -> GracefulServer:
    """The uvicorn server for ``server``: graceful stop after the app's shutdown timeout, idle connections closed
    after ``idle_timeout`` seconds (``run(sockets=[...])`` serves on sockets bound by the caller instead)."""
    config = uvicorn.Config(
        server.app(),
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        http=IdleTimeoutH11,
        timeout_keep_alive=max(1, int(idle_timeout)),
        timeout_graceful_shutdown=int(server.limits.shutdown_timeout) + 5,
    )
    return GracefulServer(config, server)


def serve(server: Server, host: str, port: int, *, idle_timeout: float = 15.0) -> None:
    """Serve on ``host:port`` until SIGTERM / SIGINT."""
    make_server(server, host, port, idle_timeout=idle_timeout).run()
