"""Request authentication: SigV4 in a header (boto3, awscli, boto 2, Libcloud) or presigned in the
query string, and SigV2 with HmacSHA256 or HmacSHA1 (euca2ools, Libcloud's Eucalyptus driver).

The signature is recomputed from what the client sent and the farm's secret key, and compared in
constant time. SigV4 is verified with the credential scope the client signed (boto 2 derives region
and service from the host name). The request time must be within 15 minutes of ours, a SigV2
``Expires`` no further ahead, a presigned URL used before its ``X-Amz-Expires`` (at most 7 days):
otherwise ``RequestExpired`` (400), as AWS answers. Every other failure is the same ``AuthFailure``
(401), whichever part was wrong.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ivfarm.ec2.errors import auth_failure, request_expired
from ivfarm.store.types import as_utc

MAX_SKEW = dt.timedelta(minutes=15)
MAX_PRESIGNED = 604800  # seconds: AWS's limit on X-Amz-Expires
SIGV2_PARAMS = ("AWSAccessKeyId", "SignatureVersion", "SignatureMethod", "Timestamp", "Expires", "Signature")
PRESIGNED_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
                    "X-Amz-Signature", "X-Amz-Security-Token")
_SIGV2_DIGESTS = {"HmacSHA256": hashlib.sha256, "HmacSHA1": hashlib.sha1}
_SIGV4_HEADER = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)
_HEADER_NAME = re.compile(r"[a-z0-9-]+")
_SCOPE_PART = re.compile(r"[A-Za-z0-9._-]{1,64}")


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
    consumed: tuple[str, ...] = ()  # the parameters that carried the signature, not the action's


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


@dataclass(frozen=True)
class _Sigv4:
    """The parts of a SigV4 signature, from the Authorization header or the query string."""

    access_key: str
    date: str
    region: str
    service: str
    signed: list[str]
    stamp: str
    signature: str


def _sigv4_parts(credential: str, signed: str, stamp: str, signature: str, headers: Mapping[str, str]) -> _Sigv4:
    """Check the scope's form, the signed headers (host among them) and the date; AuthFailure otherwise."""
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not all(_SCOPE_PART.fullmatch(p) for p in parts[1:4]):
        raise auth_failure()
    names = signed.split(";")
    if "host" not in names or not all(_HEADER_NAME.fullmatch(h) and h in headers for h in names):
        raise auth_failure()
    if parts[1] != stamp[:8] or not re.fullmatch(r"[0-9a-f]{64}", signature):
        raise auth_failure()
    return _Sigv4(parts[0], parts[1], parts[2], parts[3], names, stamp, signature)


def _sigv4_time(stamp: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise auth_failure() from None


def _canonical_query(query: str, skip: str = "") -> str:
    pairs = [(urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~"))
             for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True) if k != skip]
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def sigv4_signature(secret: str, request: SignedRequest, sig: _Sigv4, skip: str = "") -> str:
    """The SigV4 signature of ``request`` with the client's scope (query parameter ``skip`` left out)."""
    headers = "".join(f"{name}:{' '.join(request.headers[name].split())}\n" for name in sorted(sig.signed))
    canonical = "\n".join([request.method, urllib.parse.quote(request.path or "/", safe="/-_.~"),
                           _canonical_query(request.query, skip), headers, ";".join(sorted(sig.signed)),
                           hashlib.sha256(request.body).hexdigest()])
    scope = f"{sig.date}/{sig.region}/{sig.service}/aws4_request"
    text = f"AWS4-HMAC-SHA256\n{sig.stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = f"AWS4{secret}".encode()
    for part in (sig.date, sig.region, sig.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _sigv4_check(request: SignedRequest, sig: _Sigv4, lookup: Lookup, skip: str = "") -> tuple[Principal, str]:
    """Recompute the signature with the scope the client signed; AuthFailure on mismatch."""
    declared = request.headers.get("x-amz-content-sha256")
    if declared is not None and declared != hashlib.sha256(request.body).hexdigest():
        raise auth_failure()  # an unsigned or tampered payload
    principal = _principal(lookup, sig.access_key)
    expected = sigv4_signature(principal.secret_key, request, sig, skip)
    if not hmac.compare_digest(expected, sig.signature):
        raise auth_failure()
    return principal, expected


def verify_sigv4(request: SignedRequest, lookup: Lookup) -> Verified:
    """Check an ``Authorization: AWS4-HMAC-SHA256 ...`` request."""
    match = _SIGV4_HEADER.match(request.headers.get("authorization", ""))
    if match is None:
        raise auth_failure()
    stamp = request.headers.get("x-amz-date", "")
    sig = _sigv4_parts(match["credential"], match["signed"], stamp, match["signature"], request.headers)
    when = _sigv4_time(stamp)
    if "x-amz-date" not in sig.signed:
        raise auth_failure()
    valid_until = _check_time(when)
    principal, expected = _sigv4_check(request, sig, lookup)
    return Verified(principal, expected, valid_until)


def verify_presigned(request: SignedRequest, params: Mapping[str, str], lookup: Lookup) -> Verified:
    """Check a SigV4 signature carried in the query string (``X-Amz-Signature`` and its companions)."""
    if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" or "X-Amz-Security-Token" in params:
        raise auth_failure()
    if not all(name in params for name in PRESIGNED_PARAMS[:-1]):
        raise auth_failure()
    if "X-Amz-Signature" not in urllib.parse.parse_qs(request.query):
        raise auth_failure()  # the signature must travel in the query string itself
    stamp = params["X-Amz-Date"]
    sig = _sigv4_parts(params["X-Amz-Credential"], params["X-Amz-SignedHeaders"], stamp, params["X-Amz-Signature"],
                       request.headers)
    when = _sigv4_time(stamp)
    raw_expires = params["X-Amz-Expires"]
    if not re.fullmatch(r"[0-9]{1,6}", raw_expires) or not 1 <= int(raw_expires) <= MAX_PRESIGNED:
        raise auth_failure()
    valid_until = when + dt.timedelta(seconds=int(raw_expires))
    now = _now()
    if when - MAX_SKEW > now or now > valid_until:
        raise request_expired()
    principal, expected = _sigv4_check(request, sig, lookup, "X-Amz-Signature")
    return Verified(principal, expected, valid_until, PRESIGNED_PARAMS)


def _parse_v2_time(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise auth_failure() from None
    return as_utc(when)


def sigv2_signature(secret: str, method: str, host: str, path: str, params: Mapping[str, str],
                    digest: Callable[[], object]) -> str:
    """The SigV2 signature of ``params`` (without ``Signature``) sent to ``host`` and ``path``."""
    pairs = [f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(params[k], safe='-_.~')}"
             for k in sorted(params) if k != "Signature"]
    text = f"{method}\n{host.lower()}\n{path or '/'}\n" + "&".join(pairs)
    mac = hmac.new(secret.encode(), text.encode(), digest)  # type: ignore[arg-type]
    return base64.b64encode(mac.digest()).decode()


def verify_sigv2(request: SignedRequest, params: Mapping[str, str], lookup: Lookup) -> Verified:
    """Check a request signed with ``SignatureVersion=2`` and ``HmacSHA256`` or ``HmacSHA1``."""
    digest = _SIGV2_DIGESTS.get(params.get("SignatureMethod", ""))
    if params.get("SignatureVersion") != "2" or digest is None:
        raise auth_failure()
    if "Timestamp" in params:
        valid_until = _check_time(_parse_v2_time(params["Timestamp"]))
    elif "Expires" in params:
        valid_until = _check_expires(_parse_v2_time(params["Expires"]))
    else:
        raise auth_failure()
    principal = _principal(lookup, params.get("AWSAccessKeyId", ""))
    expected = sigv2_signature(principal.secret_key, request.method, request.headers.get("host", ""), request.path,
                               params, digest)
    if not hmac.compare_digest(expected.encode(), params.get("Signature", "").encode()):
        raise auth_failure()
    return Verified(principal, expected, valid_until, SIGV2_PARAMS)


def authenticate(request: SignedRequest, params: Mapping[str, str], lookup: Lookup) -> Verified:
    """Who signed a SigV4 (header or presigned) or SigV2 request, or AuthFailure / RequestExpired."""
    if "authorization" in request.headers:
        return verify_sigv4(request, lookup)
    if "X-Amz-Signature" in params:
        return verify_presigned(request, params, lookup)
    if "Signature" in params:
        return verify_sigv2(request, params, lookup)
    raise auth_failure()
