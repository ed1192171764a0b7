"""Machine/Job Features as the router's metadata server answers them: one file per key, per VM."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_vrouter_metadata import OTHER, TREE, Client, publish, record, serving
from vrouter.imds import parse_records

MINE = {"machinefeatures": {"hs06": "23", "jobslots": "1", "shutdowntime": "1796220000"},
        "jobfeatures": {"allocated_cpu": "2", "max_rss_bytes": "2147483648"}}
THEIRS = {"machinefeatures": {"hs06": "11.5"}, "jobfeatures": {"allocated_cpu": "1"}}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    path = tmp_path / "metadata.json"
    publish(path, {"127.0.0.1": {**record(TREE, None), "features": MINE},
                   "127.0.0.2": {**record(OTHER, None), "features": THEIRS},
                   "127.0.0.3": record(OTHER, None)})  # a record from before features
    with serving(path) as connected:
        yield connected


def test_each_key_is_a_file_of_the_asking_vm(client: Client) -> None:
    assert client.get("/machinefeatures/hs06") == (200, "23")
    assert client.get("/machinefeatures/shutdowntime") == (200, "1796220000")
    assert client.get("/jobfeatures/allocated_cpu") == (200, "2")
    assert client.get("/machinefeatures/hs06", source="127.0.0.2") == (200, "11.5")
    assert client.get("/jobfeatures/allocated_cpu", source="127.0.0.2") == (200, "1")


def test_directories_list_their_keys(client: Client) -> None:
    assert client.get("/machinefeatures/") == (200, "hs06\njobslots\nshutdowntime")
    assert client.get("/jobfeatures") == (200, "allocated_cpu\nmax_rss_bytes")


@pytest.mark.parametrize("path,source", [
    ("/machinefeatures/shutdowntime", "127.0.0.2"),  # no drain there: the key is absent
    ("/jobfeatures/wall_limit_secs", "127.0.0.1"),
    ("/machinefeatures/hs06/more", "127.0.0.1"),
    ("/machinefeatures/hs06", "127.0.0.4"),  # no record: nothing
    ("/machinefeatures/hs06", "127.0.0.3"),  # a record without features
    ("/latest/machinefeatures/hs06", "127.0.0.1"),
])
def test_absent_keys_are_404(client: Client, path: str, source: str) -> None:
    assert client.get(path, source=source)[0] == 404


def test_the_metadata_tree_is_still_served_beside_them(client: Client) -> None:
    assert client.get("/latest/meta-data/instance-id") == (200, TREE["instance-id"])


@pytest.mark.parametrize("features", [[], {"other": {}}, {"jobfeatures": {"a": 1}}, {"jobfeatures": {"a/b": "1"}}])
def test_malformed_features_are_refused(features: object) -> None:
    with pytest.raises(ValueError, match="'features' must map"):
        parse_records(f'{{"10.0.0.3": {{"meta-data": {{}}, "features": {json.dumps(features)}}}}}')
