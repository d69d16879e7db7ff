"""The car's touchscreen: a local web page served by the agent, updated live.

What it is for
--------------
Car crews see the unit's state and the active dispatch call on a small
touchscreen (default the official Raspberry Pi 7" display, 800x480) showing
this page fullscreen in Chromium kiosk mode, and touch it to change status,
answer the call or raise the emergency alarm. A touch is posted to the inbox
as the same :class:`ButtonPressed` / :class:`ButtonReleased` events a panel
button produces (``source="touch"``), so the core treats every input alike.

How it works
------------
Starlette + uvicorn run in a thread of their own with their own asyncio loop;
the socket is bound in :meth:`WebUi.start` (port 0 picks a free one), so a
busy port is an ``OSError`` to the caller, not a dead thread.

The core builds a *snapshot* (below) of everything the screen shows and hands
it to :meth:`WebUi.update`, which is cheap and thread-safe: it encodes the
snapshot once to JSON and wakes the loop. Only the newest snapshot matters:
if several arrive before the loop runs, the older ones are dropped, and each
page has a queue of exactly one (the newest) snapshot, so a slow page never
makes the agent hold old ones.

The page receives snapshots by Server-Sent Events on ``GET /api/events``: a
``hello`` event (asset version: when it changes after an upgrade the page
reloads itself), the current snapshot, then every new one, and a ``ping``
every few seconds so the page can tell a silent, dead connection from a
quiet agent. ``EventSource`` reconnects by itself; the page keeps showing the
last snapshot with "agent disconnected" meanwhile. Everything is served from
this process (no CDN: the car is often offline): the page, script and style
sheet from ``agent/adapters/web/`` (read into memory at start), the alert
sounds synthesised at start (:mod:`agent.adapters.web_ui_sounds`), and
DejaVu Sans from the system fonts when present (it covers Latin and Arabic;
the style sheet falls back to local fonts otherwise).

HTTP API
--------
``GET /``                   the page
``GET /static/<asset>``     ``app.js`` and its ES modules ``js/*.js``, ``style.css``,
                            ``i18n/fr.json``, ``i18n/ar.json``
``GET /sounds/p<1-3>.wav``  call alert per priority
``GET /fonts/<file>.ttf``   DejaVu Sans Condensed (regular, bold)
``GET /api/snapshot``       the current snapshot (``null`` before the first)
``GET /api/events``         the SSE stream (at most ``max_clients`` at once: 503 beyond)
``POST /api/input``         ``{"name": <input>, "action": "press"|"release"}``
                            -> 200 ``{"ok": true}``. ``name`` must be in the current
                            snapshot's ``inputs`` (400 otherwise), or, for a release,
                            have been pressed here (its press may have changed them); the body must be
                            JSON (``Content-Type: application/json``, 415 otherwise;
                            that also keeps other web pages from posting here without
                            a CORS preflight, which is never granted) of at most
                            1 KiB (413); a cross-origin ``Origin`` is refused (403).
                            503 when the inbox refused the event.

Language and theme toggles on the screen are a local preference of that
screen, kept in the browser's ``localStorage`` (nothing is posted): the
snapshot's ``lang`` / ``theme`` (from ``[ui]`` config) is the default, a
choice made on the screen overrides it until the configured value changes
(a fleet admin's new setting wins over an old local choice).

The snapshot (the contract with the core)
-----------------------------------------
A JSON object; times are ISO 8601 UTC strings (``2024-03-01T10:20:30Z``)::

    {"unit": {"id": str, "kind": "car"|"motorcycle", "name": str},
     "lang": "fr"|"ar", "theme": "auto"|"day"|"night", "sound": bool,
     "now": ISO,                          # the agent's time of the snapshot
     "status": code,                      # current unit status
     "status_since": ISO|null,            # optional: when it was set (null: before this run)
     "started_s": float,                  # optional: seconds since this run began
     "status_labels": {code: label},      # in "lang", for every status code; or
                                          # {"fr": {code: label}, "ar": {...}}, so a
                                          # language chosen on the screen shows the
                                          # configured labels too
     "status_buttons": [code, ...],       # the status buttons this vehicle has
     "inputs": [name, ...],               # every input the page may post now
                                          # ("emergency_cancel" only in the cancel window)
     "siren": bool,
     "link": {"online": bool, "backlog": int,
              "since_s": float},           # optional: seconds since the link last changed
     "gnss": {"mode": 0-3, "lat": float|null, "lon": float|null,
              "speed": m/s|null, "track": deg|null, "age": s|null,
              "receiver": "ok"|"no_fix"|"lost"},  # optional; "lost": receiver silent/unplugged
     "emergency": {"state": "none"|"holding"|"pending"|"active"|"acknowledged",
                   "since": ISO|null,
                   "cancel_deadline_s": float|null,   # seconds left to cancel, at "now"
                   "hold_s": float},                  # optional: hold time (default: the
                                                      # configured default, screen_rules)
     "call": null | {"id": str, "priority": 1|2|3, "nature": str, "code": str|null,
                     "address": str, "address_short": str|null,
                     "location": {"lat", "lon"}|null,
                     "details": str|null, "caller": str|null, "created": ISO,
                     "state": "new"|"accepted"|"declined"|"en_route"|"on_scene"
                              |"cleared"|"cancelled",
                     "acknowledged": bool,     # accepted or declined by the crew
                     "distance_m": float|null, "bearing_deg": float|null,
                     "position_age_s": float|null,  # distance and bearing are from the last known
                                                    # position, that old (null: the current fix)
                     "updated": ISO,
                     "age_verified": bool,     # optional (default true): false while the unit has no
                                               # trusted time, so "created" cannot be compared with "now"
                     "age_s": float|null,      # its age now, on trusted time (null: unverified)
                     "stale": bool|null,       # already older than the limit when it arrived
                     "answer_in_s": float},    # it took the screen a moment ago: answers are
                                               # taken after this many seconds (the read rule)
     "crash": null | {"prompt_s": int,    # a crash found (agent/core/officer_down.py): seconds left
                      "alarm": bool,       # true: the pre-alarm's window; false: a minor prompt
                      "text": str},        # "Chute détectée – appuyez ACK pour annuler (N s)", in the
                                           # screen's language; the band shows it
     "waiting": int,                      # calls not yet accepted behind the one shown
     "notice": null | {"kind": "refused"|"cancelled"|..., "text": str,
                       "id": str|int,         # optional id: same text twice shows twice
                       "subject": str|null,   # optional, "cancelled": the call's nature
                       "reason": str|null,    # optional, "cancelled": the dispatcher's reason
                       "call_id": str|null,   # optional, "cancelled": the call's id and address,
                       "address": str|null,
                       "same_nature_shown": bool},  # another call of the same nature is shown
     # The page's rules, derived from the fields above by agent/core/screen_rules.py
     # (update() fills in those a snapshot does not carry; the page decides nothing itself):
     "takeover": bool,                    # the call takes the whole screen (new, unanswered)
     "call_controls": [input, ...],       # the call's next steps that have a button
     "alert": null | {"call_id": str, "url": str, "loop": bool, "plays": int},
     "emergency": {..., "control": "hold"|"cancel"|"none",   # what a touch on it does now
                   "at_deadline": null | {"state": str, "control": str}},  # when the window closes
     "gnss": {..., "stale": bool, "heading_deg": float|null},  # heading-up while moving
     "link": {..., "alert_after_s": float},  # offline this long: said in big letters
     "confirm": {input: float},           # inputs that take a second touch within s seconds
     "call": {..., "age_s", "stale", "answer_in_s"}}  # from "now" and "created" when not given

The page shows a call fullscreen (with its alert sound) while ``takeover``
is true (the call is present and ``acknowledged`` is false); ``bearing_deg`` is true bearing from
the unit to the incident (the page turns it heading-up when ``gnss.speed`` says
the unit is moving). A touch on the emergency button posts ``emergency``
press on pointer down and release on pointer up / cancel / leave: the core
times the hold. While ``pending`` (the alarm is out, the cancel window open)
the button reads "cancel the alert" and a new touch on it posts
``emergency_cancel`` (press + release), which the core treats by the panel
``ack`` rule but never as anything else: a tap arriving after the window is
refused, it cannot accept a call. Once ``active`` the button says so and
posts nothing (only dispatch ends an active alarm).

Kiosk
-----
Chromium must be allowed to play the alert without a prior touch::

    chromium --kiosk --autoplay-policy=no-user-gesture-required \\
             --noerrdialogs --disable-translate --no-first-run http://127.0.0.1:8080/

Without the flag the first alert may stay silent until the screen is touched
(the page then shows a "touch to enable sound" hint on the call).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from agent.adapters.web_ui_sounds import alert_sounds
from agent.adapters.web_ui_stream import EventStream, StreamClient
from agent.core import screen_rules
from agent.core.events import ButtonPressed, ButtonReleased

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).with_name("web")
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_FILES = ("DejaVuSansCondensed.ttf", "DejaVuSansCondensed-Bold.ttf")
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "i18n/fr.json": "application/json",
    "i18n/ar.json": "application/json",
    # The page's ES modules, one per concern (app.js says which).
    **{f"js/{path.name}": "text/javascript; charset=utf-8" for path in sorted((WEB_DIR / "js").glob("*.js"))},
}
MAX_INPUT_BYTES = 1024
MAX_INPUT_NAME = 64
# Everything from this origin only: no CDN can sneak in, nothing leaves the car.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; font-src 'self'; "
    "media-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
)


class WebUi:
    """The touchscreen web server. Thread-safe: ``update`` from any thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        post: Callable[[object], None],
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 8,
        ping_s: float = 5.0,
        font_dir: Path = FONT_DIR,
    ):
        self.host = host
        self._requested_port = port
        self._post = post
        self._clock = clock
        self.max_clients = max_clients
        self.ping_s = ping_s
        self._font_dir = font_dir
        self.port: int | None = None

        self._lock = threading.Lock()
        self._blob: bytes | None = None  # newest snapshot, encoded
        self._inputs: frozenset[str] = frozenset()
        # Inputs pressed on a screen and not yet released: their release is always taken, even
        # when the press itself changed what the snapshot offers (a cancel ends the window).
        self._held: set[str] = set()
        self._wake_pending = False
        self.rejected_snapshots = 0

        self._assets: dict[str, tuple[bytes, str]] = {}
        self._version = ""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._clients: set[StreamClient] = set()
        self._closing = False

    # ----------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def connected_clients(self) -> int:
        return len(self._clients)

    def start(self, timeout: float = 10.0) -> None:
        """Bind, start the server thread, return once it is accepting connections."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._load_assets()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._closing = False
        with self._lock:
            self._wake_pending = False  # a wake-up lost with a previous loop

        config = uvicorn.Config(
            self._app(),
            http="h11",
            loop="asyncio",
            lifespan="off",
            log_config=None,  # the agent configures logging, not a library
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        ready = threading.Event()
        server = _Server(config, ready)
        self._server = server

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(server.serve(sockets=[sock]))
            except BaseException:  # uvicorn may sys.exit(); keep it in this thread
                log.exception("touchscreen server stopped on an error")
            finally:
                loop.close()
                sock.close()
                ready.set()

        self._thread = threading.Thread(target=run, name="web-ui", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or not server.started:
            self.stop()
            raise RuntimeError(f"touchscreen server did not start on {self.host}:{self.port}")
        log.info("touchscreen page on %s", self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Close every stream, stop the server and join its thread (bounded)."""
        thread, server, loop = self._thread, self._server, self._loop
        if thread is None:
            return
        self._closing = True
        if loop is not None and server is not None:
            try:
                loop.call_soon_threadsafe(self._close_streams)
            except RuntimeError:
                pass  # loop already closed: the thread is ending anyway
            server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            if server is not None:
                server.force_exit = True
            thread.join(1.0)
            if thread.is_alive():
                raise RuntimeError("touchscreen server thread did not stop")
        self._thread = self._server = self._loop = None

    # -------------------------------------------------------------- updates

    def update(self, snapshot: Mapping[str, Any]) -> bool:
        """Show ``snapshot`` (see the module docstring); only the newest matters.

        Returns False, logs and counts ``rejected_snapshots`` when it is not
        plain JSON data (e.g. a NaN); the screen then keeps the previous one.
        """
        try:
            snapshot = screen_rules.complete(snapshot)  # the page's rules, from the snapshot's state
            blob = json.dumps(snapshot, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            raw_inputs = snapshot.get("inputs") or []
            inputs = frozenset(name for name in raw_inputs if isinstance(name, str))
        except (TypeError, ValueError, AttributeError) as exc:
            self.rejected_snapshots += 1
            log.error("touchscreen snapshot rejected: %s", exc)
            return False
        with self._lock:
            self._blob = blob.encode()
            self._inputs = inputs
            if self._wake_pending:
                return True  # the loop has not run yet: it will send this newest one
            self._wake_pending = True
            loop = self._loop
        if loop is None:
            with self._lock:
                self._wake_pending = False  # not running: the next client gets it on connect
            return True
        try:
            loop.call_soon_threadsafe(self._fan_out)
        except RuntimeError:  # loop closing under us
            with self._lock:
                self._wake_pending = False
        return True

    def _fan_out(self) -> None:
        with self._lock:
            self._wake_pending = False
            blob = self._blob
        if blob is None:
            return
        for client in self._clients:
            client.offer(blob)

    def _close_streams(self) -> None:
        for client in self._clients:
            client.close()

    # ------------------------------------------------------------- the app

    def _load_assets(self) -> None:
        assets = {}
        digest = hashlib.sha256()
        for name, ctype in ASSETS.items():
            data = (WEB_DIR / name).read_bytes()
            assets[name] = (data, ctype)
        for name, data in alert_sounds().items():
            assets[f"sounds/{name}"] = (data, "audio/wav")
        for name in sorted(assets):
            digest.update(name.encode() + b"\0" + assets[name][0])
        self._assets = assets
        self._version = digest.hexdigest()[:12]

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/", self._index),
                Route("/favicon.ico", self._no_content),
                Route("/static/{path:path}", self._static),
                Route("/sounds/{name}", self._sound),
                Route("/fonts/{name}", self._font),
                Route("/api/snapshot", self._snapshot),
                Route("/api/events", EventStream(self)),
                Route("/api/input", self._input, methods=["POST"]),
            ]
        )

    def _asset(self, key: str, cache: str = "no-cache") -> Response:
        found = self._assets.get(key)
        if found is None:
            return Response("not found\n", status_code=404, media_type="text/plain")
        data, ctype = found
        return Response(
            data,
            media_type=ctype,
            headers={
                "Cache-Control": cache,
                "Content-Security-Policy": CSP,
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def _index(self, request: Request) -> Response:
        return self._asset("index.html", cache="no-store")

    async def _no_content(self, request: Request) -> Response:
        return Response(status_code=204)

    async def _static(self, request: Request) -> Response:
        path = request.path_params["path"]
        if path == "index.html":
            return self._asset("index.html", cache="no-store")
        return self._asset(path)

    async def _sound(self, request: Request) -> Response:
        return self._asset(f"sounds/{request.path_params['name']}")

    async def _font(self, request: Request) -> Response:
        name = request.path_params["name"]
        path = self._font_dir / name
        if name not in FONT_FILES or not path.is_file():
            return Response("not found\n", status_code=404, media_type="text/plain")
        return FileResponse(path, media_type="font/ttf", headers={"Cache-Control": "max-age=86400"})

    async def _snapshot(self, request: Request) -> Response:
        with self._lock:
            blob = self._blob
        return Response(
            blob if blob is not None else b"null",
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def _input(self, request: Request) -> Response:
        def refuse(status: int, error: str) -> Response:
            return JSONResponse({"ok": False, "error": error}, status_code=status)

        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            return refuse(403, "cross-origin input refused")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return refuse(415, "Content-Type must be application/json")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_INPUT_BYTES):
            return refuse(413, f"body over {MAX_INPUT_BYTES} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_INPUT_BYTES:
                return refuse(413, f"body over {MAX_INPUT_BYTES} bytes")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return refuse(400, "body is not JSON")
        if not isinstance(data, dict):
            return refuse(400, "body must be a JSON object")
        name, action = data.get("name"), data.get("action")
        if action not in ("press", "release"):
            return refuse(400, "action must be 'press' or 'release'")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_INPUT_NAME:
            return refuse(400, "name must be a short string")
        with self._lock:
            allowed = name in self._inputs or (action == "release" and name in self._held)
        if not allowed:
            return refuse(400, f"input {name!r} is not accepted now")
        kind = ButtonPressed if action == "press" else ButtonReleased
        try:
            self._post(kind(name, self._clock(), source="touch"))
        except Exception:  # a full inbox must not kill the server
            log.exception("touch input %s %s not posted", name, action)
            return refuse(503, "agent busy, input not taken")
        with self._lock:
            if action == "press":
                self._held.add(name)
            else:
                self._held.discard(name)
        return JSONResponse({"ok": True})


class _Server(uvicorn.Server):
    """uvicorn's server, telling the starting thread when it accepts connections."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event):
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._ready.set()
