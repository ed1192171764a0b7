"""ivfarm configuration: one YAML file, every key with a sane default.

Lookup order for the file: ``--config``, else ``$IVFARM_CONFIG``, else ``/etc/ivfarm/ivfarm.yaml``
(a missing default file is fine; a missing explicit file is an error). ``$IVFARM_DATABASE``
overrides ``database``. The keys, their types and defaults are the schema in
:mod:`ivfarm.config_schema`: an unknown key or a value of the wrong type is a ``ConfigError``
naming the key and the file, never a silent default.
"""
from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ivfarm.config_schema import Settings, section_keys
from ivfarm.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/ivfarm/ivfarm.yaml")

# The built-in tree, as plain Python values (see ivfarm.config_schema for what each key means).
DEFAULTS: dict[str, Any] = Settings().model_dump()

SECRET_KEY = re.compile(r"password|passwd|secret|token|credential|ssh_key|private_key", re.IGNORECASE)
MASK = "***"


class ConfigInvalid(ConfigError):
    """The configuration does not match the schema; ``problems`` holds one line per wrong key."""

    def __init__(self, origin: str, problems: list[str]) -> None:
        super().__init__("\n".join(f"{origin}: {problem}" for problem in problems))
        self.origin = origin
        self.problems = problems


def mask_url(url: str) -> str:
    """``url`` with the password of its user part replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.partition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:{MASK}@{host}"


def _shown(key: str, value: Any) -> str:
    if value is not None and SECRET_KEY.search(key):
        return MASK
    if key == "database" and isinstance(value, str):
        value = mask_url(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


_EXPECTED = {
    "int_type": "an integer", "float_type": "a number", "string_type": "a string", "bool_type": "a boolean",
    "list_type": "a list", "model_type": "a mapping", "dict_type": "a mapping", "model_attributes_type": "a mapping",
}


def describe(error: ErrorDetails) -> str:
    """One line for one schema violation: the dotted key, what was expected, what was found."""
    loc = error["loc"]
    path = ".".join(str(part) for part in loc) or "(top level)"
    key, value, kind = str(loc[-1]) if loc else "", error.get("input"), error["type"]
    if kind == "extra_forbidden":
        known = section_keys(loc[:-1]) or []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"known keys here: {', '.join(known)}"
        return f"{path}: unknown key ({hint})"
    if kind in _EXPECTED:
        found = "null" if value is None else f"{_kind(value)} {_shown(key, value)}"
        return f"{path}: expected {_EXPECTED[kind]}, got {found}"
    if kind == "literal_error":
        allowed = str(error.get("ctx", {}).get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"{path}: expected one of {allowed}, got {_shown(key, value)}"
    if kind in ("too_short", "too_long"):
        ctx = error.get("ctx", {})
        bound = f"at least {ctx.get('min_length')}" if kind == "too_short" else f"at most {ctx.get('max_length')}"
        return f"{path}: expected a list of {bound} items, got {ctx.get('actual_length')}: {_shown(key, value)}"
    message = re.sub(r"^(Input|String|List|Value) should", "must", error["msg"])
    if kind.startswith("check_"):
        return f"{path}: {message}"
    return f"{path}: {message}, got {_shown(key, value)}"


def validate(data: Any, origin: str) -> Settings:
    """The typed settings for a configuration tree; ``ConfigInvalid`` lists every problem."""
    if not isinstance(data, dict):
        raise ConfigInvalid(origin, ["the configuration must be a mapping"])
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigInvalid(origin, [describe(error) for error in exc.errors(include_url=False)]) from None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def masked(tree: Any, key: str = "") -> Any:
    """A copy of a configuration tree fit to show: secrets as ``***``, database passwords hidden."""
    if isinstance(tree, dict):
        return {k: masked(v, str(k)) for k, v in tree.items()}
    if tree is not None and SECRET_KEY.search(key):
        return MASK
    if key == "database" and isinstance(tree, str):
        return mask_url(tree)
    if key == "fence_command" and isinstance(tree, str):
        # IPMI and similar fence agents take the password on the command line
        return re.sub(r"(-P\s+|--password[=\s]+|password=)\S+", rf"\g<1>{MASK}", tree)
    return copy.deepcopy(tree)


@dataclass
class Config:
    """Resolved configuration; ``data`` holds the merged tree, the properties the common keys.

    ``data`` is validated against the schema when the object is made (and normalised: paths given
    as ``Path`` become strings); ``settings`` is the same tree as typed models.
    """

    data: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULTS))
    source: Path | None = None

    def __post_init__(self) -> None:
        self.data = validate(self.data, self.origin).model_dump()

    @property
    def origin(self) -> str:
        """Where the configuration came from, for messages."""
        return str(self.source) if self.source else "configuration"

    @property
    def settings(self) -> Settings:
        """The configuration as typed models (validated again, so edits of ``data`` are seen)."""
        return validate(self.data, self.origin)

    def get(self, dotted: str) -> Any:
        """Return the value at a dotted path such as ``network.public.cidr``."""
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"unknown configuration key: {dotted}")
            node = node[part]
        return node

    @property
    def state_dir(self) -> Path:
        return Path(self.data["state_dir"])

    @property
    def database_url(self) -> str:
        url = os.environ.get("IVFARM_DATABASE") or self.data.get("database")
        return url or f"sqlite:///{self.state_dir / 'ivfarm.db'}"

    @property
    def secret_key_file(self) -> Path:
        """The key farm secret keys are sealed with in the store (outside the database)."""
        return Path(self.data.get("secret_key_file") or self.state_dir / "secret.key")

    @property
    def image_dir(self) -> Path:
        return self.state_dir / "images"

    def zone_for(self, host_class: str) -> str:
        """The EC2 availability zone that stands for a hypervisor class."""
        configured = self.data["ec2"]["zones"].get(host_class)
        return configured or f"{self.data['ec2']['region']}-{host_class}"

    def effective(self) -> dict[str, Any]:
        """The tree in use, with ``database`` the URL actually used; secrets masked."""
        return masked({**self.data, "database": self.database_url})


def build_config(overrides: dict[str, Any] | None = None, source: Path | None = None) -> Config:
    """A configuration from the defaults and ``overrides`` only (no file is read).

    ``overrides`` may be partial: nested mappings are merged into the defaults key by key.
    """
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigInvalid(str(source) if source else "configuration", ["the configuration must be a mapping"])
    return Config(_merge(DEFAULTS, overrides or {}), source)


def read_file(file_path: Path) -> dict[str, Any]:
    """The mapping a YAML configuration file holds (an empty file is an empty mapping)."""
    try:
        loaded = yaml.safe_load(file_path.read_text()) or {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{file_path}: not valid YAML: {where}{exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file_path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{file_path}: cannot read: {exc.strerror or exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{file_path}: the configuration must be a mapping")
    return loaded


def load_config(path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load the configuration from ``path``, ``$IVFARM_CONFIG`` or the default location."""
    explicit = path or os.environ.get("IVFARM_CONFIG")
    file_path = Path(explicit) if explicit else DEFAULT_CONFIG_PATH
    data: dict[str, Any] = {}
    if file_path.exists():
        data = read_file(file_path)
    elif explicit:
        raise ConfigError(f"configuration file not found: {file_path}")
    if overrides:
        data = _merge(data, overrides)
    return build_config(data, file_path if file_path.exists() else None)
