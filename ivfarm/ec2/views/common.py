"""Pieces several views share: tag sets and instance states."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# EC2's state codes; ivfarm's transient ``rebooting`` is ``running`` to EC2 clients.
STATE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}


def ec2_state(state: str) -> str:
    """The EC2 name of an ivfarm instance state."""
    return state if state in STATE_CODES else "running"


def state_tree(state: str) -> dict[str, Any]:
    """``<code/><name/>`` of an instance state."""
    name = ec2_state(state)
    return {"code": STATE_CODES[name], "name": name}


def tag_set(tags: Mapping[str, str] | None) -> list[dict[str, str]]:
    """``tagSet`` items sorted by key."""
    return [{"key": key, "value": tags[key]} for key in sorted(tags)] if tags else []
