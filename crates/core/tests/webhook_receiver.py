"""A webhook receiver for crates/core/tests/webhooks_out.rs: verifies every POST with the
`standardwebhooks` reference library and records what it got.

Usage: webhook_receiver.py <secret> [<record file>]   (listens on 127.0.0.1, a free port,
printed on stdout; with a record file, each POST's record is also appended to it as a line)

- POST <any path>: verified with standardwebhooks.Webhook(secret).verify(body, headers) at the
  receiver's "now" (the real time, or the one set with /_now, so that a test on a manual clock
  can verify what it sends); answered with the next status of the script (default 200).
  Path /redirect answers 302 to /landed whatever the script says.
- POST /_script  [500, 200, ...]: the statuses of the next POSTs.
- POST /_now     <unix seconds> | null: the time verification takes as now.
- GET  /_received: every POST so far: path, headers, verified, error, parsed body.
"""

import json
import sys
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks
import standardwebhooks.webhooks as webhooks_module

SECRET = sys.argv[1]
RECORD_FILE = sys.argv[2] if len(sys.argv) > 2 else None
LOCK = threading.Lock()
RECEIVED = []
SCRIPT = []
NOW = [None]


class Clock(datetime):
    """`datetime` whose now() is the test's time when one is set."""

    @classmethod
    def now(cls, tz=None):
        if NOW[0] is None:
            return datetime.now(tz)
        return datetime.fromtimestamp(NOW[0], tz=tz or timezone.utc)


webhooks_module.datetime = Clock


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_received":
            with LOCK:
                body = json.dumps(RECEIVED).encode()
            return self.answer(200, body, [("content-type", "application/json")])
        self.answer(404)

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        if self.path == "/_script":
            with LOCK:
                SCRIPT[:] = json.loads(body)
            return self.answer(204)
        if self.path == "/_now":
            with LOCK:
                NOW[0] = json.loads(body)
            return self.answer(204)
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = {"path": self.path, "headers": headers, "verified": False, "error": None}
        try:
            with LOCK:
                record["body"] = standardwebhooks.Webhook(SECRET).verify(body, headers)
            record["verified"] = True
        except Exception as e:  # recorded: the test decides
            record["error"] = f"{type(e).__name__}: {e}"
        with LOCK:
            RECEIVED.append(record)
            status = SCRIPT.pop(0) if SCRIPT else 200
            if RECORD_FILE:
                with open(RECORD_FILE, "a") as f:
                    f.write(json.dumps(record) + "\n")
        if self.path == "/redirect":
            return self.answer(302, headers=[("location", "/landed")])
        self.answer(status)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
