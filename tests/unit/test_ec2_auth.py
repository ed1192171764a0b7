"""Signature checks of the EC2 facade, on requests signed by botocore's own signers."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, quote, urlencode

import pytest
from botocore.auth import SigV2Auth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ivfarm.ec2.auth import Principal, SignedRequest, authenticate
from ivfarm.ec2.errors import Ec2Error

ACCESS, SECRET, REGION = "AKIAIVFARMUNITTEST00", "s" * 40, "ivfarm-1"
URL = "http://ec2.example:8773/"
BODY = urlencode({"Action": "DescribeInstances", "Version": "2016-11-15"}).encode()


def lookup(access_key: str) -> Principal | None:
    return Principal(7, "alpha", SECRET) if access_key == ACCESS else None


def v4(body: bytes = BODY, when: dt.datetime | None = None, **headers: str) -> SignedRequest:
    request = AWSRequest(method="POST", url=URL, data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded", **headers})
    now = when or dt.datetime.now(dt.UTC)
    with mock.patch("botocore.auth.get_current_datetime", return_value=now):
        SigV4Auth(Credentials(ACCESS, SECRET), "ec2", REGION).add_auth(request)
    sent = {k.lower(): v for k, v in request.headers.items()}
    sent["host"] = "ec2.example:8773"
    return SignedRequest("POST", sent["host"], "/", "", sent, body)


def v2(**changes: str) -> tuple[SignedRequest, dict[str, str]]:
    params = {"Action": "DescribeInstances", "AWSAccessKeyId": ACCESS, "SignatureVersion": "2",
              "SignatureMethod": "HmacSHA256",
              "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    params.update(changes)
    _, params["Signature"] = SigV2Auth(Credentials(ACCESS, SECRET)).calc_signature(AWSRequest("POST", URL), params)
    return SignedRequest("POST", "ec2.example:8773", "/", "", {"host": "ec2.example:8773"}, b""), params


def fails(request: SignedRequest, params: dict[str, str] | None = None, code: str = "AuthFailure") -> None:
    with pytest.raises(Ec2Error) as excinfo:
        authenticate(request, params or {}, lookup)
    assert (excinfo.value.code, excinfo.value.status) == {"AuthFailure": (code, 401), "RequestExpired": (code, 400)}[code]


def test_sigv4_accepted_and_names_the_farm() -> None:
    assert authenticate(v4(), {}, lookup).principal == Principal(7, "alpha", SECRET)


def test_sigv4_refusals() -> None:
    good = v4()
    fails(SignedRequest("POST", good.host, "/", "", good.headers, BODY + b"&x=1"))
    fails(SignedRequest("POST", good.host, "/other", "", good.headers, BODY))
    fails(SignedRequest("POST", good.host, "/", "", {**good.headers, "host": "evil:1"}, BODY))
    fails(v4(when=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16)), code="RequestExpired")
    authenticate(v4(when=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=14)), {}, lookup)
    wrong_scope = dict(good.headers)
    wrong_scope["authorization"] = wrong_scope["authorization"].replace(f"/{REGION}/", "/us-east-1/")
    fails(SignedRequest("POST", good.host, "/", "", wrong_scope, BODY))
    no_date = {k: v for k, v in good.headers.items() if k != "x-amz-date"}
    fails(SignedRequest("POST", good.host, "/", "", no_date, BODY))


def test_declared_payload_hash_must_be_the_body_hash() -> None:
    honest = v4(**{"X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()})
    authenticate(honest, {}, lookup)
    lying = v4(**{"X-Amz-Content-SHA256": hashlib.sha256(b"other").hexdigest()})
    fails(lying)


def test_sigv2_accepted_with_timestamp_or_expires() -> None:
    request, params = v2()
    assert authenticate(request, params, lookup).principal.farm_name == "alpha"
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    request, params = v2()
    del params["Timestamp"]
    params["Expires"] = later
    _, params["Signature"] = SigV2Auth(Credentials(ACCESS, SECRET)).calc_signature(
        AWSRequest("POST", URL), {k: v for k, v in params.items() if k != "Signature"})
    authenticate(request, params, lookup)


@pytest.mark.parametrize(("changes", "code"), [
    ({"SignatureVersion": "1"}, "AuthFailure"),
    ({"Timestamp": "2001-01-01T00:00:00Z"}, "RequestExpired"),
    ({"Timestamp": "yesterday"}, "AuthFailure"),
    ({"AWSAccessKeyId": "AKIAUNKNOWN000000000"}, "AuthFailure"),
])
def test_sigv2_refusals(changes: dict[str, Any], code: str) -> None:
    request, params = v2(**changes)
    fails(request, params, code)


def test_nothing_to_check_is_a_failure() -> None:
    fails(SignedRequest("POST", "h", "/", "", {"host": "h"}, BODY))
    request, params = v2()
    fails(request, {**params, "Signature": params["Signature"][:-2] + "AA"})


def signed_v4(region: str, service: str, host: str = "ec2.example:8773") -> SignedRequest:
    request = AWSRequest(method="POST", url=f"http://{host}/", data=BODY,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    SigV4Auth(Credentials(ACCESS, SECRET), service, region).add_auth(request)
    sent = {k.lower(): v for k, v in request.headers.items()}
    sent["host"] = host
    return SignedRequest("POST", host, "/", "", sent, BODY)


@pytest.mark.parametrize(("region", "service"), [("0", "127"), ("example", "cloud"), ("us-east-1", "ec2")])
def test_sigv4_verified_with_the_scope_the_client_signed(region: str, service: str) -> None:
    request = signed_v4(region, service)
    assert authenticate(request, {}, lookup).principal.farm_name == "alpha"
    other = request.headers["authorization"].replace(f"/{region}/{service}/", "/ivfarm-1/ec2/")
    fails(SignedRequest("POST", request.host, "/", "", {**request.headers, "authorization": other}, BODY))


def presigned(expires: int = 300, when: dt.datetime | None = None) -> tuple[SignedRequest, dict[str, str]]:
    """A GET URL presigned by botocore, as the server receives it."""
    query = urlencode({"Action": "DescribeInstances", "Version": "2016-11-15"})
    request = AWSRequest(method="GET", url=f"{URL}?{query}")
    with mock.patch("botocore.auth.get_current_datetime", return_value=when or dt.datetime.now(dt.UTC)):
        SigV4QueryAuth(Credentials(ACCESS, SECRET), "ec2", "anywhere-9", expires=expires).add_auth(request)
    raw = request.url.split("?", 1)[1]
    return (SignedRequest("GET", "ec2.example:8773", "/", raw, {"host": "ec2.example:8773"}, b""),
            dict(parse_qsl(raw, keep_blank_values=True)))


def test_presigned_sigv4_in_the_query_string() -> None:
    request, params = presigned()
    verified = authenticate(request, params, lookup)
    assert verified.principal.farm_name == "alpha" and "X-Amz-Signature" in verified.consumed
    week_old = dt.datetime.now(dt.UTC) - dt.timedelta(days=6)
    authenticate(*presigned(604800, week_old), lookup)


def test_presigned_refusals() -> None:
    fails(*presigned(60, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)), code="RequestExpired")
    fails(*presigned(604801), code="AuthFailure")
    request, params = presigned()
    tampered = request.query.replace("DescribeInstances", "DescribeImages")
    fails(SignedRequest("GET", request.host, "/", tampered, request.headers, b""),
          {**params, "Action": "DescribeImages"})
    fails(SignedRequest("GET", "evil:1", "/", request.query, {"host": "evil:1"}, b""), params)


def test_sigv2_hmac_sha1() -> None:
    request, params = v2(SignatureMethod="HmacSHA1")
    pairs = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
                     if k != "Signature")
    text = f"POST\nec2.example:8773\n/\n{pairs}"
    params["Signature"] = base64.b64encode(hmac.new(SECRET.encode(), text.encode(), hashlib.sha1).digest()).decode()
    assert authenticate(request, params, lookup).principal.farm_name == "alpha"
    fails(request, {**params, "SignatureMethod": "HmacSHA256"})
    fails(request, {**params, "SignatureMethod": "HmacMD5"})


def test_any_scope_keeps_the_other_checks() -> None:
    request = signed_v4("0", "127")
    auth = request.headers["authorization"]
    day = auth.split("Credential=")[1].split("/")[1]
    other_day = auth.replace(f"/{day}/", "/20000101/")
    no_host = auth.replace("SignedHeaders=content-type;host;x-amz-date", "SignedHeaders=content-type;x-amz-date")
    bad_scope = auth.replace("/aws4_request", "/aws5_request")
    for changed in (other_day, no_host, bad_scope):
        fails(SignedRequest("POST", request.host, "/", "", {**request.headers, "authorization": changed}, BODY))
    fails(SignedRequest("POST", request.host, "/", "", {**request.headers, "x-amz-content-sha256": "0" * 64}, BODY))
