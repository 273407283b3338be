"""A deadline for every Cloud Spanner RPC of the store.

The client's own defaults retry an unreachable endpoint for 30 s per session and restart
a broken result stream without limit; the store promises a one-line error within
seconds. So every RPC gets a short gRPC deadline and a short retry window for transient
errors (`Budget`), and a store operation that runs out of time stops at its next RPC.
The official client and database classes are used as they are, with their GAPIC APIs
wrapped (`Guarded`): only methods that take `retry` and `timeout` are touched.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import gapic_v1
from google.api_core import retry as gretry
from google.cloud.spanner_v1 import Client
from google.cloud.spanner_v1.database import Database


class Budget:
    """Default deadline and retry for every RPC, and the current operation's end."""

    def __init__(self, rpc_timeout: float, retry_seconds: float) -> None:
        self.rpc_timeout = rpc_timeout
        self.retry_seconds = retry_seconds
        self._end: float | None = None
        self._seconds = 0.0

    def start(self, seconds: float) -> None:
        self._seconds = seconds
        self._end = time.monotonic() + seconds

    def stop(self) -> None:
        self._end = None

    def apply(self, kwargs: dict[str, Any]) -> None:
        timeout = self.rpc_timeout
        if self._end is not None:
            remaining = self._end - time.monotonic()
            if remaining <= 0:
                # DeadlineExceeded, not UNAVAILABLE: the client's stream-restart loop
                # retries UNAVAILABLE forever, but lets this one through.
                raise gexc.DeadlineExceeded(f"no result within {self._seconds:g}s")
            timeout = min(timeout, remaining)
        if kwargs.get("timeout", gapic_v1.method.DEFAULT) is gapic_v1.method.DEFAULT:
            kwargs["timeout"] = timeout
        if kwargs.get("retry", gapic_v1.method.DEFAULT) is gapic_v1.method.DEFAULT:
            kwargs["retry"] = gretry.Retry(
                predicate=gretry.if_exception_type(gexc.ServiceUnavailable, gexc.ResourceExhausted),
                initial=0.1,
                maximum=1.0,
                multiplier=2.0,
                timeout=min(self.retry_seconds, timeout),
            )


class Guarded:
    """A GAPIC client whose RPC methods (those taking `retry` and `timeout`) get the
    budget's defaults; everything else is forwarded as is."""

    _rpc_names: dict[tuple[type, str], bool] = {}  # noqa: RUF012 (a shared cache)

    def __init__(self, api: Any, budget: Budget) -> None:
        self._api = api
        self._budget = budget

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._api, name)
        if name.startswith("_") or not callable(attr) or not self._is_rpc(name, attr):
            return attr
        budget = self._budget

        def call(*args: Any, **kwargs: Any) -> Any:
            budget.apply(kwargs)
            return attr(*args, **kwargs)

        return call

    def _is_rpc(self, name: str, attr: Any) -> bool:
        key = (type(self._api), name)
        known = self._rpc_names.get(key)
        if known is None:
            try:
                params = inspect.signature(attr).parameters
            except (TypeError, ValueError):
                params = {}
            known = self._rpc_names[key] = "retry" in params and "timeout" in params
        return known


class BudgetedClient(Client):
    """The official client, with this store's budget on both admin APIs."""

    def __init__(self, *, budget: Budget, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fleet_budget = budget

    @property
    def instance_admin_api(self) -> Any:
        return Guarded(super().instance_admin_api, self._fleet_budget)

    @property
    def database_admin_api(self) -> Any:
        return Guarded(super().database_admin_api, self._fleet_budget)


class BudgetedDatabase(Database):
    """The official database, with this store's budget on the data API (sessions,
    queries, commits)."""

    def __init__(self, database_id: str, instance: Any, *, budget: Budget) -> None:
        super().__init__(database_id, instance)
        self._fleet_budget = budget

    @property
    def spanner_api(self) -> Any:
        return Guarded(super().spanner_api, self._fleet_budget)
