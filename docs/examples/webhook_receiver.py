"""An example receiver for the hub's outbound webhooks: Python standard library only.

Run it with the subscription's signing secret in the environment:

    WEBHOOK_SECRET=whsec_... python webhook_receiver.py 8000

and subscribe it: `hub webhooks subscribe <tenant> http://<host>:8000/ --event 'appointment.*'`.
It checks the `Hub-Signature` header before trusting anything in the body,
refuses old timestamps (replays), answers 2xx quickly, and drops deliveries
it has already seen (the hub delivers at least once: use `Hub-Webhook-Id`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_SECONDS = 300


def verify_signature(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """True when `header` ("t=<unix seconds>,v1=<hex>") signs exactly this body with `secret`, recently."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))


def make_server(secret: str, port: int, on_event: Callable[[dict[str, Any]], None]) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1:`port` (0 picks one) that calls `on_event` with each verified envelope."""
    seen: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if not verify_signature(secret, self.headers.get("Hub-Signature", ""), body):
                self.send_response(401)
                self.end_headers()
                return
            delivery = self.headers.get("Hub-Webhook-Id", "")
            if delivery not in seen:
                seen.add(delivery)
                on_event(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            return

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


if __name__ == "__main__":
    server = make_server(os.environ["WEBHOOK_SECRET"], int(sys.argv[1]) if len(sys.argv) > 1 else 8000,
                         lambda event: print(event["type"], json.dumps(event["data"])))
    server.serve_forever()
