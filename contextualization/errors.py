"""The one error type the contextualization package raises."""
from __future__ import annotations


class ContextError(ValueError):
    """A seed, metadata or user-data input is wrong; the message says what and where."""
