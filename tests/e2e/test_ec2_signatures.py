"""Authentication: SigV4 (header or presigned URL) with the client's scope, SigV2 with SHA256 or SHA1; failures are 401."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
from collections.abc import Iterator
from typing import Any
from unittest import mock
from urllib.parse import quote, urlencode, urlsplit

import pytest
from botocore.auth import SigV2Auth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.e2e.ec2_support import Ec2Site

FORM = "application/x-www-form-urlencoded; charset=utf-8"
PARAMS = {"Action": "DescribeInstances", "Version": "2016-11-15"}


@pytest.fixture
def send(ec2_site: Ec2Site) -> Iterator[Any]:
    """POST or GET to the endpoint with exactly the headers given; returns (status, body)."""
    parts = urlsplit(ec2_site.endpoint)

    def request(method: str, body: bytes, headers: dict[str, str], query: str = "") -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request(method, "/" + (f"?{query}" if query else ""), body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    yield request


def sigv4(site: Ec2Site, body: bytes, secret: str | None = None, access: str | None = None,
          region: str | None = None, when: dt.datetime | None = None, service: str = "ec2") -> dict[str, str]:
    keys = site.farms["alpha"]
    request = AWSRequest(method="POST", url=site.endpoint, data=body, headers={"Content-Type": FORM})
    signer = SigV4Auth(Credentials(access or keys.access_key, secret or keys.secret_key), service,
                       region or site.site.region)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when or dt.datetime.now(dt.UTC)):
        signer.add_auth(request)
    return dict(request.headers.items())


def sigv2(site: Ec2Site, params: dict[str, str], method: str = "POST", secret: str | None = None,
          timestamp: str | None = None, signature_method: str = "HmacSHA256") -> dict[str, str]:
    keys = site.farms["alpha"]
    signed = {**params, "AWSAccessKeyId": keys.access_key, "SignatureVersion": "2",
              "SignatureMethod": signature_method,
              "Timestamp": timestamp or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    request = AWSRequest(method=method, url=site.endpoint)
    _, signed["Signature"] = SigV2Auth(Credentials(keys.access_key, secret or keys.secret_key)).calc_signature(
        request, signed)
    return signed


def assert_auth_failure(status: int, body: bytes) -> None:
    assert status == 401
    assert b"<Code>AuthFailure</Code>" in body and b"<RequestID>" in body


def assert_expired(status: int, body: bytes) -> None:
    assert status == 400
    assert b"<Code>RequestExpired</Code>" in body and b"<RequestID>" in body


def test_sigv4_as_boto3_signs_is_accepted(ec2_site: Ec2Site, send: Any) -> None:
    body = urlencode(PARAMS).encode()
    status, answer = send("POST", body, sigv4(ec2_site, body))
    assert status == 200 and b"<DescribeInstancesResponse" in answer


@pytest.mark.parametrize(("region", "service"), [("0", "127"), ("us-east-1", "ec2"), ("example", "cloud")])
def test_sigv4_with_any_credential_scope_is_accepted(ec2_site: Ec2Site, send: Any, region: str, service: str) -> None:
    body = urlencode(PARAMS).encode()
    status, answer = send("POST", body, sigv4(ec2_site, body, region=region, service=service))
    assert status == 200 and b"<DescribeInstancesResponse" in answer


def presigned_query(site: Ec2Site, expires: int, when: dt.datetime | None = None) -> str:
    keys = site.farms["alpha"]
    request = AWSRequest(method="GET", url=f"{site.endpoint}?{urlencode(PARAMS)}")
    signer = SigV4QueryAuth(Credentials(keys.access_key, keys.secret_key), "ec2", "anywhere", expires=expires)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when or dt.datetime.now(dt.UTC)):
        signer.add_auth(request)
    return request.url.split("?", 1)[1]


def test_presigned_url_is_accepted_until_it_expires(ec2_site: Ec2Site, send: Any) -> None:
    client = ec2_site.client("alpha")
    for method in ("GET", "POST"):  # the method is signed: boto3 presigns EC2 as POST unless told
        url = client.generate_presigned_url("describe_instances", Params={}, ExpiresIn=300, HttpMethod=method)
        status, answer = send(method, b"", {}, query=url.split("?", 1)[1])
        assert status == 200 and b"<DescribeInstancesResponse" in answer
    week = presigned_query(ec2_site, 604800, dt.datetime.now(dt.UTC) - dt.timedelta(days=6))
    assert send("GET", b"", {}, query=week)[0] == 200
    assert_expired(*send("GET", b"", {}, query=presigned_query(
        ec2_site, 60, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2))))
    assert_auth_failure(*send("GET", b"", {}, query=presigned_query(ec2_site, 604801)))
    tampered = presigned_query(ec2_site, 60).replace("DescribeInstances", "DescribeKeyPairs")
    assert_auth_failure(*send("GET", b"", {}, query=tampered))


def test_sigv2_hmac_sha1_is_accepted(ec2_site: Ec2Site, send: Any) -> None:
    keys = ec2_site.farms["alpha"]
    params = {**PARAMS, "AWSAccessKeyId": keys.access_key, "SignatureVersion": "2", "SignatureMethod": "HmacSHA1",
              "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    host = urlsplit(ec2_site.endpoint).netloc
    pairs = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
    digest = hmac.new(keys.secret_key.encode(), f"POST\n{host}\n/\n{pairs}".encode(), hashlib.sha1).digest()
    params["Signature"] = base64.b64encode(digest).decode()
    status, answer = send("POST", urlencode(params).encode(), {"Content-Type": FORM})
    assert status == 200 and b"<DescribeInstancesResponse" in answer


@pytest.mark.parametrize("change", ["secret", "access", "stale", "future"])
def test_sigv4_with_wrong_credentials_or_time_fails(ec2_site: Ec2Site, send: Any, change: str) -> None:
    body = urlencode(PARAMS).encode()
    now = dt.datetime.now(dt.UTC)
    kwargs: dict[str, Any] = {
        "secret": {"secret": "x" * 40},
        "access": {"access": "AKIAUNKNOWNUNKNOWN00"},
        "stale": {"when": now - dt.timedelta(minutes=16)},
        "future": {"when": now + dt.timedelta(minutes=16)},
    }[change]
    check = assert_expired if change in ("stale", "future") else assert_auth_failure
    check(*send("POST", body, sigv4(ec2_site, body, **kwargs)))


def test_sigv4_within_fifteen_minutes_is_accepted(ec2_site: Ec2Site, send: Any) -> None:
    body = urlencode(PARAMS).encode()
    headers = sigv4(ec2_site, body, when=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=14))
    assert send("POST", body, headers)[0] == 200


def test_tampered_body_fails(ec2_site: Ec2Site, send: Any) -> None:
    body = urlencode(PARAMS).encode()
    headers = sigv4(ec2_site, body)
    tampered = urlencode({**PARAMS, "Action": "TerminateInstances", "InstanceId.1": "i-0123456789abcdef0"}).encode()
    headers["Content-Length"] = str(len(tampered))
    assert_auth_failure(*send("POST", tampered, headers))
    lying = {**sigv4(ec2_site, body), "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    assert_auth_failure(*send("POST", body, lying))


def test_missing_or_malformed_authorization_fails(ec2_site: Ec2Site, send: Any) -> None:
    body = urlencode(PARAMS).encode()
    assert_auth_failure(*send("POST", body, {"Content-Type": FORM}))
    headers = sigv4(ec2_site, body)
    headers["Authorization"] = headers["Authorization"].replace("SignedHeaders=content-type;host;x-amz-date",
                                                                "SignedHeaders=content-type;x-amz-date")
    assert_auth_failure(*send("POST", body, headers))
    headers["Authorization"] = "AWS3-HTTPS AWSAccessKeyId=x,Algorithm=HmacSHA256,Signature=y"
    assert_auth_failure(*send("POST", body, headers))


def test_sigv2_as_euca2ools_signs_is_accepted(ec2_site: Ec2Site, send: Any) -> None:
    posted = urlencode(sigv2(ec2_site, PARAMS)).encode()
    status, answer = send("POST", posted, {"Content-Type": FORM})
    assert status == 200 and b"<DescribeInstancesResponse" in answer
    status, answer = send("GET", b"", {}, query=urlencode(sigv2(ec2_site, PARAMS, method="GET")))
    assert status == 200 and b"<DescribeInstancesResponse" in answer


def test_sigv2_failures(ec2_site: Ec2Site, send: Any) -> None:
    stale = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for params in (sigv2(ec2_site, PARAMS, secret="y" * 40), sigv2(ec2_site, PARAMS, signature_method="HmacSHA1")):
        assert_auth_failure(*send("POST", urlencode(params).encode(), {"Content-Type": FORM}))
    assert_expired(*send("POST", urlencode(sigv2(ec2_site, PARAMS, timestamp=stale)).encode(), {"Content-Type": FORM}))
    tampered = {**sigv2(ec2_site, PARAMS), "Action": "DescribeKeyPairs"}
    assert_auth_failure(*send("POST", urlencode(tampered).encode(), {"Content-Type": FORM}))
    unknown = {**sigv2(ec2_site, PARAMS), "AWSAccessKeyId": "AKIAUNKNOWNUNKNOWN00"}
    assert_auth_failure(*send("POST", urlencode(unknown).encode(), {"Content-Type": FORM}))


def test_auth_failure_changes_nothing(ec2_site: Ec2Site, send: Any) -> None:
    body = urlencode({"Action": "CreateKeyPair", "KeyName": "sneaky", "Version": "2016-11-15"}).encode()
    assert_auth_failure(*send("POST", body, sigv4(ec2_site, body, secret="z" * 40)))
    assert ec2_site.client("alpha").describe_key_pairs()["KeyPairs"] == []
