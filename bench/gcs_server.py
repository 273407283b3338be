"""gcp-storage-emulator in its own process, for the publish benchmark.

    python -m bench.gcs_server BUCKET [--latency-ms MS]

Serves in memory on 127.0.0.1 at a port the OS picks (bound to port 0, so no race for
a "free" port), prints `PORT <n>`, and runs until terminated. Its own process so the
emulator's CPU is never charged to the harness, and a fresh one per measurement so
every upload starts from an empty bucket.

The emulator serves one request at a time, so it cannot show what parallel uploads
buy against GCS, where each request mostly waits on the network. With --latency-ms,
a threaded proxy in front of it holds every request for MS milliseconds before
forwarding it (requests wait concurrently, the emulator still works one at a time),
which is the part of a real upload that parallelism overlaps.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"


def _latency_proxy(upstream_port: int, latency: float) -> ThreadingHTTPServer:
    """A threaded HTTP proxy to the emulator that delays every request by `latency` s."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body in separate writes: no 40 ms stalls

        def _forward(self) -> None:
            time.sleep(latency)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            conn = http.client.HTTPConnection(HOST, upstream_port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status, resp.reason)
            for key, value in resp.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        def log_message(self, *args: object) -> None:
            pass

    proxy = ThreadingHTTPServer((HOST, 0), Handler)
    proxy.daemon_threads = True
    proxy.request_queue_size = 128
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy


def serve(bucket: str, latency_ms: float = 0) -> None:
    from gcp_storage_emulator.server import create_server

    logging.disable(logging.INFO)  # one log line per request would cost the emulator time
    server = create_server(HOST, 0, in_memory=True, default_bucket=bucket)
    server.start()
    port = server._api._httpd.server_address[1]
    proxy = _latency_proxy(port, latency_ms / 1000) if latency_ms else None
    print(f"PORT {proxy.server_address[1] if proxy else port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    if proxy:
        proxy.shutdown()
    server.stop()


class EmulatorProcess:
    """Start the server above as a child; `host` is what STORAGE_EMULATOR_HOST takes."""

    def __init__(self, bucket: str, env: dict[str, str], log: Path, latency_ms: float = 0) -> None:
        self.bucket, self.env, self.log, self.latency_ms = bucket, env, log, latency_ms
        self.proc: subprocess.Popen | None = None
        self.host = ""

    def start(self) -> EmulatorProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.gcs_server",
                    self.bucket,
                    "--latency-ms",
                    str(self.latency_ms),
                ],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the GCS emulator did not start (see {self.log})")
        self.host = f"http://{HOST}:{int(line.split()[1])}"
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench.gcs_server")
    ap.add_argument("bucket")
    ap.add_argument("--latency-ms", type=float, default=0)
    args = ap.parse_args()
    serve(args.bucket, args.latency_ms)
