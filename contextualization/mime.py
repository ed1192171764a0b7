"""MIME multipart user-data: build it from parts, read it back, fit it in EC2's size limit."""
from __future__ import annotations

import email
import gzip
import hashlib
import re
import zlib
from dataclasses import dataclass
from email import encoders
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from contextualization.errors import ContextError

MAX_USER_DATA = 16384  # EC2 refuses user-data over 16 KB (before base64)
GZIP_MAGIC = b"\x1f\x8b"
_BCHARS = "-0-9A-Za-z'()+_,./:=?"
_BOUNDARY = re.compile(f"^[{_BCHARS}]([{_BCHARS} ]{{0,68}}[{_BCHARS}])?$")
_MAX_7BIT_LINE = 998
_FIRST_LINE_TYPES = (("#cloud-config", "text/cloud-config"), ("#!", "text/x-shellscript"))


@dataclass(frozen=True)
class Part:
    """One part of a user-data archive."""

    content_type: str
    filename: str
    payload: bytes


def infer_type(payload: bytes) -> str | None:
    """The content type cloud-init gives a payload from its first line, for the types we infer."""
    start = payload.lstrip()[:64].lower()
    for prefix, content_type in _FIRST_LINE_TYPES:
        if start.startswith(prefix.encode("ascii")):
            return content_type
    return None


def _is_7bit_text(payload: bytes) -> bool:
    if not payload.isascii() or b"\r" in payload or b"\0" in payload:
        return False
    return all(len(line) <= _MAX_7BIT_LINE for line in payload.split(b"\n"))


def _mime_part(part: Part) -> Message:
    maintype, subtype = part.content_type.split("/", 1)
    if maintype == "text" and _is_7bit_text(part.payload):
        message: Message = MIMEText(part.payload.decode("ascii"), subtype, "us-ascii")
    else:
        message = MIMEBase(maintype, subtype)
        message.set_payload(part.payload)
        encoders.encode_base64(message)
    message.add_header("Content-Disposition", "attachment", filename=part.filename)
    return message


def default_boundary(parts: list[Part]) -> str:
    """A boundary derived from the parts' content, so the same input packs to the same bytes."""
    digest = hashlib.sha256()
    for part in parts:
        for field in (part.content_type.encode(), part.filename.encode(), part.payload):
            digest.update(len(field).to_bytes(8, "big") + field)
    return "===============" + digest.hexdigest()[:24] + "=="


def build_archive(parts: list[Part], boundary: str | None = None) -> bytes:
    """Return the ``multipart/mixed`` message holding ``parts`` in order."""
    if not parts:
        raise ContextError("nothing to pack: no parts")
    boundary = boundary or default_boundary(parts)
    if not _BOUNDARY.match(boundary):
        raise ContextError(f"invalid MIME boundary {boundary!r} (1-70 characters allowed by "
                           "RFC 2046, not ending in a space)")
    if any(boundary.encode() in part.payload for part in parts):
        raise ContextError(f"the boundary {boundary!r} occurs inside a part; choose another")
    archive = MIMEMultipart(boundary=boundary)
    for part in parts:
        archive.attach(_mime_part(part))
    return archive.as_bytes()


def fit_user_data(archive: bytes, limit: int = MAX_USER_DATA) -> tuple[bytes, bool]:
    """Return (user-data, gzipped): the archive itself when it fits, else its gzip if that fits."""
    if len(archive) <= limit:
        return archive, False
    packed = gzip.compress(archive, compresslevel=9, mtime=0)
    if len(packed) <= limit:
        return packed, True
    raise ContextError(f"user-data is {len(archive)} bytes ({len(packed)} bytes gzipped), over "
                       f"EC2's {limit}-byte limit; ship less in the archive")


def _gunzip(data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ContextError(f"corrupt gzip user-data: {exc}") from exc


def parse_archive(data: bytes) -> list[Part]:
    """Return the parts of a (possibly gzipped) MIME multipart user-data file."""
    if data.startswith(GZIP_MAGIC):
        data = _gunzip(data)
    if b"mime-version:" not in data[:4096].lower():
        raise ContextError("not a MIME multipart user-data file (no MIME-Version header)")
    message = email.message_from_bytes(data)
    if not message.is_multipart():
        raise ContextError("not a multipart MIME message")
    parts = []
    for index, part in enumerate(p for p in message.walk() if not p.is_multipart()):
        payload = part.get_payload(decode=True)
        parts.append(Part(part.get_content_type(), part.get_filename() or f"part-{index:03d}",
                          payload if isinstance(payload, bytes) else b""))
    return parts
