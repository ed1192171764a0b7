"""The object every command receives: the configuration, and the cloud built on first use."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ivfarm.cloud import Cloud
from ivfarm.config import Config, load_config

F = TypeVar("F", bound=Callable[..., Any])


class AppContext:
    """Lazily loads the configuration and connects the store."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._cloud: Cloud | None = None

    @functools.cached_property
    def config(self) -> Config:
        return load_config(self.config_path)

    def cloud(self, require_store: bool = True) -> Cloud:
        """The cloud; with ``require_store`` it refuses to run before ``ivfarm init``."""
        if self._cloud is None:
            self._cloud = Cloud(self.config)
        if require_store:
            self._cloud.store.require_initialised()
        return self._cloud


def pass_cloud(func: F) -> F:
    """Give the command the initialised cloud as its first argument."""

    @click.pass_obj
    @functools.wraps(func)
    def wrapper(app: AppContext, *args: Any, **kwargs: Any) -> Any:
        return func(app.cloud(), *args, **kwargs)

    return wrapper  # type: ignore[return-value]
