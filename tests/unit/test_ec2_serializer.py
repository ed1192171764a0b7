"""The EC2 XML serializer: response trees and errors."""
from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from ivfarm.ec2.serializer import NAMESPACE, render, render_error, timestamp

NS = {"ec2": NAMESPACE}


def test_response_tree_to_ec2_xml() -> None:
    when = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    body = render("DescribeThings", {
        "thingSet": [{"thingId": "t-1", "ok": True, "count": 3, "when": when, "gone": None,
                      "tagSet": [{"key": "k", "value": "<&>"}], "empty": {}}, ],
        "plain": ["a", "b"],
    }, "req-1")
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(body)
    assert root.tag == f"{{{NAMESPACE}}}DescribeThingsResponse"
    assert root.findtext("ec2:requestId", namespaces=NS) == "req-1"
    item = root.find("ec2:thingSet/ec2:item", NS)
    assert item is not None
    assert item.findtext("ec2:ok", namespaces=NS) == "true"
    assert item.findtext("ec2:count", namespaces=NS) == "3"
    assert item.findtext("ec2:when", namespaces=NS) == "2024-05-06T07:08:09.123Z"
    assert item.find("ec2:gone", NS) is None
    assert item.find("ec2:empty", NS) is not None and len(item.find("ec2:empty", NS)) == 0  # type: ignore[arg-type]
    assert item.findtext("ec2:tagSet/ec2:item/ec2:value", namespaces=NS) == "<&>"
    assert [i.text for i in root.findall("ec2:plain/ec2:item", NS)] == ["a", "b"]


def test_error_xml_and_characters_xml_cannot_carry() -> None:
    root = ET.fromstring(render_error("InvalidParameterValue", "bad \x00\x07 value \ud800", "req-2"))
    assert root.tag == "Response"
    assert root.findtext("Errors/Error/Code") == "InvalidParameterValue"
    assert root.findtext("Errors/Error/Message") == "bad \ufffd\ufffd value \ufffd"
    assert root.findtext("RequestID") == "req-2"


def test_naive_times_are_utc() -> None:
    assert timestamp(dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05.000Z"
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert timestamp(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=plus_two)) == "2024-01-02T01:04:05.000Z"
