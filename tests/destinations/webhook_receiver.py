"""A webhook receiver for the destination tests: HTTPS on 127.0.0.1 with the test's own
certificate, standard library only.

Every request is appended to LOG as one JSON line (its headers and body) *before* it is
answered. The answer is chosen by the files in CONTROL_DIR, so a test can change it while
the receiver runs:
  fail_first  a number N: the first N requests get 503 (then the count is used up)
  refuse      a batch number: requests carrying that batch get 400 while the file exists
Otherwise 200. The first line printed is "listening PORT".

usage: webhook_receiver.py CERT KEY LOG CONTROL_DIR
"""

import http.server
import json
import os
import ssl
import sys
import threading

CERT, KEY, LOG, CONTROL = sys.argv[1:5]
lock = threading.Lock()
seen = {"requests": 0}


def control(name):
    try:
        with open(os.path.join(CONTROL, name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        with lock:
            seen["requests"] += 1
            number = seen["requests"]
            try:
                batch = json.loads(body).get("batch")
            except ValueError:
                batch = None
            fail_first = int(control("fail_first") or 0)
            refuse = control("refuse")
            if number <= fail_first:
                status = 503
            elif refuse is not None and str(batch) == refuse:
                status = 400
            else:
                status = 200
            with open(LOG, "a") as f:
                f.write(json.dumps({
                    "status": status,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode("utf-8"),
                }) + "\n")
        answer = b"try later" if status == 503 else (b"batch refused" if status == 400 else b"ok")
        self.send_response(status)
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("listening", server.server_address[1], flush=True)
server.serve_forever()
