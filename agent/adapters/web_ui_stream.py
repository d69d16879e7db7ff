"""The touchscreen's Server-Sent Events stream (``GET /api/events``) of :mod:`agent.adapters.web_ui`.

Each page connected gets a ``hello`` (the asset version and the ping period),
the current snapshot, then every newer one, and a ``ping`` whenever nothing
new came for ``ping_s`` seconds, so the page can tell a dead connection from
a quiet agent. Each page has a queue of exactly one snapshot, the newest: a
slow page never makes the agent hold old ones. At most ``max_clients`` pages
at once (503 beyond), and none while the server is shutting down.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from starlette.responses import Response


class StreamClient:
    """One page's stream: a queue of one, the newest snapshot."""

    def __init__(self) -> None:
        self.pending: bytes | None = None
        self.closed = False
        self.wake = asyncio.Event()

    def offer(self, blob: bytes) -> None:
        self.pending = blob  # replaces an unsent older one: only the newest matters
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class EventStream:
    """``GET /api/events``: a raw ASGI app, so a page's disconnect is seen at once."""

    def __init__(self, ui: Any):  # the WebUi (not imported: it imports this module)
        self.ui = ui

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        ui = self.ui
        if ui._closing or len(ui._clients) >= ui.max_clients:
            response = Response(
                "too many screens or shutting down\n",
                status_code=503,
                media_type="text/plain",
                headers={"Retry-After": "2"},
            )
            await response(scope, receive, send)
            return
        client = StreamClient()
        with ui._lock:
            client.pending = ui._blob
        ui._clients.add(client)

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    client.close()
                    return

        watcher = asyncio.create_task(watch_disconnect())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-store"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            hello = json.dumps({"version": ui._version, "ping_s": ui.ping_s})
            await self._emit(send, f"retry: 1000\nevent: hello\ndata: {hello}\n\n".encode())
            while not client.closed:
                blob, client.pending = client.pending, None
                if blob is not None:
                    await self._emit(send, b"event: snapshot\ndata: " + blob + b"\n\n")
                    continue
                client.wake.clear()
                if client.pending is not None or client.closed:
                    continue
                try:
                    await asyncio.wait_for(client.wake.wait(), ui.ping_s)
                except asyncio.TimeoutError:
                    await self._emit(send, b"event: ping\ndata: {}\n\n")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the page went away mid-write
        finally:
            ui._clients.discard(client)
            watcher.cancel()

    @staticmethod
    async def _emit(send: Callable, data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})
