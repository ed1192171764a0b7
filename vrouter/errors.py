"""Errors raised by the virtual router package (it never imports ivfarm; ivfarm wraps these)."""
from __future__ import annotations


class RouterError(Exception):
    """A router could not be created, changed, pushed or removed; the message says what and why."""


class SpecError(RouterError, ValueError):
    """A RouterSpec (or one of its parts) is malformed or inconsistent."""


class HostKeyError(RouterError):
    """The router's SSH host key is unknown or does not match the pinned key (never retried)."""
