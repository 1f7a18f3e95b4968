"""A fake agent's "public" side: an HTTPS listener on loopback that forwards to the local server.

Standard library only, so that the fake agents run on any interpreter.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

# Headers that describe one connection, not the request; a proxy must not pass them on.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}
SKIP_BROWSER_WARNING = "ngrok-skip-browser-warning"

# What ngrok's free plan shows a browser before the site itself (ERR_NGROK_6024).
INTERSTITIAL_PAGE = b"""<!DOCTYPE html>
<html><head><title>ngrok - You are about to visit</title></head>
<body><h1>You are about to visit localhost</h1>
<p>This website is served for free through ngrok.com.</p>
<p>To remove this page, send an ngrok-skip-browser-warning request header.</p>
<p>ERR_NGROK_6024</p></body></html>
"""

BAD_GATEWAY_PAGE = b"<html><body><p>The endpoint is offline.</p><p>ERR_NGROK_8012</p></body></html>"


class Forwarder:
    """Serve https://localhost:PORT with the test CA's certificate and forward to `upstream`.

    With `interstitial`, a browser-like User-Agent (Mozilla...) gets ngrok's HTML warning
    page instead, unless the request carries the ngrok-skip-browser-warning header.
    """

    def __init__(self, upstream: str, tls_file: str, *, interstitial: bool = False) -> None:
        target = urlsplit(upstream)
        handler = _handler(target.hostname or "127.0.0.1", target.port or 80, interstitial)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_file)
        # The handshake then happens in each request's thread, not in the accepting one.
        self.server.socket = context.wrap_socket(
            self.server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.url = f"https://localhost:{self.server.server_address[1]}"
        # A short poll interval: shutdown() waits for the serving loop's next poll.
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()


def _handler(host: str, port: int, interstitial: bool) -> type[BaseHTTPRequestHandler]:
    class ForwardingHandler(BaseHTTPRequestHandler):
        def forward(self) -> None:
            user_agent = self.headers.get("User-Agent", "")
            if (
                interstitial
                and user_agent.startswith("Mozilla")
                and SKIP_BROWSER_WARNING not in self.headers
            ):
                self._reply(200, [("Content-Type", "text/html")], INTERSTITIAL_PAGE)
                return

            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["X-Forwarded-For"] = self.client_address[0]
            headers["X-Forwarded-Proto"] = "https"
            upstream = http.client.HTTPConnection(host, port, timeout=10)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
            except OSError:
                self._reply(502, [("Content-Type", "text/html")], BAD_GATEWAY_PAGE)
                return
            finally:
                upstream.close()
            kept = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in HOP_BY_HOP and k.lower() not in ("date", "server")
            ]
            self._reply(response.status, kept, data)

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = forward

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ForwardingHandler
