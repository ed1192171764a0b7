"""Request authentication: SigV4 (boto3, awscli) and SigV2 (euca2ools, boto2).

The signature is recomputed with botocore's own signers from what the client sent and the farm's
secret key, and compared in constant time. The request time must be within 15 minutes of ours,
and a SigV2 ``Expires`` no further ahead: otherwise ``RequestExpired`` (400), as AWS answers.
Every other failure is the same ``AuthFailure`` (401), whichever part was wrong.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from botocore.auth import SigV2Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ivfarm.ec2.errors import auth_failure, request_expired
from ivfarm.store.types import as_utc

MAX_SKEW = dt.timedelta(minutes=15)
SIGV2_PARAMS = ("AWSAccessKeyId", "SignatureVersion", "SignatureMethod", "Timestamp", "Expires", "Signature")
_SIGV4_HEADER = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)
_HEADER_NAME = re.compile(r"[a-z0-9-]+")


@dataclass(frozen=True)
class Principal:
    """Who a key belongs to: the farm and its secret."""

    farm_id: int
    farm_name: str
    secret_key: str


@dataclass(frozen=True)
class SignedRequest:
    """What signature checks need of an HTTP request."""

    method: str
    host: str
    path: str
    query: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Verified:
    """An authenticated request: whose it is, its signature and until when that signature is valid."""

    principal: Principal
    signature: str
    valid_until: dt.datetime


Lookup = Callable[[str], "Principal | None"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_time(when: dt.datetime) -> dt.datetime:
    """Until when a request made at ``when`` is valid (RequestExpired when it is not now)."""
    if abs(_now() - when) > MAX_SKEW:
        raise request_expired()
    return when + MAX_SKEW


def _check_expires(expires: dt.datetime) -> dt.datetime:
    """A SigV2 ``Expires`` must be in the future, and no further ahead than the allowed skew."""
    now = _now()
    if not now <= expires <= now + MAX_SKEW:
        raise request_expired()
    return expires


def _principal(lookup: Lookup, access_key: str) -> Principal:
    principal = lookup(access_key) if access_key else None
    if principal is None:
        raise auth_failure()
    return principal


def verify_sigv4(request: SignedRequest, lookup: Lookup, region: str) -> Verified:
    """Check an ``Authorization: AWS4-HMAC-SHA256 ...`` request."""
    match = _SIGV4_HEADER.match(request.headers.get("authorization", ""))
    if match is None:
        raise auth_failure()
    parts = match["credential"].split("/")
    signed = match["signed"].split(";")
    if len(parts) != 5 or parts[2:] != [region, "ec2", "aws4_request"]:
        raise auth_failure()
    if "host" not in signed or not all(_HEADER_NAME.fullmatch(h) and h in request.headers for h in signed):
        raise auth_failure()
    stamp = request.headers.get("x-amz-date", "")
    try:
        when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise auth_failure() from None
    if "x-amz-date" not in signed or parts[1] != stamp[:8]:
        raise auth_failure()
    valid_until = _check_time(when)
    declared = request.headers.get("x-amz-content-sha256")
    if declared is not None and declared != hashlib.sha256(request.body).hexdigest():
        raise auth_failure()  # an unsigned or tampered payload
    principal = _principal(lookup, parts[0])
    url = f"http://{request.headers['host']}{request.path}" + (f"?{request.query}" if request.query else "")
    rebuilt = AWSRequest(method=request.method, url=url, data=request.body,
                         headers={name: request.headers[name] for name in signed})
    rebuilt.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(parts[0], principal.secret_key), "ec2", region)
    expected = signer.signature(signer.string_to_sign(rebuilt, signer.canonical_request(rebuilt)), rebuilt)
    if not hmac.compare_digest(expected, match["signature"]):
        raise auth_failure()
    return Verified(principal, expected, valid_until)


def _parse_v2_time(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise auth_failure() from None
    return as_utc(when)


def verify_sigv2(request: SignedRequest, params: Mapping[str, str], lookup: Lookup) -> Verified:
    """Check a request signed with ``SignatureVersion=2`` / ``HmacSHA256`` in its parameters."""
    if params.get("SignatureVersion") != "2" or params.get("SignatureMethod") != "HmacSHA256":
        raise auth_failure()
    if "Timestamp" in params:
        valid_until = _check_time(_parse_v2_time(params["Timestamp"]))
    elif "Expires" in params:
        valid_until = _check_expires(_parse_v2_time(params["Expires"]))
    else:
        raise auth_failure()
    principal = _principal(lookup, params.get("AWSAccessKeyId", ""))
    rebuilt = AWSRequest(method=request.method, url=f"http://{request.headers.get('host', '')}{request.path}")
    signer = SigV2Auth(Credentials(params["AWSAccessKeyId"], principal.secret_key))
    _, expected = signer.calc_signature(rebuilt, {k: v for k, v in params.items() if k != "Signature"})
    if not hmac.compare_digest(expected.encode(), params.get("Signature", "").encode()):
        raise auth_failure()
    return Verified(principal, expected, valid_until)


def authenticate(request: SignedRequest, params: Mapping[str, str], lookup: Lookup, region: str) -> Verified:
    """Who signed a SigV4 or SigV2 request, or AuthFailure / RequestExpired."""
    if "authorization" in request.headers:
        return verify_sigv4(request, lookup, region)
    if "Signature" in params:
        return verify_sigv2(request, params, lookup)
    raise auth_failure()
