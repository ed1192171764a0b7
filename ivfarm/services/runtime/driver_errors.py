"""Driver errors become ivfarm's own: one table, applied at the edge of every driver a cloud holds."""
from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from drivers import errors as driver
from ivfarm import errors

T = TypeVar("T")

# Most specific first: the first entry the error is an instance of decides.
_TABLE: tuple[tuple[type[driver.DriverError], type[errors.IvfarmError]], ...] = (
    (driver.HostUnreachable, errors.HostUnreachable),
    (driver.HypervisorError, errors.HypervisorError),
    (driver.StorageError, errors.HypervisorError),
    (driver.CacheError, errors.HypervisorError),
    (driver.NetworkError, errors.NetworkError),
    (driver.DriverConfigError, errors.ConfigError),
    (driver.InvalidArgument, errors.InvalidInput),
)


def translate(exc: driver.DriverError) -> errors.IvfarmError:
    """The ivfarm error that reports ``exc`` to a user."""
    for source, target in _TABLE:
        if isinstance(exc, source):
            return target(str(exc))
    return errors.IvfarmError(str(exc))


@contextmanager
def driver_calls() -> Iterator[None]:
    """Run the body with driver errors raised as ivfarm errors."""
    try:
        yield
    except driver.DriverError as exc:
        raise translate(exc) from exc


class _Translated:
    """Forwards every attribute to the driver; its methods raise ivfarm errors."""

    def __init__(self, target: object) -> None:
        self._target = target

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() sees the driver's own class
        return type(self._target)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            with driver_calls():
                return value(*args, **kwargs)

        return call


def translated(target: T) -> T:
    """``target`` as services see it: the same interface, with ivfarm's errors."""
    return cast(T, _Translated(target))

