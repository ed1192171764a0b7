"""Query parameters: ``Name``, lists ``Name.N`` and structures ``Name.N.Member`` with typed reads.

Lists are read as AWS reads them: indexes may start at 0 or any other number and are ordered
numerically (``Filter.0.Value.0`` included), and a list given as plain ``Name=value`` (as Libcloud
sends ``KeyName``) is the one-item list ``Name.1``.

Handlers read every parameter they accept, then call ``done()``: any parameter nobody read is an
``UnknownParameter`` error, so a typo never passes silently and nothing is changed before the
whole request has been checked.
"""
from __future__ import annotations

import re
import urllib.parse

from ivfarm.ec2.errors import Ec2Error, echo, invalid_value, missing

_INDEX = re.compile(r"0|[1-9][0-9]{0,5}")
_INTEGER = re.compile(r"-?[0-9]{1,19}")
MAX_LIST = 1000


def parse_query(raw: str) -> dict[str, str]:
    """Form or query-string parameters; a repeated name is an error."""
    try:
        pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise Ec2Error("InvalidParameterValue", "The request parameters are not valid UTF-8 form data") from exc
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise Ec2Error("InvalidParameterValue", f"The parameter {echo(name)} is given more than once")
        if "\x00" in name or "\x00" in value:
            raise Ec2Error("InvalidParameterValue", f"The parameter {echo(name)} contains a NUL character")
        params[name] = value
    return params


class Params:
    """A view of the request parameters under ``prefix``; every read is recorded on the root."""

    def __init__(self, flat: dict[str, str], prefix: str = "", used: set[str] | None = None) -> None:
        self._flat = flat
        self._prefix = prefix
        self._used: set[str] = set() if used is None else used

    def _key(self, name: str) -> str:
        return self._prefix + name

    def has(self, name: str) -> bool:
        """True when ``name`` (or a list or structure under it) was sent."""
        key = self._key(name)
        dotted = key + "."
        return key in self._flat or any(k.startswith(dotted) for k in self._flat)

    def string(self, name: str, required: bool = False, max_length: int | None = None) -> str | None:
        """A plain value; None when absent (MissingParameter when required)."""
        key = self._key(name)
        value = self._flat.get(key)
        self._used.add(key)
        if value is None:
            if required:
                raise missing(key)
            return None
        if max_length is not None and len(value) > max_length:
            raise invalid_value(key, value, f"longer than {max_length} characters")
        return value

    def required(self, name: str, max_length: int | None = None) -> str:
        """A value that must be present and not empty."""
        value = self.string(name, True, max_length)
        if not value:
            raise missing(self._key(name))
        return value

    def integer(self, name: str, minimum: int | None = None, maximum: int | None = None) -> int | None:
        """A decimal integer within ``[minimum, maximum]``, or None when absent."""
        raw = self.string(name)
        return None if raw is None else self._to_int(name, raw, minimum, maximum)

    def required_integer(self, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
        """A decimal integer that must be present."""
        return self._to_int(name, self.required(name), minimum, maximum)

    def _to_int(self, name: str, raw: str, minimum: int | None, maximum: int | None) -> int:
        if not _INTEGER.fullmatch(raw):
            raise invalid_value(self._key(name), raw, "not an integer")
        value = int(raw)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            low = "" if minimum is None else f" at least {minimum}"
            high = "" if maximum is None else f" at most {maximum}"
            raise invalid_value(self._key(name), raw, f"must be{low}{' and' if low and high else ''}{high}")
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        """``true`` or ``false`` (any case)."""
        raw = self.string(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered not in ("true", "false"):
            raise invalid_value(self._key(name), raw, "expected true or false")
        return lowered == "true"

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
        """One of ``choices``."""
        value = self.string(name)
        if value is None:
            return default
        if value not in choices:
            raise invalid_value(self._key(name), value, f"expected one of {', '.join(choices)}")
        return value

    def _indexed(self, name: str) -> dict[int, str]:
        """``{N: rest}`` for every key ``name.N[.rest]`` under this view."""
        dotted = self._key(name) + "."
        found: dict[int, str] = {}
        for key in self._flat:
            if not key.startswith(dotted):
                continue
            index, _, rest = key[len(dotted):].partition(".")
            if not _INDEX.fullmatch(index):
                raise Ec2Error("UnknownParameter", f"The parameter {echo(key)} is not recognized")
            found.setdefault(int(index), rest)
        if len(found) > MAX_LIST:
            raise invalid_value(self._key(name), f"{len(found)} items", f"at most {MAX_LIST} are allowed")
        return found

    def strings(self, name: str, max_length: int | None = None) -> list[str]:
        """The list ``name.N`` in index order (plain ``name`` alone: a list of that one value)."""
        indexed = self._indexed(name)
        if self._key(name) in self._flat:
            if indexed:
                raise Ec2Error("InvalidParameterValue",
                               f"The list {echo(self._key(name))} is given both with and without an index")
            return [self.string(name, max_length=max_length) or ""]
        values = []
        for index, rest in sorted(indexed.items()):
            key = f"{self._key(name)}.{index}"
            if rest:
                raise Ec2Error("UnknownParameter", f"The parameter {echo(key + '.' + rest)} is not recognized")
            values.append(self.string(f"{name}.{index}", max_length=max_length) or "")
        return values

    def single(self, name: str, max_length: int | None = None) -> str:
        """A required value sent plain or as a one-item list (boto 2 sends GetConsoleOutput's ``InstanceId.1``)."""
        values = self.strings(name, max_length)
        if len(values) > 1:
            raise invalid_value(self._key(name), f"{len(values)} values", "exactly one is expected")
        if not values or not values[0]:
            raise missing(self._key(name))
        return values[0]

    def structs(self, name: str) -> list[Params]:
        """The structures ``name.N.*`` in index order, each a view to read members from."""
        return [Params(self._flat, f"{self._key(name)}.{index}.", self._used)
                for index in sorted(self._indexed(name))]

    def struct(self, name: str) -> Params:
        """The members ``name.*`` of one structure (absent members read as None)."""
        return Params(self._flat, f"{self._key(name)}.", self._used)

    def done(self) -> None:
        """Raise UnknownParameter for the first parameter no read asked for."""
        for key in self._flat:
            if key not in self._used:
                raise Ec2Error("UnknownParameter", f"The parameter {echo(key)} is not recognized")
