"""Part-handler files as they go into an archive: bundled to stand alone, loaded to ask their types.

An import statement whose first line ends in ``# ivfarm: inline`` (``from M import a, b``) is
replaced by the source of module ``M``, so a handler that shares ivfarm's guest runtime still
ships as one self-contained Python file.
"""
from __future__ import annotations

import ast
import importlib.abc
import importlib.util
import itertools
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from contextualization.errors import ContextError
from contextualization.files import read_text

INLINE_MARK = re.compile(r"#\s*ivfarm:\s*inline\s*$")
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9.+_-]*/[a-z0-9][a-z0-9.+_-]*$")
_serial = itertools.count()


@dataclass(frozen=True)
class HandlerFile:
    """A part-handler ready to embed: its shipped source and the content types it claims."""

    path: Path
    source: str
    types: tuple[str, ...]


def _syntax_tree(source: str, path: Path) -> ast.Module:
    try:
        return ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise ContextError(f"{path}:{exc.lineno}: not valid Python: {exc.msg}") from exc


def _module_source(module: str, path: Path) -> str:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise ContextError(f"{path}: cannot inline {module}: {exc}") from exc
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ContextError(f"{path}: cannot inline {module}: no Python source found")
    return Path(spec.origin).read_text(encoding="utf-8")


def bundle(source: str, path: Path) -> str:
    """Return ``source`` with each ``# ivfarm: inline`` import replaced by the module's text."""
    lines = source.splitlines()
    for node in reversed(_syntax_tree(source, path).body):
        if not isinstance(node, ast.ImportFrom) or not INLINE_MARK.search(lines[node.lineno - 1]):
            continue
        if node.level or not node.module:
            raise ContextError(f"{path}:{node.lineno}: only absolute imports can be inlined")
        inlined = _module_source(node.module, path).splitlines()
        lines[node.lineno - 1:node.end_lineno] = (
            [f"# ---- inlined from {node.module} ----"] + inlined
            + [f"# ---- end of {node.module} ----"]
        )
    return "\n".join(lines) + "\n"


class _TextLoader(importlib.abc.SourceLoader):
    """Loads a module from source text in memory (the bundled handler, exactly as shipped)."""

    def __init__(self, path: Path, source: str) -> None:
        self._path = str(path)
        self._source = source.encode("utf-8")

    def get_filename(self, fullname: str) -> str:
        return self._path

    def get_data(self, path: str) -> bytes:
        return self._source


def _load(path: Path, source: str) -> ModuleType:
    name = f"_ivfarm_part_handler_{next(_serial)}"
    loader = _TextLoader(path, source)
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None  # always a spec when a loader is given
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # some modules (dataclasses) look themselves up while loading
    try:
        loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        raise ContextError(f"{path}: the handler fails to load: {type(exc).__name__}: {exc}") from exc
    finally:
        del sys.modules[name]
    return module


def _claimed_types(module: ModuleType, path: Path) -> tuple[str, ...]:
    if not callable(getattr(module, "list_types", None)) or not callable(
            getattr(module, "handle_part", None)):
        raise ContextError(f"{path}: not a cloud-init part-handler "
                           "(needs module-level list_types() and handle_part())")
    try:
        types = module.list_types()
    except Exception as exc:
        raise ContextError(f"{path}: list_types() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(types, (list, tuple)) or not all(
            isinstance(item, str) and _CONTENT_TYPE.match(item) for item in types):
        raise ContextError(f"{path}: list_types() must return lower-case content types, "
                           f"got {types!r}")
    return tuple(types)


def load_handler(path: Path) -> HandlerFile:
    """Read, bundle and load a part-handler file; ask it which content types it claims."""
    shipped = bundle(read_text(path, "handler"), path)
    _syntax_tree(shipped, path)
    return HandlerFile(path, shipped, _claimed_types(_load(path, shipped), path))
