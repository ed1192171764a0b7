"""What EC2's instance metadata service (IMDS) answers one instance: pure path rendering.

The control plane publishes one *record* per private IP of the farm (as JSON)::

    {"meta-data": TREE, "user-data": "<base64 of the exact bytes>" or null,
     "options": {"http-tokens": "optional"|"required", "http-endpoint": "enabled"|"disabled",
                 "hop-limit": 1..64},
     "features": {"machinefeatures": {KEY: "value", ...}, "jobfeatures": {KEY: "value", ...}}}

``options`` (each key optional, defaults as shown first, hop limit 1) are the instance's EC2
MetadataOptions: the server refuses plain GETs when tokens are required, answers nothing when
the endpoint is disabled, and sends token responses with the hop limit as their IP TTL.

TREE is plain JSON: a dict is a directory, anything else a leaf (a list answers one item per
line). A directory entry named ``<index>=<label>`` (EC2's ``public-keys/0=my-key``) is listed as
is and reached by its index alone (``public-keys/0/openssh-key``). The same documents answer
under ``latest`` and under every dated API version IMDS lists at ``/``, because clients such as
cloud-init probe dated paths (``/2009-04-04/meta-data/instance-id``).

``features`` (optional) are the instance's WLCG Machine/Job Features (HSF-TN-2016-02), served
one file per key at ``/machinefeatures/<key>`` and ``/jobfeatures/<key>``; a GET of the directory
lists its keys, a key without a value is absent (404).
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

METADATA_IP = "169.254.169.254"
METADATA_PORT = 80
# what IMDS lists at "/", oldest first (cloud-init asks for 2021-03-23, 2018-09-24, 2016-09-02, 2009-04-04)
VERSIONS = (
    "1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15", "2008-02-01",
    "2008-09-01", "2009-04-04", "2011-01-01", "2011-05-01", "2012-01-12", "2014-02-25", "2014-11-05",
    "2015-10-20", "2016-04-19", "2016-06-30", "2016-09-02", "2018-03-28", "2018-08-17", "2018-09-24",
    "2019-10-01", "2020-10-27", "2021-01-03", "2021-03-23", "2021-07-15", "2022-09-24", "latest",
)
TEXT = "text/plain"
OCTETS = "application/octet-stream"
_INDEXED = re.compile(r"^\d+=")
FEATURE_DIRS = ("machinefeatures", "jobfeatures")


@dataclass(frozen=True)
class Answer:
    """A 200 response: its body and content type."""

    body: bytes
    content_type: str = TEXT


@dataclass(frozen=True)
class Options:
    """An instance's MetadataOptions as its metadata service enforces them."""

    tokens_required: bool = False
    endpoint_enabled: bool = True
    hop_limit: int = 1

    @classmethod
    def from_record(cls, options: object) -> Options:
        """Check and decode a record's ``options``; ValueError says what is wrong with them."""
        if options is None:
            return cls()
        if not isinstance(options, dict) or set(options) - {"http-tokens", "http-endpoint", "hop-limit"}:
            raise ValueError("'options' must be an object of http-tokens, http-endpoint and hop-limit")
        tokens = options.get("http-tokens", "optional")
        endpoint = options.get("http-endpoint", "enabled")
        hops = options.get("hop-limit", 1)
        if tokens not in ("optional", "required") or endpoint not in ("enabled", "disabled"):
            raise ValueError("http-tokens must be optional|required and http-endpoint enabled|disabled")
        if isinstance(hops, bool) or not isinstance(hops, int) or not 1 <= hops <= 64:
            raise ValueError("hop-limit must be an integer from 1 to 64")
        return cls(tokens == "required", endpoint == "enabled", hops)


@dataclass(frozen=True)
class InstanceDocs:
    """One instance's documents: its meta-data tree, its user-data (None when it sent none) and
    the metadata options its service enforces."""

    meta_data: dict[str, Any]
    user_data: bytes | None
    options: Options = Options()
    features: dict[str, dict[str, str]] = field(default_factory=dict)  # directory -> key -> value

    @classmethod
    def from_record(cls, record: object) -> InstanceDocs:
        """Check and decode a published record; ValueError says what is wrong with it."""
        if not isinstance(record, dict) or not isinstance(record.get("meta-data"), dict):
            raise ValueError("a record must be an object with a 'meta-data' object")
        options = Options.from_record(record.get("options"))
        features = _features(record.get("features"))
        encoded = record.get("user-data")
        if encoded is None:
            return cls(record["meta-data"], None, options, features)
        if not isinstance(encoded, str):
            raise ValueError("'user-data' must be base64 text or null")
        try:
            return cls(record["meta-data"], base64.b64decode(encoded, validate=True), options, features)
        except binascii.Error as exc:
            raise ValueError(f"'user-data' is not valid base64: {exc}") from None


def _features(features: object) -> dict[str, dict[str, str]]:
    """Check a record's ``features``: the two MJF directories, each of key -> text value."""
    if features is None:
        return {}
    if not isinstance(features, dict) or set(features) - set(FEATURE_DIRS) or not all(
            isinstance(keys, dict) and all(isinstance(k, str) and "/" not in k and isinstance(v, str)
                                           for k, v in keys.items()) for keys in features.values()):
        raise ValueError("'features' must map machinefeatures/jobfeatures to objects of key -> text")
    return features


def parse_records(text: str) -> dict[str, InstanceDocs]:
    """The records file's content (private IPv4 -> record) as documents; ValueError if malformed."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the records file must hold a JSON object (private IP -> record)")
    docs = {}
    for ip, record in data.items():
        try:
            ipaddress.IPv4Address(ip)
            docs[ip] = InstanceDocs.from_record(record)
        except ValueError as exc:
            raise ValueError(f"record {ip!r}: {exc}") from None
    return docs


def answer(docs: InstanceDocs | None, path: str) -> Answer | None:
    """The answer to GET ``path`` for the instance these documents belong to; None is a 404.

    ``/`` lists the API versions; ``/<version>/`` lists ``meta-data`` (and ``user-data`` when
    there is some); every other path needs the asking instance's documents.
    """
    segments = [part for part in path.split("/") if part]
    if not segments:
        return _text("\n".join(VERSIONS))
    version, rest = segments[0], segments[1:]
    if version in FEATURE_DIRS and docs is not None:
        return _feature(docs.features.get(version, {}), rest)
    if version not in VERSIONS or docs is None:
        return None
    if not rest:
        return _text("\n".join(["meta-data"] + (["user-data"] if docs.user_data is not None else [])))
    if rest == ["user-data"]:
        return None if docs.user_data is None else Answer(docs.user_data, OCTETS)
    if rest[0] == "meta-data":
        return render(docs.meta_data, rest[1:])
    return None


def _feature(keys: dict[str, str], rest: list[str]) -> Answer | None:
    """A Machine/Job Features directory: its key listing, or one key's value (None: absent)."""
    if not rest:
        return _text("\n".join(sorted(keys)))
    if len(rest) == 1 and rest[0] in keys:
        return _text(keys[rest[0]])
    return None


def render(tree: dict[str, Any], segments: list[str]) -> Answer | None:
    """Walk ``segments`` down the tree: a directory lists its entries (sub-directories end in
    ``/``, indexed entries read ``0=label``), a leaf answers its value; None when nothing is there."""
    node: Any = tree
    for segment in segments:
        node = _child(node, segment) if isinstance(node, dict) else None
        if node is None:
            return None
    if isinstance(node, dict):
        return _text("\n".join(
            f"{name}/" if isinstance(value, dict) and not _INDEXED.match(name) else name
            for name, value in node.items()
        ))
    if isinstance(node, list):
        return _text("\n".join(str(item) for item in node))
    return _text(str(node))


def _child(directory: dict[str, Any], segment: str) -> Any:
    if not _INDEXED.match(segment) and segment in directory:
        return directory[segment]
    if segment.isdigit():
        return next((value for name, value in directory.items() if name.startswith(f"{segment}=")), None)
    return None


def _text(body: str) -> Answer:
    return Answer(body.encode("utf-8"))
