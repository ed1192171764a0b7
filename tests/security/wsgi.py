"""Signed EC2 requests to an in-process ``Ec2App`` (no server): the same bytes a client would send."""
from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlencode

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ivfarm.ec2.app import Ec2App

HOST = "ec2.test:8773"
FORM = "application/x-www-form-urlencoded; charset=utf-8"


def signed(access_key: str, secret_key: str, params: dict[str, str], region: str = "ivfarm-1") -> dict[str, Any]:
    """A WSGI environ for a SigV4-signed POST of ``params``; call it again to replay it as it is."""
    body = urlencode({**params, "Version": "2016-11-15"}).encode()
    request = AWSRequest(method="POST", url=f"http://{HOST}/", data=body, headers={"Content-Type": FORM})
    SigV4Auth(Credentials(access_key, secret_key), "ec2", region).add_auth(request)
    environ: dict[str, Any] = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "QUERY_STRING": "",
                               "CONTENT_TYPE": FORM, "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": HOST,
                               "body": body}
    for name, value in request.headers.items():
        if name.lower() not in ("content-type", "content-length"):
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def call(app: Ec2App, environ: dict[str, Any]) -> tuple[int, bytes]:
    """Send a prepared request; returns the status and the XML body."""
    status: list[str] = []
    run = {**environ, "wsgi.input": io.BytesIO(environ["body"])}
    body = b"".join(app(run, lambda line, headers: status.append(line)))
    return int(status[0].split()[0]), body
