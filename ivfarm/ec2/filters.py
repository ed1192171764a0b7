"""``Filter.N.Name`` / ``Filter.N.Value.M``: parsing, wildcards (``*``, ``?``, ``\\`` escapes), matching.

Values of one filter are alternatives; all filters must match. ``tag:KEY``, ``tag-key`` and
``tag-value`` work on every resource with tags.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ivfarm.ec2.errors import Ec2Error, echo
from ivfarm.ec2.params import Params
from ivfarm.ec2.wildcards import Matcher, compile_wildcards

MAX_FILTERS = 50
MAX_VALUES = 200  # per filter
MAX_TOTAL_VALUES = 1000  # over all filters of one request
MAX_VALUE_LENGTH = 1024

Extractor = Callable[[Any], Iterable[str | None]]


@dataclass(frozen=True)
class Filter:
    """One filter: a name and the matchers of its values."""

    name: str
    matchers: tuple[Matcher, ...]

    def accepts(self, candidates: Iterable[str | None]) -> bool:
        return any(c is not None and m(c) for c in candidates for m in self.matchers)


class FilterSet:
    """The filters of one request, checked against a resource's extractors."""

    def __init__(self, filters: list[Filter], extractors: Mapping[str, Extractor]) -> None:
        self.filters = filters
        self.extractors = extractors

    def __bool__(self) -> bool:
        return bool(self.filters)

    def match(self, resource: Any, tags: Mapping[str, str] | None = None) -> bool:
        """True when ``resource`` (with its ``tags``) passes every filter."""
        tags = tags or {}
        for flt in self.filters:
            name = flt.name
            if name.startswith("tag:"):
                key = name[4:]
                candidates: Iterable[str | None] = (tags[key],) if key in tags else ()
            elif name == "tag-key":
                candidates = tags.keys()
            elif name == "tag-value":
                candidates = tags.values()
            else:
                candidates = self.extractors[name](resource)
            if not flt.accepts(candidates):
                return False
        return True


def too_many(message: str) -> Ec2Error:
    """FilterLimitExceeded, as AWS answers too many filters or filter values."""
    return Ec2Error("FilterLimitExceeded", message)


def parse_filters(params: Params, extractors: Mapping[str, Extractor], tags: bool = True) -> FilterSet:
    """Read ``Filter.N`` and check every name is one this resource knows."""
    filters = []
    structs = params.structs("Filter")
    if len(structs) > MAX_FILTERS:
        raise too_many(f"At most {MAX_FILTERS} filters are allowed")
    total = 0
    for struct in structs:
        name = struct.required("Name", max_length=255)
        values = struct.strings("Value", max_length=MAX_VALUE_LENGTH)
        total += len(values)
        known = name in extractors or (tags and (name in ("tag-key", "tag-value") or
                                                  (name.startswith("tag:") and len(name) > 4)))
        if not known:
            raise Ec2Error("InvalidParameterValue", f"The filter '{echo(name)}' is invalid")
        if not values:
            raise Ec2Error("InvalidParameterValue", f"The filter '{echo(name)}' has no values")
        if len(values) > MAX_VALUES:
            raise too_many(f"The filter '{echo(name)}' has more than {MAX_VALUES} values")
        if total > MAX_TOTAL_VALUES:
            raise too_many(f"At most {MAX_TOTAL_VALUES} filter values are allowed in one request")
        filters.append(Filter(name, tuple(compile_wildcards(v) for v in values)))
    return FilterSet(filters, extractors)
