"""A GCS prefix as a target (gs://bucket/prefix), through google-cloud-storage.

Why the details matter:
- Every write and delete carries `ifGenerationMatch` taken from the listing the plan
  was made from (0 for a new file), so two runs publishing at the same time can never
  silently overwrite each other: the slower one fails and the next run converges.
- One shared client whose HTTP connection pool is sized for publish's thread pool:
  parallel uploads reuse their connections instead of reopening one per file.
- Transient failures are retried with exponential backoff (0.5 s doubling to 8 s, with
  jitter) for at most a minute per call: 408/429/5xx answers, and connections refused,
  reset or timed out (a network blip, a front end restarting). Every write is
  conditional, so retrying one whose answer was lost is safe: the 412 that follows is
  checked against the bytes we sent. After the minute the run fails with one line.
- With STORAGE_EMULATOR_HOST set, the client talks to that emulator anonymously.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

from composer.errors import TargetError, TargetUrlError
from composer.targets import ObjectState

TIMEOUT = (10.0, 60.0)  # seconds: (connect, read) per HTTP request
RETRY_DEADLINE = 60.0  # seconds across all retries of one call
RETRY_INITIAL, RETRY_MAXIMUM = 0.5, 8.0  # seconds between retries: first, largest
POOL_SIZE = 64  # HTTP connections kept per host; >= publish's --jobs (default 16)
PAGE_SIZE = 1000
LIST_FIELDS = "items(name,md5Hash,generation),nextPageToken"
CONTENT_TYPES = {
    ".py": "text/x-python",
    ".html": "text/html",  # the fleet report (utf-8 by its meta tag), viewable from the console
    ".json": "application/json",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
}
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")


def parse_gs_url(url: str) -> tuple[str, str]:
    """gs://bucket/some/prefix/ -> ("bucket", "some/prefix")."""
    rest = url.removeprefix("gs://")
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not url.startswith("gs://") or not _BUCKET.fullmatch(bucket) or "//" in prefix:
        raise TargetUrlError(f"invalid target URL {url!r}: expected gs://bucket/prefix")
    return bucket, prefix


def md5_hex(md5_base64: str | None, generation: int | None) -> str:
    """The hex digest GCS reports in base64. Composite objects have none: their value
    is not a hex digest, so it never equals a wanted file's md5 (they count as changed)."""
    if not md5_base64:
        return f"no-md5:{generation}"
    return base64.b64decode(md5_base64).hex()


def content_type(path: str) -> str:
    suffix = os.path.splitext(path)[1]
    return CONTENT_TYPES.get(suffix, "text/plain")


def _unreachable(exc: BaseException | None) -> bool:
    """True when no connection could be opened (refused, DNS, connect timeout)."""
    from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ConnectTimeoutError):  # NewConnectionError is a subclass
            return True
        if isinstance(exc, MaxRetryError):
            exc = exc.reason
            continue
        nested = next((a for a in exc.args if isinstance(a, BaseException)), None)
        exc = nested or exc.__cause__ or exc.__context__
    return False


def _retryable(exc: Exception) -> bool:
    """The storage client's own transient-error rules: 408, 429, 5xx, and connections
    refused, reset or timed out."""
    from google.cloud.storage.retry import _should_retry

    return bool(_should_retry(exc))


class GcsTarget:
    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self.bucket_name, self.prefix = parse_gs_url(url)
        self._client: Any | None = None  # made on first use: constructing does no I/O
        self._bucket_obj: Any | None = None
        self._pool_size = pool_size
        self._lock = threading.Lock()
        from google.api_core.retry import Retry

        self._deadline = RETRY_DEADLINE
        self._retry = Retry(
            predicate=_retryable,
            initial=RETRY_INITIAL,
            maximum=RETRY_MAXIMUM,
            multiplier=2.0,
            timeout=self._deadline,
        )

    # -- Target protocol -------------------------------------------------------------

    def list_objects(self) -> dict[str, ObjectState]:
        bucket = self._bucket()
        root = f"{self.prefix}/" if self.prefix else None
        found: dict[str, ObjectState] = {}
        with self._errors("list objects"):
            blobs = bucket.client.list_blobs(
                bucket,
                prefix=root,
                fields=LIST_FIELDS,
                page_size=PAGE_SIZE,
                timeout=TIMEOUT,
                retry=self._retry,
            )
            for blob in blobs:
                rel = blob.name[len(root) :] if root else blob.name
                if not rel or rel.endswith("/"):  # "folder" placeholders are not files
                    continue
                found[rel] = ObjectState(md5_hex(blob.md5_hash, blob.generation), blob.generation)
        return found

    def read(self, path: str) -> bytes | None:
        from google.api_core.exceptions import NotFound

        blob = self._bucket().blob(self._name(path))
        with self._errors(f"read {path}"):
            try:
                return blob.download_as_bytes(timeout=TIMEOUT, retry=self._retry)
            except NotFound:
                return None

    def write(self, path: str, data: bytes, expected: ObjectState | None) -> ObjectState:
        from google.api_core.exceptions import PreconditionFailed

        blob = self._bucket().blob(self._name(path))
        match = _generation_match(expected)
        with self._errors(f"write {path}"):
            try:
                blob.upload_from_string(
                    data,
                    content_type=content_type(path),
                    if_generation_match=match,
                    timeout=TIMEOUT,
                    retry=self._retry,
                )
            except PreconditionFailed:
                landed = self._landed(blob, data)
                if landed is None:
                    raise TargetError(self._conflict(path, "write", match)) from None
                return landed
        return ObjectState(md5_hex(blob.md5_hash, blob.generation), blob.generation)

    def delete(self, path: str, expected: ObjectState | None) -> None:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        blob = self._bucket().blob(self._name(path))
        match = _generation_match(expected) if expected is not None else None
        with self._errors(f"delete {path}"):
            try:
                blob.delete(if_generation_match=match, timeout=TIMEOUT, retry=self._retry)
            except NotFound:
                return
            except PreconditionFailed:
                raise TargetError(self._conflict(path, "delete", match)) from None

    def lock(
        self,
        wait: float,
        *,
        on_wait: Callable[[str], None] | None = None,
    ) -> contextlib.AbstractContextManager[None]:
        """No lock object in the bucket: every write and delete is conditional on the
        generation the plan listed, so of two overlapping runs the later one stops."""
        return contextlib.nullcontext()

    # -- internals -------------------------------------------------------------------

    def _name(self, path: str) -> str:
        parts = path.split("/")
        if not path or any(p in ("", ".", "..") for p in parts):
            raise TargetError(f"{path!r} is not a valid path inside the target {self.url}")
        return f"{self.prefix}/{path}" if self.prefix else path

    def _bucket(self) -> Any:
        with self._lock:
            if self._bucket_obj is None:
                if self._client is None:
                    with self._errors("connect"):
                        self._client = _make_client(self._pool_size)
                self._bucket_obj = self._client.bucket(self.bucket_name)
            return self._bucket_obj

    def _landed(self, blob: Any, data: bytes) -> ObjectState | None:
        """After a 412: the object's state if it already holds `data` (our own write,
        retried after its response was lost, or an identical concurrent one)."""
        from google.api_core.exceptions import NotFound

        try:
            blob.reload(timeout=TIMEOUT, retry=self._retry)
        except NotFound:
            return None
        state = ObjectState(md5_hex(blob.md5_hash, blob.generation), blob.generation)
        wanted = hashlib.md5(data, usedforsecurity=False).hexdigest()
        return state if state.md5 == wanted else None

    def _conflict(self, path: str, action: str, match: int | None) -> str:
        seen = "absent" if match == 0 else f"at generation {match}"
        return (
            f"target {self.url}: cannot {action} {path}: another run changed it since this run "
            f"listed it ({seen}); left it as it is: run the sync again"
        )

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn the client's exceptions into one-line TargetErrors."""
        import requests
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth

        where = f"target {self.url}"
        try:
            yield
        except TargetError:
            raise
        except api.NotFound as exc:
            raise TargetError(
                f"{where}: bucket {self.bucket_name} does not exist ({action})"
            ) from exc
        except (api.Forbidden, api.Unauthorized) as exc:
            raise TargetError(
                f"{where}: permission denied to {action}: {_one_line(exc.message)} (the account "
                f"needs roles/storage.objectAdmin on bucket {self.bucket_name})"
            ) from exc
        except api.RetryError as exc:
            gave_up = f"gave up after {self._deadline:g}s of retries"
            if _unreachable(exc.cause):
                raise TargetError(
                    f"{where}: cannot reach the storage endpoint {_endpoint()} to {action} "
                    f"({gave_up})"
                ) from exc
            raise TargetError(
                f"{where}: cannot {action}: {gave_up}: {_one_line(str(exc.cause or exc))}"
            ) from exc
        except api.GoogleAPICallError as exc:
            raise TargetError(
                f"{where}: cannot {action}: HTTP {exc.code} {_one_line(exc.message)}"
            ) from exc
        except auth.DefaultCredentialsError as exc:
            raise TargetError(
                f"{where}: no Google credentials: run `gcloud auth application-default login` "
                "or set GOOGLE_APPLICATION_CREDENTIALS"
            ) from exc
        except (auth.GoogleAuthError, requests.RequestException, OSError) as exc:
            if _unreachable(exc):
                raise TargetError(
                    f"{where}: cannot reach the storage endpoint {_endpoint()} to {action}"
                ) from exc
            raise TargetError(f"{where}: cannot {action}: {_one_line(str(exc))}") from exc


def _generation_match(expected: ObjectState | None) -> int | None:
    """0 = must not exist; the listed generation = must be unchanged."""
    if expected is None:
        return 0
    return expected.generation  # None only for a state from a target without generations


def _endpoint() -> str:
    return os.environ.get("STORAGE_EMULATOR_HOST") or "https://storage.googleapis.com"


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())[:300]


def _make_client(pool_size: int) -> Any:
    """One client for all threads, its connection pool sized for them."""
    import google.auth
    import requests
    from google.auth.credentials import AnonymousCredentials
    from google.auth.transport.requests import AuthorizedSession
    from google.cloud import storage

    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    options = None
    if emulator:
        credentials: Any = AnonymousCredentials()
        if "://" not in emulator:  # gcloud style "host:port"
            options = {"api_endpoint": f"http://{emulator}"}
    else:
        credentials, _ = google.auth.default(scopes=storage.Client.SCOPE)
    session = AuthorizedSession(credentials)
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return storage.Client(
        project=None, credentials=credentials, _http=session, client_options=options
    )
