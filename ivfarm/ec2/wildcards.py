"""EC2 filter wildcards without backtracking: ``*`` any run, ``?`` one character, ``\\`` escapes.

A value is cut at its unescaped ``*`` into segments of fixed length (literal characters and
``?``). The first segment must match at the start of the text, the last at its end, and the
middle ones are found left to right, each at its earliest place after the previous one (for a
glob the earliest place is always a right one). A segment is a regular expression without
repetition, so nothing can make it backtrack: a match costs at most text length x value length.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

Matcher = Callable[[str], bool]
WILDCARDS = "*?\\"


@dataclass(frozen=True)
class _Segment:
    """A fixed-length piece of a value between two ``*``."""

    pattern: re.Pattern[str]
    length: int


def _segments(value: str) -> list[_Segment]:
    pieces: list[list[str]] = [[]]
    escaped = False
    for char in value:
        if escaped:
            pieces[-1].append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "*":
            pieces.append([])
        else:
            pieces[-1].append("." if char == "?" else re.escape(char))
    if escaped:  # a trailing backslash stands for itself
        pieces[-1].append(re.escape("\\"))
    return [_Segment(re.compile("".join(p), re.DOTALL), len(p)) for p in pieces]


def compile_wildcards(value: str) -> Matcher:
    """A function telling whether a whole text matches the filter value."""
    if not any(c in value for c in WILDCARDS):
        return value.__eq__
    segments = _segments(value)
    if len(segments) == 1:
        only = segments[0].pattern
        return lambda text: only.fullmatch(text) is not None
    first, *middle, last = segments
    needed = sum(s.length for s in segments)

    def match(text: str) -> bool:
        end = len(text) - last.length
        if len(text) < needed or first.pattern.match(text) is None or last.pattern.fullmatch(text, end) is None:
            return False
        position = first.length
        for segment in middle:
            found = segment.pattern.search(text, position, end)
            if found is None:
                return False
            position = found.end()
        return True

    return match
