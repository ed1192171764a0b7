"""Durations on the command line: digits with units, largest first (``90s``, ``30m``, ``2h``, ``1h30m``, ``1d``)."""
from __future__ import annotations

import re

import click

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNITS = (86400, 3600, 60, 1)


def parse_duration(text: str) -> int:
    """Seconds in ``text``; ValueError with a one-line explanation when it is not a duration above zero."""
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration: use digits with units d, h, m, s, e.g. 90s, 30m, 2h or 1h30m")
    seconds = sum(int(part) * unit for part, unit in zip(match.groups(), _UNITS, strict=True) if part)
    if seconds <= 0:
        raise ValueError(f"{text!r} is no time at all: the grace must be above zero")
    return seconds


class Duration(click.ParamType):
    """A click option type giving seconds."""

    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()
