"""Asset URIs (Airflow 2: dataset URIs) as templates write them, checked at generation.

A template names an asset in plain data, a URI string under a task's `outlets`; the
generated file holds `Asset(uri)` (`Dataset(uri)` for Airflow 2). A URI Airflow or the
Google provider would refuse when parsing the file is an error here instead, before
anything is published.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from composer.compose.dagspec import AssetRef

_SCHEME_RE = re.compile(r"[a-z][a-z0-9+.-]*\Z")


def asset_uri(uri: Any) -> str:
    """The URI, or ValueError saying why Airflow would refuse it."""
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"an asset is a URI string, not {uri!r}")
    if not uri.isascii() or any(c.isspace() for c in uri):
        raise ValueError(f"asset URI {uri!r} must be ASCII without spaces")
    parts = urlsplit(uri)
    if "://" not in uri or not _SCHEME_RE.match(parts.scheme):
        raise ValueError(
            f"asset URI {uri!r} needs a scheme, as in bigquery://project/dataset/table"
        )
    if parts.scheme == "airflow":
        raise ValueError(f"asset URI {uri!r}: the airflow scheme is reserved by Airflow")
    if parts.scheme == "bigquery":  # what the Google provider's handler accepts
        segments = parts.path.split("/")
        if not parts.netloc or len(segments) != 3 or not all(segments[1:]):
            raise ValueError(f"asset URI {uri!r} must be bigquery://project/dataset/table")
    return uri


def asset_refs(value: Any) -> list[AssetRef]:
    """`outlets` as a template writes them (one URI or a list of URIs) as AssetRefs."""
    uris = value if isinstance(value, list) else [value]
    return [AssetRef(asset_uri(uri)) for uri in uris]
