"""Test support: a real GCS JSON API on loopback, and a gate in front of it.

`GcsEmulator` runs gcp-storage-emulator in this process on 127.0.0.1 and a port the
OS picks (no race for a "free" port), in memory, and stops it.

The emulator ignores `ifGenerationMatch`, so `GenerationGate`, a small threaded proxy
in front of it, enforces that precondition the way GCS does (412 when it does not
hold), records the precondition every write and delete sent, and counts how many
uploads are in flight at once (optionally holding them until N have arrived), so the
tests can prove both the concurrency control and the parallelism.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http import client as http_client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gcp_storage_emulator.server import create_server

HOST = "127.0.0.1"


class GcsEmulator:
    """gcp-storage-emulator, in memory, on 127.0.0.1:<OS-chosen port>."""

    def __init__(self) -> None:
        self._server = create_server(HOST, 0, in_memory=True)
        self.url = ""

    def start(self) -> GcsEmulator:
        # as its --quiet flag: it logs every request, and every 404 as an error
        logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)
        logging.getLogger("api").setLevel(logging.CRITICAL)
        self._server.start()
        port = self._server._api._httpd.server_address[1]  # bound to port 0: ask the socket
        self.url = f"http://{HOST}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> GcsEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wipe(self) -> None:
        self._server.wipe()

    def client(self) -> Any:
        """A plain google-cloud-storage client on the emulator (for arranging and checking)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.url},
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(name)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, tuple[int, bytes]]:
        """name -> (generation, content) of every object under `prefix`."""
        client = self.client()
        return {  # a "folder" placeholder (name ending in /) cannot be downloaded here
            b.name: (b.generation, b"" if b.name.endswith("/") else b.download_as_bytes())
            for b in client.list_blobs(bucket, prefix=prefix or None)
        }

    def put(self, bucket: str, name: str, data: bytes) -> int:
        blob = self.client().bucket(bucket).blob(name)
        blob.upload_from_string(data)
        return blob.generation


@dataclass(frozen=True)
class GateCall:
    method: str  # "write" or "delete"
    name: str  # object name in the bucket
    if_generation_match: int | None  # None: the request carried no precondition
    status: int


class GenerationGate:
    """A loopback proxy to `upstream` that enforces ifGenerationMatch on object writes
    (multipart uploads) and deletes, as GCS does."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self._upstream = (parsed.hostname or HOST, parsed.port or 80)
        self.calls: list[GateCall] = []
        self.requests: list[str] = []  # "METHOD /path?query" of every request, in order
        self.deny = False  # answer everything with 403, as GCS does without IAM
        # Fault injection: called with (request number, "METHOD /path"), returns None to
        # serve the request, "503", "reset" (drop the connection before forwarding) or
        # "lost" (forward it, then drop the connection: the answer never arrives).
        self.fault: Callable[[int, str], str | None] = lambda n, request: None
        self.faults: list[tuple[str, str]] = []  # (fault, request) injected, in order
        self.connections: set[tuple[str, int]] = set()
        self.in_flight = 0
        self.peak_in_flight = 0
        self._hold_for = 0
        self._hold_timeout = 0.0
        self._hold_match: Callable[[str], bool] = lambda name: True
        self._cond = threading.Condition()
        self._precondition_lock = threading.Lock()
        gate = self

        class Handler(_ProxyHandler):
            owner = gate

        self._httpd = ThreadingHTTPServer((HOST, port), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://{HOST}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> GenerationGate:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> GenerationGate:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def hold_uploads(self, count: int, match: Callable[[str], bool], timeout: float = 5.0) -> None:
        """Hold matching uploads until `count` are in flight together (once), or until
        `timeout`: a client that uploads one at a time never reaches the count."""
        with self._cond:
            self._hold_for, self._hold_match, self._hold_timeout = count, match, timeout

    # -- used by the handler ----------------------------------------------------------

    def _enter_upload(self, name: str) -> None:
        with self._cond:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            if not self._hold_for or not self._hold_match(name):
                return
            if self.in_flight >= self._hold_for:
                self._hold_for = 0
                self._cond.notify_all()
                return
            if not self._cond.wait_for(lambda: self._hold_for == 0, timeout=self._hold_timeout):
                self._hold_for = 0  # measured: never reached; stop holding anyone
                self._cond.notify_all()

    def _exit_upload(self) -> None:
        with self._cond:
            self.in_flight -= 1

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http_client.HTTPConnection(*self._upstream, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def _generation(self, bucket: str, name: str, host: str) -> int:
        quoted = urllib.parse.quote(name, safe="")
        status, _, body = self._forward(
            "GET", f"/storage/v1/b/{bucket}/o/{quoted}", {"Host": host}, b""
        )
        return int(json.loads(body)["generation"]) if status == 200 else 0


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: GenerationGate
    protocol_version = "HTTP/1.1"  # keep-alive: connection reuse is observable

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        gate = self.owner
        gate.connections.add(self.client_address)
        request = f"{method} {self.path}"
        gate.requests.append(request)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = gate.fault(len(gate.requests), request)
        if fault:
            gate.faults.append((fault, request))
        if fault == "503":
            self._reply(503, [("Content-Type", "application/json")], b'{"error": {"code": 503}}')
            return
        if fault == "reset":
            self._reset()
            return
        self._lose_reply = fault == "lost"  # served as usual, then _reply drops it
        if gate.deny:
            self._reply(*_error(403, "caller does not have storage.objects.list access"))
            return
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in ("connection", "keep-alive", "content-length")
        }
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        target = _object_call(method, url.path, query, self.headers, body)
        if target is None:
            self._reply(*gate._forward(method, self.path, headers, body))
            return
        kind, bucket, name = target
        match = int(query["ifGenerationMatch"][0]) if "ifGenerationMatch" in query else None
        if kind == "write":
            gate._enter_upload(name)
        try:
            with gate._precondition_lock:  # check-and-act atomically, as GCS does
                current = gate._generation(bucket, name, self.headers.get("Host", ""))
                missing_delete = kind == "delete" and current == 0  # GCS: 404 before 412
                if match is not None and match != current and not missing_delete:
                    status, reply_headers, reply = _error(
                        412, "At least one of the pre-conditions you specified did not hold."
                    )
                else:
                    status, reply_headers, reply = gate._forward(method, self.path, headers, body)
                gate.calls.append(GateCall(kind, name, match, status))
        finally:
            if kind == "write":
                gate._exit_upload()
        self._reply(status, reply_headers, reply)

    def _reset(self) -> None:
        """Drop the connection with a TCP reset, as a crashing front end would."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        if getattr(self, "_lose_reply", False):
            self._lose_reply = False
            self._reset()
            return
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _object_call(
    method: str, path: str, query: dict[str, list[str]], headers: Any, body: bytes
) -> tuple[str, str, str] | None:
    """("write"|"delete", bucket, object name) for the calls the gate checks."""
    parts = path.split("/")  # "", "storage", "v1", "b", bucket, "o", name...
    if method == "DELETE" and path.startswith("/storage/v1/b/") and parts[5:6] == ["o"]:
        return "delete", parts[4], urllib.parse.unquote("/".join(parts[6:]))
    upload = path.startswith("/upload/storage/v1/b/") and path.endswith("/o")
    if method == "POST" and upload and query.get("uploadType") == ["multipart"]:
        name = query["name"][0] if "name" in query else _multipart_name(headers, body)
        return "write", parts[5], name
    return None


def _multipart_name(headers: Any, body: bytes) -> str:
    head = f"Content-Type: {headers.get('Content-Type')}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    first = next(iter(message.iter_parts()))
    return json.loads(first.get_content())["name"]


def _error(code: int, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    reason = {403: "forbidden", 412: "conditionNotMet"}[code]
    body = {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"domain": "global", "reason": reason, "message": message}],
        }
    }
    return code, [("Content-Type", "application/json")], json.dumps(body).encode()
