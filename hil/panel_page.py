"""The rider panel's live picture for the demo: a local page showing the 128×64 display.

The agent draws the panel in memory (``[display] kind = "dummy"``) and mirrors each frame
to a PNG (``mirror_png``); this page serves that file and reloads it a few times a
second, so whoever runs the demo sees what the rider sees. Plain ``http.server`` on
loopback: no web framework for one picture.
"""

from __future__ import annotations

import threading
from pathlib import Path


PANEL_PAGE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>{unit} – panneau du motard</title>
<style>
body {{ margin: 0; background: #202428; color: #ddd; font-family: sans-serif; display: flex;
       flex-direction: column; align-items: center; justify-content: center; height: 100vh; gap: 12px; }}
img {{ width: 512px; height: 256px; image-rendering: pixelated; border: 12px solid #000; border-radius: 6px;
      background: #000; }}
</style></head>
<body><img id="panel" alt="panel display" src="/panel.png">
<div>{unit} · 128×64, as the rider sees it · refreshed live</div>
<script>
const img = document.getElementById("panel");
setInterval(() => {{ const next = new Image(); next.onload = () => {{ img.src = next.src; }};
                     next.src = "/panel.png?" + Date.now(); }}, 300);
</script></body></html>
"""


class PanelPage:
    """A local page showing the rider panel's picture (the agent mirrors each frame to ``png``)."""

    def __init__(self, png: Path, unit: str, host: str = "127.0.0.1", port: int = 0):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        page = PANEL_PAGE.format(unit=unit).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                path = self.path.split("?")[0]
                if path == "/":
                    body, ctype = page, "text/html; charset=utf-8"
                elif path == "/panel.png":
                    try:
                        body, ctype = png.read_bytes(), "image/png"
                    except OSError:
                        self.send_error(404, "no frame yet")
                        return
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="panel-page", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
