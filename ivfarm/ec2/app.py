"""The WSGI application: authenticate, dispatch ``Action`` to its handler, render XML or an error."""
from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import OperationalError

from ivfarm.cloud import Cloud
from ivfarm.ec2 import (
    handlers,  # noqa: F401 - registers every action
    metrics,
)
from ivfarm.ec2.auth import Principal, SignedRequest, Verified, authenticate
from ivfarm.ec2.context import RequestContext
from ivfarm.ec2.errors import Ec2Error, auth_failure, from_ivfarm, internal, unavailable
from ivfarm.ec2.limits import FarmLimits
from ivfarm.ec2.params import Params, parse_query
from ivfarm.ec2.registry import ACTIONS
from ivfarm.ec2.replay import MemoryReplayGuard, ReplayGuard, StoreReplayGuard, mutating
from ivfarm.ec2.serializer import render, render_error
from ivfarm.errors import IvfarmError
from ivfarm.store.models import Farm

log = logging.getLogger(__name__)
access_log = logging.getLogger("ivfarm.ec2.access")

MAX_BODY = 2 * 1024 * 1024
_PRINCIPAL = select(Farm.id, Farm.name, Farm.secret_key).where(
    Farm.access_key == bindparam("key"), Farm.status == "active")
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 405: "Method Not Allowed",
            412: "Precondition Failed", 413: "Request Entity Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}


def too_large() -> Ec2Error:
    """What a body over the limit answers (decided before more than the limit is read)."""
    return Ec2Error("RequestEntityTooLarge", f"The request body is larger than {MAX_BODY} bytes", 413)


def _replay_guard(cloud: Cloud, limits: dict[str, Any], workers: int) -> ReplayGuard:
    """The guard ``ec2.limits.replay_guard`` asks for (auto: shared as soon as it may have to be)."""
    entries, grace = int(limits["replay_entries"]), float(limits["replay_grace_s"])
    choice = limits["replay_guard"]
    if choice == "store" or choice == "auto" and (workers > 1 or not cloud.store.is_sqlite):
        return StoreReplayGuard(cloud.store, entries, grace)
    return MemoryReplayGuard(entries, grace)


class Ec2App:
    """The EC2 Query API of one cloud."""

    def __init__(self, cloud: Cloud, replay: ReplayGuard | None = None, workers: int = 1) -> None:
        """The API of ``cloud`` as served by one of ``workers`` processes: each enforces its share of
        the farms' request limits; the replay guard is shared when more than one process serves."""
        self.cloud = cloud
        self.region = str(cloud.config.get("ec2.region"))
        limits = cloud.config.get("ec2.limits")
        self.limits = FarmLimits(math.ceil(int(limits["concurrent"]) / workers),
                                 float(limits["rate_per_s"]) / workers, math.ceil(int(limits["burst"]) / workers))
        self.replay = replay or _replay_guard(cloud, limits, workers)

    def lookup(self, access_key: str) -> Principal | None:
        """The active farm an access key belongs to."""
        with self.cloud.store.engine.connect() as conn:
            row = conn.execute(_PRINCIPAL, {"key": access_key}).first()
        return Principal(row.id, row.name, row.secret_key) if row else None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        info = {"action": "-", "farm": "-"}
        status, body = self._respond(environ, request_id, info)
        start_response(f"{status} {_REASONS.get(status, 'Error')}", [
            ("Content-Type", "text/xml;charset=UTF-8"), ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", request_id),
        ])
        seconds = time.perf_counter() - started
        metrics.observe(info["action"], status, seconds)
        method = environ.get("REQUEST_METHOD", "-")[:16]
        access_log.info("%s %s farm=%s status=%d %.1fms", method, info["action"], info["farm"], status, seconds * 1000,
                        extra={"request_id": request_id, "farm": info["farm"], "action": info["action"],
                               "method": method, "status": status, "duration_ms": round(seconds * 1000, 2)})
        return [body]

    def _respond(self, environ: dict[str, Any], request_id: str, info: dict[str, str]) -> tuple[int, bytes]:
        try:
            action, tree = self._handle(environ, request_id, info)
            return 200, render(action, tree, request_id)
        except Ec2Error as exc:
            return exc.status, render_error(exc.code, exc.message, request_id)
        except IvfarmError as exc:
            error = from_ivfarm(exc)
            if error.status >= 500:
                log.error("request %s (%s): %s", request_id, info["action"], exc)
            return error.status, render_error(error.code, error.message, request_id)
        except OperationalError as exc:  # the store is unreachable: answered at once, the client retries
            log.error("request %s (%s): state store unavailable: %s", request_id, info["action"],
                      str(exc.orig).splitlines()[0] if exc.orig else exc)
            error = unavailable()
            return error.status, render_error(error.code, error.message, request_id)
        except Exception:
            log.exception("request %s (%s) failed", request_id, info["action"])
            error = internal()
            return error.status, render_error(error.code, error.message, request_id)

    def _handle(self, environ: dict[str, Any], request_id: str, info: dict[str, str]) -> tuple[str, Any]:
        request, params = self._read(environ)
        verified = authenticate(request, params, self.lookup)
        info["farm"] = verified.principal.farm_name
        with self.limits.admit(verified.principal.farm_id):
            return self._dispatch(request, params, verified, request_id, info)

    def _dispatch(self, request: SignedRequest, params: dict[str, str], verified: Verified, request_id: str,
                  info: dict[str, str]) -> tuple[str, Any]:
        principal = verified.principal
        params = {k: v for k, v in params.items() if k not in verified.consumed}
        name = params.pop("Action", "")
        params.pop("Version", None)
        handler = ACTIONS.get(name)
        if handler is None:
            raise Ec2Error("InvalidAction", f"The action {name[:64]!r} is not valid for this web service.")
        info["action"] = name
        if mutating(name) and not self.replay.admit(principal.farm_id, verified.signature, verified.valid_until):
            log.warning("request %s (%s): replayed signature refused for farm %s", request_id, name, principal.farm_name)
            raise auth_failure()
        root = Params(params)
        ctx = RequestContext(self.cloud, principal, request_id, root.boolean("DryRun"), request.host)
        tree = handler(ctx, root)
        if not ctx.proceeded:
            raise RuntimeError(f"handler of {name} returned without calling proceed()")
        return name, tree

    @staticmethod
    def _read(environ: dict[str, Any]) -> tuple[SignedRequest, dict[str, str]]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if method not in ("GET", "POST"):
            raise Ec2Error("UnsupportedHttpVerb", f"The HTTP method {method[:16]} is not supported", 405)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise Ec2Error("InvalidParameterValue", "Content-Length is not a number") from None
        if length > MAX_BODY or length < 0:
            raise too_large()
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        body = environ["wsgi.input"].read(MAX_BODY + 1 if chunked else length) if length or chunked else b""
        if len(body) > MAX_BODY:
            raise too_large()
        query = environ.get("QUERY_STRING", "")
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        if environ.get("CONTENT_LENGTH"):
            headers["content-length"] = environ["CONTENT_LENGTH"]
        try:
            form = body.decode("utf-8") if method == "POST" else ""
        except UnicodeDecodeError:
            raise Ec2Error("InvalidParameterValue", "The request body is not UTF-8 form data") from None
        params = parse_query(query)
        for name, value in parse_query(form).items():
            if name in params:
                raise Ec2Error("InvalidParameterValue", f"The parameter {name[:64]} is given more than once")
            params[name] = value
        request = SignedRequest(method, headers.get("host", ""), environ.get("PATH_INFO", "/") or "/", query, headers, body)
        return request, params
