"""Query parameter parsing, filters and pagination of the EC2 facade."""
from __future__ import annotations

import pytest

from ivfarm.ec2 import pagination
from ivfarm.ec2.errors import Ec2Error
from ivfarm.ec2.filters import parse_filters
from ivfarm.ec2.params import Params, parse_query


def code(excinfo: pytest.ExceptionInfo[Ec2Error]) -> str:
    return excinfo.value.code


def test_parse_query_decodes_and_refuses_repeats_and_nul() -> None:
    assert parse_query("Action=RunInstances&UserData=a%2Bb%3D&Empty=") == {
        "Action": "RunInstances", "UserData": "a+b=", "Empty": ""}
    for raw in ("A=1&A=2", "A=%00", "A=%ff"):
        with pytest.raises(Ec2Error) as excinfo:
            parse_query(raw)
        assert code(excinfo) == "InvalidParameterValue"


def test_lists_are_read_in_index_order_and_checked() -> None:
    p = Params({"InstanceId.2": "b", "InstanceId.10": "c", "InstanceId.1": "a"})
    assert p.strings("InstanceId") == ["a", "b", "c"]
    p.done()
    for flat in ({"InstanceId.-1": "a"}, {"InstanceId.x": "a"}, {"InstanceId.01": "a"}, {"InstanceId.1.Foo": "a"}):
        with pytest.raises(Ec2Error) as excinfo:
            Params(flat).strings("InstanceId")
        assert code(excinfo) == "UnknownParameter"


@pytest.mark.parametrize("flat", [
    {"ResourceId.0": "a", "ResourceId.1": "b", "ResourceId.2": "c"},
    {"ResourceId.7": "a", "ResourceId.9": "b", "ResourceId.10": "c"},
    {"ResourceId.100": "c", "ResourceId.3": "a", "ResourceId.20": "b"},
])
def test_lists_start_at_any_index_and_are_ordered_numerically(flat: dict[str, str]) -> None:
    p = Params(flat)
    assert p.strings("ResourceId") == ["a", "b", "c"]
    p.done()


def test_a_list_without_index_is_one_item() -> None:
    p = Params({"KeyName": "mine"})
    assert p.strings("KeyName") == ["mine"]
    p.done()
    with pytest.raises(Ec2Error) as excinfo:
        Params({"KeyName": "a", "KeyName.1": "b"}).strings("KeyName")
    assert code(excinfo) == "InvalidParameterValue"


def test_single_value_plain_or_as_a_one_item_list() -> None:
    assert Params({"InstanceId": "i-1"}).single("InstanceId") == "i-1"
    assert Params({"InstanceId.1": "i-1"}).single("InstanceId") == "i-1"
    for flat, expected in (({}, "MissingParameter"), ({"InstanceId.1": "a", "InstanceId.2": "b"}, "InvalidParameterValue")):
        with pytest.raises(Ec2Error) as excinfo:
            Params(flat).single("InstanceId")
        assert code(excinfo) == expected


def test_zero_based_filters_and_values() -> None:
    p = Params({"Filter.0.Name": "key-name", "Filter.0.Value.0": "a", "Filter.0.Value.1": "b",
                "Filter.1.Name": "tag-key", "Filter.1.Value.0": "k"})
    filters = parse_filters(p, {"key-name": lambda k: (k,)})
    p.done()
    assert [f.name for f in filters.filters] == ["key-name", "tag-key"]
    assert filters.match("b", {"k": ""}) and not filters.match("c", {"k": ""})


def test_structures_and_unread_parameters() -> None:
    p = Params({"TagSpecification.1.ResourceType": "instance", "TagSpecification.1.Tag.1.Key": "k",
                "TagSpecification.1.Tag.1.Value": "v", "Placement.AvailabilityZone": "z", "Typo": "1"})
    (spec,) = p.structs("TagSpecification")
    assert spec.string("ResourceType") == "instance"
    (tag,) = spec.structs("Tag")
    assert (tag.string("Key"), tag.string("Value")) == ("k", "v")
    assert p.struct("Placement").string("AvailabilityZone") == "z"
    with pytest.raises(Ec2Error) as excinfo:
        p.done()
    assert code(excinfo) == "UnknownParameter" and "Typo" in excinfo.value.message


@pytest.mark.parametrize(("raw", "expected"), [("5", 5), ("-1", "InvalidParameterValue"), ("1e3", "InvalidParameterValue"),
                                               ("99999999999999999999", "InvalidParameterValue"), ("", "MissingParameter")])
def test_integers(raw: str, expected: int | str) -> None:
    p = Params({"MaxCount": raw})
    if isinstance(expected, int):
        assert p.required_integer("MaxCount", minimum=1, maximum=1000) == expected
        return
    with pytest.raises(Ec2Error) as excinfo:
        p.required_integer("MaxCount", minimum=1, maximum=1000)
    assert code(excinfo) == expected


def test_booleans_choices_and_lengths() -> None:
    p = Params({"DryRun": "TRUE", "Force": "yes", "KeyType": "dsa", "KeyName": "k" * 300})
    assert p.boolean("DryRun") is True and p.boolean("Absent") is False
    for read in (lambda: p.boolean("Force"), lambda: p.choice("KeyType", ("rsa", "ed25519")),
                 lambda: p.string("KeyName", max_length=255)):
        with pytest.raises(Ec2Error) as excinfo:
            read()
        assert code(excinfo) == "InvalidParameterValue"
    with pytest.raises(Ec2Error) as excinfo:
        Params({}).required("ImageId")
    assert code(excinfo) == "MissingParameter"


EXTRACTORS = {"name": lambda r: (r["name"],), "size": lambda r: (str(r["size"]),)}


def test_filters_values_are_alternatives_and_filters_all_apply() -> None:
    filters = parse_filters(Params({"Filter.1.Name": "name", "Filter.1.Value.1": "web-*", "Filter.1.Value.2": "db",
                                    "Filter.2.Name": "tag:env", "Filter.2.Value.1": "prod"}), EXTRACTORS)
    assert filters.match({"name": "web-1", "size": 1}, {"env": "prod"})
    assert filters.match({"name": "db", "size": 1}, {"env": "prod"})
    assert not filters.match({"name": "web-1", "size": 1}, {"env": "test"})
    assert not filters.match({"name": "cache", "size": 1}, {"env": "prod"})


def test_filter_wildcards_and_escapes() -> None:
    def matches(pattern: str, text: str) -> bool:
        return parse_filters(Params({"Filter.1.Name": "name", "Filter.1.Value.1": pattern}), EXTRACTORS).match(
            {"name": text, "size": 0})

    assert matches("w?b", "web") and not matches("w?b", "weeb")
    assert matches("*", "") and matches("a*c", "abbbc")
    assert matches("a\\*", "a*") and not matches("a\\*", "ab")
    assert matches("a.b", "a.b") and not matches("a.b", "axb")


def test_tag_key_and_value_filters() -> None:
    filters = parse_filters(Params({"Filter.1.Name": "tag-key", "Filter.1.Value.1": "own*",
                                    "Filter.2.Name": "tag-value", "Filter.2.Value.1": "alice"}), EXTRACTORS)
    assert filters.match({"name": "x", "size": 0}, {"owner": "alice"})
    assert not filters.match({"name": "x", "size": 0}, {"owner": "bob"})


@pytest.mark.parametrize("flat", [
    {"Filter.1.Name": "colour", "Filter.1.Value.1": "red"},
    {"Filter.1.Name": "name"},
    {"Filter.1.Value.1": "x"},
    {"Filter.1.Name": "tag:", "Filter.1.Value.1": "x"},
])
def test_bad_filters(flat: dict[str, str]) -> None:
    with pytest.raises(Ec2Error) as excinfo:
        parse_filters(Params(flat), EXTRACTORS)
    assert code(excinfo) in ("InvalidParameterValue", "MissingParameter")


def test_pagination_walks_every_item_once_even_when_items_are_added() -> None:
    items = [f"i-{n:02d}" for n in range(12)]
    seen: list[str] = []
    token = None
    while True:
        flat = {"MaxResults": "5", **({"NextToken": token} if token else {})}
        page = pagination.read_page(Params(flat), 5, 1000)
        chosen, token = pagination.paginate(items, lambda i: (i,), page)
        seen += chosen
        items.append("i-00a")  # sorts before the cursor: not returned, nothing repeated
        if token is None:
            break
    assert seen == [f"i-{n:02d}" for n in range(12)]


def test_pagination_parameters_are_checked() -> None:
    for flat, expected in (({"MaxResults": "4"}, "InvalidParameterValue"),
                           ({"NextToken": "not-a-token"}, "InvalidPaginationToken"),
                           ({"MaxResults": "5", "InstanceId.1": "i-1"}, "InvalidParameterCombination")):
        with pytest.raises(Ec2Error) as excinfo:
            pagination.read_page(Params(flat), 5, 1000, exclusive=("InstanceId",))
        assert code(excinfo) == expected
