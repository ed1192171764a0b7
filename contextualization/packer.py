"""``ivfarm context pack``: a ``#multiple-config`` file + part-handlers -> one MIME user-data file.

The archive holds, in order: each handler as an embedded ``text/part-handler`` part (cloud-init
registers a handler when it meets it, so handlers come first), each config section as a
``text/<section>-config`` part, then the extra parts. It is gzipped only when that is what
makes it fit EC2's 16 KB user-data limit.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contextualization.errors import ContextError
from contextualization.files import read_bytes, read_text
from contextualization.handler_files import HandlerFile, load_handler
from contextualization.mime import Part, build_archive, fit_user_data, infer_type, parse_archive
from contextualization.multiconfig import parse_multiple_config, section_yaml

PART_HANDLER_TYPE = "text/part-handler"
INCLUDE_TYPES = ("text/x-include-url", "text/x-include-once-url")
_TYPE_SUFFIX = re.compile(r"^(text|application)/[a-z0-9][a-z0-9.+_-]*$", re.IGNORECASE)


@dataclass(frozen=True)
class PartSpec:
    """An extra part asked for on the command line: ``FILE[:TYPE]``."""

    path: Path
    content_type: str | None = None


@dataclass(frozen=True)
class Packed:
    """The result of packing: the user-data bytes and how they were made."""

    data: bytes
    parts: tuple[Part, ...]
    plain_size: int
    gzipped: bool


def parse_part_spec(spec: str) -> PartSpec:
    """Split ``FILE[:TYPE]`` (TYPE is text/* or application/*; a file named ``spec`` wins)."""
    path, sep, suffix = spec.rpartition(":")
    if sep and path and _TYPE_SUFFIX.match(suffix) and not Path(spec).exists():
        return PartSpec(Path(path), suffix.lower())
    return PartSpec(Path(spec))


def section_parts(sections: dict[str, dict]) -> list[Part]:
    """One ``text/<name>-config`` part per section, named ``<name>-config.ccfg``."""
    return [Part(f"text/{name}-config", f"{name}-config.ccfg",
                 section_yaml(name, body).encode("utf-8"))
            for name, body in sections.items()]


def _check_claims(sections: dict[str, dict], handlers: list[HandlerFile]) -> None:
    owner: dict[str, Path] = {}
    for handler in handlers:
        for content_type in handler.types:
            if content_type in owner:
                raise ContextError(f"{owner[content_type]} and {handler.path} both claim "
                                   f"{content_type}")
            owner[content_type] = handler.path
    unclaimed = [name for name in sections if f"text/{name}-config" not in owner]
    if unclaimed:
        names = ", ".join(repr(name) for name in unclaimed)
        raise ContextError(f"no handler claims section {names}: add a --handler whose "
                           f"list_types() returns text/<section>-config")


def extra_part(spec: PartSpec) -> Part:
    """The part for ``--part FILE[:TYPE]``, its type inferred from the first line if omitted."""
    payload = read_bytes(spec.path, "part")
    if spec.content_type in INCLUDE_TYPES or payload.lstrip().lower().startswith(b"#include"):
        raise ContextError(f"{spec.path}: #include parts fetch URLs at boot; the archive must "
                           "be self-contained, so embed the content instead")
    if spec.content_type == PART_HANDLER_TYPE:
        raise ContextError(f"{spec.path}: pass part-handlers with --handler, not --part")
    content_type = spec.content_type or infer_type(payload)
    if content_type is None:
        raise ContextError(f"cannot tell the type of part {spec.path} from its first line; "
                           f"give it as {spec.path}:TYPE (e.g. text/cloud-config)")
    return Part(content_type, spec.path.name, payload)


def pack(config: Path, handlers: Sequence[Path], extras: Sequence[PartSpec] = (),
         boundary: str | None = None) -> Packed:
    """Build the user-data archive for ``config`` with its part-handlers and extra parts."""
    sections = parse_multiple_config(read_text(config, "config"), str(config))
    loaded = [load_handler(Path(path)) for path in handlers]
    _check_claims(sections, loaded)
    parts = [Part(PART_HANDLER_TYPE, handler.path.name, handler.source.encode("utf-8"))
             for handler in loaded]
    parts += section_parts(sections) + [extra_part(spec) for spec in extras]
    archive = build_archive(parts, boundary)
    data, gzipped = fit_user_data(archive)
    return Packed(data, tuple(parts), len(archive), gzipped)


def unpack(data: bytes) -> list[Part]:
    """The parts of a packed (plain or gzipped) user-data file."""
    return parse_archive(data)
