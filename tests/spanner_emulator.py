"""Find, start and stop a Cloud Spanner emulator (gRPC only, on 127.0.0.1).

Pytest-free, so fixtures anywhere (and scripts) can reuse it:

    with SpannerEmulator() as emulator:          # or emulator.start() ... emulator.stop()
        os.environ["SPANNER_EMULATOR_HOST"] = emulator.host
        store = open_store(emulator.url("test-project", "fleet", "fleet"))

The binary is `emulator_main`, looked up in this order: $SPANNER_EMULATOR_BIN, PATH,
the Debian package google-cloud-cli-spanner-emulator (dpkg -L), next to gcloud, and
the usual SDK install places. `find_emulator_binary()` returns None when there is none.
`SPANNER_EMULATOR_BIN=none` makes it return None on a machine that has one, to prove
what the suite does without the emulator (the find above also looks in fixed install
places, so emptying PATH cannot hide it).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BINARY_ENV = "SPANNER_EMULATOR_BIN"
BINARY_NAME = "emulator_main"
PRETEND_ABSENT = "none"  # SPANNER_EMULATOR_BIN=none: behave as if no emulator is installed
DEBIAN_PACKAGE = "google-cloud-cli-spanner-emulator"
_SDK_SUBPATH = Path("bin/cloud_spanner_emulator") / BINARY_NAME
_SDK_ROOTS = (
    Path("/usr/lib/google-cloud-sdk"),
    Path("/usr/share/google-cloud-sdk"),
    Path("/opt/google-cloud-sdk"),
    Path("/google-cloud-sdk"),
    Path.home() / "google-cloud-sdk",
)


class EmulatorError(RuntimeError):
    """The emulator binary is missing, or it did not start."""


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_emulator_binary() -> Path | None:
    """The emulator_main binary, or None. A $SPANNER_EMULATOR_BIN that is not an
    executable file is an error rather than silently ignored; "none" means: pretend
    there is no emulator here."""
    configured = os.environ.get(BINARY_ENV)
    if configured and configured.strip().lower() == PRETEND_ABSENT:
        return None
    if configured:
        path = Path(configured).expanduser()
        if not _executable(path):
            raise EmulatorError(f"{BINARY_ENV}={configured} is not an executable file")
        return path
    on_path = shutil.which(BINARY_NAME)
    if on_path:
        return Path(on_path)
    if shutil.which("dpkg"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            listing = subprocess.run(
                ["dpkg", "-L", DEBIAN_PACKAGE],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout
            for line in listing.splitlines():
                path = Path(line.strip())
                if path.name == BINARY_NAME and _executable(path):
                    return path
    roots = list(_SDK_ROOTS)
    gcloud = shutil.which("gcloud")
    if gcloud:  # <sdk>/bin/gcloud, often through a symlink in /usr/bin
        roots.insert(0, Path(gcloud).resolve().parent.parent)
    for root in roots:
        if _executable(root / _SDK_SUBPATH):
            return root / _SDK_SUBPATH
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class SpannerEmulator:
    """One emulator process on 127.0.0.1:<free port>; `.host` is what
    SPANNER_EMULATOR_HOST must be set to."""

    bind_host = "127.0.0.1"

    def __init__(self, binary: Path | str | None = None, *, startup_timeout: float = 30.0):
        found = Path(binary) if binary is not None else find_emulator_binary()
        if found is None:
            raise EmulatorError(
                f"Spanner emulator binary {BINARY_NAME} not found: install the Debian "
                f"package {DEBIAN_PACKAGE} (or gcloud components install "
                f"cloud-spanner-emulator), or set {BINARY_ENV}"
            )
        self.binary = found
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def host(self) -> str:
        if self.port is None:
            raise EmulatorError("the emulator is not started")
        return f"{self.bind_host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def url(self, project: str, instance: str, database: str) -> str:
        return f"spanner://projects/{project}/instances/{instance}/databases/{database}"

    def env(self) -> dict[str, str]:
        return {"SPANNER_EMULATOR_HOST": self.host}

    def start(self) -> SpannerEmulator:
        """Start on a free port and wait until it accepts connections."""
        if self.running:
            return self
        last_error = ""
        for _ in range(3):  # another process may grab the free port before we bind it
            began = time.monotonic()
            self.port = free_port(self.bind_host)
            self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop())
                prefix="spanner-emulator-", suffix=".log"
            )
            self._process = subprocess.Popen(
                [str(self.binary), f"--host_port={self.host}"],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            atexit.register(self.stop)
            if self._wait_until_listening():
                self.startup_seconds = time.monotonic() - began
                return self
            last_error = self._log_tail()
            self.stop()
        raise EmulatorError(f"the Spanner emulator ({self.binary}) did not start: {last_error}")

    def _wait_until_listening(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.bind_host, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def _log_tail(self, limit: int = 2000) -> str:
        if self._log is None:
            return ""
        with contextlib.suppress(OSError):
            text = Path(self._log.name).read_text(errors="replace")
            return " ".join(text[-limit:].split()) or "(no output)"
        return "(no output)"

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate (then kill) the process; idempotent."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=timeout)
            atexit.unregister(self.stop)
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def __enter__(self) -> SpannerEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
