"""Action name -> handler. Handler modules register themselves with ``@action("Name")``."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ivfarm.ec2.context import RequestContext
from ivfarm.ec2.params import Params

Handler = Callable[[RequestContext, Params], dict[str, Any]]
ACTIONS: dict[str, Handler] = {}


def action(name: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of EC2 action ``name``."""

    def register(func: Handler) -> Handler:
        if name in ACTIONS:
            raise ValueError(f"EC2 action {name} registered twice")
        ACTIONS[name] = func
        return func

    return register
