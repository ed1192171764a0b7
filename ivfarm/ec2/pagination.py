"""``MaxResults`` / ``NextToken`` for the Describe calls AWS paginates.

A token is the sort key of the last item returned (base64 JSON), so a page never repeats or skips
an item when others are added or removed in between.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ivfarm.ec2.errors import Ec2Error, combination
from ivfarm.ec2.params import Params

T = TypeVar("T")
Key = Callable[[Any], tuple[str, ...]]


@dataclass(frozen=True)
class Page:
    """What a request asked for: at most ``limit`` items after ``after``."""

    limit: int | None
    after: tuple[str, ...] | None


def _bad_token() -> Ec2Error:
    return Ec2Error("InvalidPaginationToken", "The specified pagination token is not valid or is expired.")


def decode(token: str) -> tuple[str, ...]:
    """The sort key inside a token."""
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, UnicodeEncodeError, binascii.Error) as exc:
        raise _bad_token() from exc
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _bad_token()
    return tuple(value)


def encode(key: tuple[str, ...]) -> str:
    """A token for the item with sort key ``key``."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode("ascii")


def read_page(params: Params, minimum: int, maximum: int, exclusive: Sequence[str] = ()) -> Page:
    """``MaxResults`` within ``[minimum, maximum]`` and ``NextToken``; not with ``exclusive`` lists."""
    limit = params.integer("MaxResults", minimum=minimum, maximum=maximum)
    token = params.string("NextToken", max_length=4096)
    if limit is not None:
        for name in exclusive:
            if params.has(name):
                raise combination(f"The parameter {name} cannot be used with the parameter MaxResults")
    return Page(limit, decode(token) if token else None)


def paginate(items: Sequence[T], key: Key, page: Page) -> tuple[list[T], str | None]:
    """The items of this page (in ``key`` order) and the token of the next page, if any."""
    ordered = sorted(items, key=key)
    if page.after is not None:
        ordered = [item for item in ordered if key(item) > page.after]
    if page.limit is None or len(ordered) <= page.limit:
        return ordered, None
    chosen = ordered[: page.limit]
    return chosen, encode(key(chosen[-1]))
