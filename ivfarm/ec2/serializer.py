"""The one XML serializer of the EC2 facade: response trees and errors to EC2 XML.

A response tree is plain data: a dict is a sequence of elements in insertion order, a list is a
``<...Set>`` of ``<item>`` elements, ``None`` leaves the element out, and scalars are text
(booleans as ``true``/``false``, datetimes as ISO 8601 UTC with milliseconds).
"""
from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from typing import Any

NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
# Characters XML 1.0 cannot carry; client input echoed in a message may contain them.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

Tree = dict[str, Any]


def timestamp(value: dt.datetime) -> str:
    """EC2's time format: ``2024-01-02T03:04:05.000Z``."""
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _clean(text: str) -> str:
    return _ILLEGAL.sub("\ufffd", text) if _ILLEGAL.search(text) else text


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return timestamp(value)
    return _clean(value if isinstance(value, str) else str(value))


def _fill(parent: ET.Element, tree: Tree) -> None:
    sub = ET.SubElement
    for name, value in tree.items():
        if value is None:
            continue
        child = sub(parent, name)
        kind = type(value)
        if kind is str:
            child.text = _clean(value)
        elif kind is dict:
            _fill(child, value)
        elif kind is list:
            for entry in value:
                item = sub(child, "item")
                if type(entry) is dict:
                    _fill(item, entry)
                else:
                    item.text = _text(entry)
        else:
            child.text = _text(value)


def render(action: str, tree: Tree, request_id: str) -> bytes:
    """``<ActionResponse xmlns=...><requestId/>...</ActionResponse>``."""
    root = ET.Element(f"{action}Response", xmlns=NAMESPACE)
    ET.SubElement(root, "requestId").text = request_id
    _fill(root, tree)
    return _DECLARATION + ET.tostring(root, encoding="unicode").encode("utf-8")


def render_error(code: str, message: str, request_id: str) -> bytes:
    """``<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>``."""
    root = ET.Element("Response")
    error = ET.SubElement(ET.SubElement(root, "Errors"), "Error")
    ET.SubElement(error, "Code").text = _text(code)
    ET.SubElement(error, "Message").text = _text(message)
    ET.SubElement(root, "RequestID").text = request_id
    return _DECLARATION + ET.tostring(root, encoding="unicode").encode("utf-8")
