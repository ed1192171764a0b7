"""The INFN ``#multiple-config`` format: one YAML mapping, one top-level key per part-handler."""
from __future__ import annotations

import re

import yaml
from yaml.constructor import ConstructorError

from contextualization.errors import ContextError

HEADER = "#multiple-config"
_SECTION_NAME = re.compile(r"^[a-z0-9][a-z0-9.+_-]*$")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable: the base class reports it
                break
            if duplicate:
                raise ConstructorError("while constructing a mapping", node.start_mark,
                                       f"found duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _yaml_error(source: str, exc: yaml.YAMLError) -> ContextError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    problem = getattr(exc, "problem", None) or str(exc)
    return ContextError(f"{where}: YAML error: {' '.join(str(problem).split())}")


def _load(text: str, source: str) -> tuple[object, dict[str, int]]:
    """Return the document and the line of each top-level key (by the key's text)."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from exc
    except RecursionError as exc:
        raise ContextError(f"{source}: YAML nested too deeply") from exc
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode) and isinstance(document, dict):
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                lines.setdefault(key_node.value, key_node.start_mark.line + 1)
    return document, lines


def parse_multiple_config(text: str, source: str = "<config>") -> dict[str, dict]:
    """Parse a ``#multiple-config`` document into {section name: section mapping}."""
    text = text.removeprefix("\ufeff")
    first = text.split("\n", 1)[0].strip()
    if first != HEADER:
        raise ContextError(f"{source}:1: the first line must be {HEADER!r}, found {first[:40]!r}")
    document, lines = _load(text, source)
    if document is None:
        raise ContextError(f"{source}: no sections (expected e.g. 'localfs:' and 'cvmfs:')")
    if not isinstance(document, dict):
        raise ContextError(f"{source}: the top level must be a mapping of sections, "
                           f"found a {type(document).__name__}")
    sections: dict[str, dict] = {}
    for name, body in document.items():
        where = f"{source}:{lines[str(name)]}" if str(name) in lines else source
        if not isinstance(name, str) or not _SECTION_NAME.match(name):
            raise ContextError(f"{where}: section name {name!r} must be lower-case letters, "
                               "digits and . + _ - (it becomes text/<name>-config)")
        if not isinstance(body, dict):
            found = "nothing" if body is None else f"a {type(body).__name__}"
            raise ContextError(f"{where}: section {name!r} must be a mapping, found {found}")
        sections[name] = body
    return sections


def section_yaml(name: str, body: dict) -> str:
    """The text of a section's part: the section as YAML, its name as the top-level key."""
    return yaml.safe_dump({name: body}, default_flow_style=False, sort_keys=False,
                          allow_unicode=True)
