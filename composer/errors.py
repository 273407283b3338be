"""The failures the pipeline distinguishes, each mapped to one CLI exit code.

ConfigError is per customer (exit 1, the rest of the fleet still publishes);
StoreError and TargetError stop the run before anything is changed (exit 3).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigError:
    """One invalid value, located precisely enough to fix it from one line."""

    customer_id: str
    integration_id: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"customer {self.customer_id}"
        if self.integration_id:
            where += f", integration {self.integration_id}"
        return f"{where}, field {self.field}: {self.message}"


class InvalidConfig(Exception):
    """Raised inside composition; carries the ConfigError it stands for."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error


def one_line(text: str) -> str:
    """Error text on one line: a value's control characters are shown escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def invalid(
    customer_id: str, integration_id: str | None, field: str, message: str
) -> InvalidConfig:
    """The exception for one bad value; keys and values from the store may hold newlines."""
    return InvalidConfig(
        ConfigError(customer_id, integration_id, one_line(field), one_line(message))
    )


class StoreError(Exception):
    """The store could not be reached or read: nothing may change in the target."""


class TargetError(Exception):
    """The target could not be read or written."""


class BadUrl(Exception):
    """A store or target URL that cannot be parsed: a usage error (exit 2)."""


class StoreUrlError(StoreError, BadUrl):
    """A malformed or unsupported store URL."""


class TargetUrlError(TargetError, BadUrl):
    """A malformed or unsupported target URL."""


class PruneRefused(TargetError):
    """The plan would delete too much of the fleet; applying needs --force-prune."""


class BuildFailed(Exception):
    """Building stopped for a reason no customer's config explains (a build worker died):
    nothing was written."""


class SettingsError(Exception):
    """templates/fleet.yaml or a template file is invalid: no customer can be generated."""
