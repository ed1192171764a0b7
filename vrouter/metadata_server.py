"""The farm router's EC2 metadata service: an HTTP server answering each VM from its own record.

    python -m vrouter.metadata_server --records FILE [--listen 169.254.169.254:80]
                                      [--pid-file=FILE] [--daemon] [--max-connections=256]
                                      [--max-per-client=16] [--request-timeout=10]

The netns router runs it inside its namespace (so it is reachable from that farm's LAN only).
The asking VM is identified by its source address alone, which the farm's anti-spoofing filter
guarantees; a source with no record gets 404 for everything but ``/``. The records file (see
vrouter.imds) is re-read whenever it changes (ivfarm replaces it atomically).

IMDSv1 (plain GETs) and IMDSv2 are both served: ``PUT /latest/api/token`` with
``X-aws-ec2-metadata-token-ttl-seconds: 1..21600`` returns a session token; a GET carrying
``X-aws-ec2-metadata-token`` must present a live token issued to the same address (else 401).
Tokens are HMAC-signed expiry times under a per-process secret: nothing is stored, and a restart
invalidates them (clients ask for a new one on 401, as they do on EC2). Each record's options
(vrouter.imds.Options) apply to its address: with tokens required a GET without a token gets 401;
with the endpoint disabled every request gets 403; a token leaves with the hop limit as its IP TTL,
so it does not reach anything routed behind the instance (a container network, a proxy).
Connections are bounded: at most ``--max-connections`` at once and ``--max-per-client`` from one
address (more are closed as they arrive), and each request must be complete within
``--request-timeout`` seconds however slowly its bytes trickle in (the connection is cut then),
so a VM holding many slow connections cannot deny the service to the others.
Stdlib (and the stdlib-only ``fileops``) only: the router must not depend on the control plane.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import os
import pwd
import secrets
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fileops.atomic import atomic_write
from vrouter.imds import METADATA_IP, METADATA_PORT, InstanceDocs, Options, answer, parse_records

TOKEN_PATH = "/latest/api/token"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
MAX_TTL = 21600


class Tokens:
    """IMDSv2 session tokens bound to the address that asked for them."""

    def __init__(self, secret: bytes | None = None, clock: Callable[[], float] = time.time) -> None:
        self.secret = secret or secrets.token_bytes(32)
        self.clock = clock

    def issue(self, client: str, ttl: int) -> str:
        expiry = int(self.clock()) + ttl
        return f"{expiry}.{self._sign(client, expiry)}"

    def valid(self, client: str, token: str) -> bool:
        expiry, _, signature = token.partition(".")
        if not expiry.isdigit() or int(expiry) < self.clock():
            return False
        return hmac.compare_digest(signature, self._sign(client, int(expiry)))

    def _sign(self, client: str, expiry: int) -> str:
        return hmac.new(self.secret, f"{client}|{expiry}".encode(), hashlib.sha256).hexdigest()


class Records:
    """The records file, re-read when it is replaced or changed (inode, mtime or size)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._docs: dict[str, InstanceDocs] = {}
        self._lock = threading.Lock()
        self._dir_fd: int | None = None

    def pin_directory(self) -> None:
        """Keep the records' directory open, to find the file through it once privileges are dropped
        (the directories above it may be closed to the server's user)."""
        self._dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)

    def _name(self) -> str | Path:
        return self.path.name if self._dir_fd is not None else self.path

    def get(self, ip: str) -> InstanceDocs | None:
        try:
            stat = os.stat(self._name(), dir_fd=self._dir_fd)
            stamp: tuple[int, int, int] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._docs = self._read() if stamp is not None else {}
                self._stamp = stamp
            return self._docs.get(ip)

    def _read(self) -> dict[str, InstanceDocs]:
        try:
            fd = os.open(self._name(), os.O_RDONLY, dir_fd=self._dir_fd)
            with os.fdopen(fd, encoding="utf-8") as stream:
                return parse_records(stream.read())
        except (OSError, ValueError) as exc:
            # serve nobody rather than stale data: an address may have changed hands
            print(f"metadata: ignoring {self.path}: {exc}", file=sys.stderr)
            return {}


@dataclass(frozen=True)
class Limits:
    """How many connections the server holds at once, from one address, and for how long per request."""

    connections: int = 256
    per_client: int = 16
    request_timeout_s: float = 10.0


class MetadataServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of connections waits to be admitted or refused, not in SYN retries

    def __init__(self, address: tuple[str, int], records: Records, tokens: Tokens | None = None,
                 limits: Limits = Limits()) -> None:
        self.records = records
        self.tokens = tokens or Tokens()
        self.limits = limits
        self._open: dict[socket.socket, tuple[str, float]] = {}  # connection -> (client, deadline)
        self._open_lock = threading.Lock()
        super().__init__(address, MetadataHandler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Admit a connection while the server and its client are under their caps (else it is closed)."""
        client = client_address[0]
        with self._open_lock:
            if len(self._open) >= self.limits.connections or \
                    sum(1 for held, _ in self._open.values() if held == client) >= self.limits.per_client:
                return False
            self._open[request] = (client, time.monotonic() + self.limits.request_timeout_s)
        return True

    def renew(self, request: socket.socket) -> None:
        """A request was answered: the next one on this connection gets a full timeout."""
        with self._open_lock:
            if request in self._open:
                self._open[request] = (self._open[request][0], time.monotonic() + self.limits.request_timeout_s)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        """Cut connections whose request is overdue (serve_forever calls this twice a second)."""
        now = time.monotonic()
        with self._open_lock:
            overdue = [request for request, (_, deadline) in self._open.items() if deadline < now]
        for request in overdue:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)  # its handler's read ends and the thread closes it

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of our own address (slow, and it would
        send a query out of the router)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class MetadataHandler(BaseHTTPRequestHandler):
    server: MetadataServer
    protocol_version = "HTTP/1.1"
    server_version = "EC2ws"
    sys_version = ""
    timeout = 10  # idle keep-alive connections go away

    def handle_one_request(self) -> None:
        super().handle_one_request()
        self.server.renew(self.connection)

    def do_GET(self) -> None:
        self._get(send_body=True)

    def do_HEAD(self) -> None:
        self._get(send_body=False)

    def do_PUT(self) -> None:
        close = {"Connection": "close"}  # a request body, if any, stays unread
        ttl = self.headers.get(TTL_HEADER, "")
        _, options = self._record()
        if not options.endpoint_enabled:
            self._reply(HTTPStatus.FORBIDDEN, extra=close)
        elif urlsplit(self.path).path != TOKEN_PATH:
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, extra=close)
        elif "X-Forwarded-For" in self.headers:  # as EC2: no tokens through proxies
            self._reply(HTTPStatus.FORBIDDEN, extra=close)
        elif not ttl.isdigit() or not 1 <= int(ttl) <= MAX_TTL:
            self._reply(HTTPStatus.BAD_REQUEST, extra=close)
        else:
            token = self.server.tokens.issue(self.client_address[0], int(ttl))
            self.connection.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, options.hop_limit)
            self._reply(HTTPStatus.OK, token.encode(), extra={**close, TTL_HEADER: ttl})

    def _record(self) -> tuple[InstanceDocs | None, Options]:
        """The asking address's documents and the options that apply to it."""
        docs = self.server.records.get(self.client_address[0])
        return docs, docs.options if docs is not None else Options()

    def _get(self, send_body: bool) -> None:
        path = urlsplit(self.path).path
        token = self.headers.get(TOKEN_HEADER)
        docs, options = self._record()
        if not options.endpoint_enabled:
            self._reply(HTTPStatus.FORBIDDEN, send_body=send_body)
        elif path == TOKEN_PATH:
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, send_body=send_body)
        elif token is not None and not self.server.tokens.valid(self.client_address[0], token):
            self._reply(HTTPStatus.UNAUTHORIZED, send_body=send_body)
        elif token is None and options.tokens_required:
            self._reply(HTTPStatus.UNAUTHORIZED, send_body=send_body)
        else:
            found = answer(docs, path)
            if found is None:
                self._reply(HTTPStatus.NOT_FOUND, send_body=send_body)
            else:
                self._reply(HTTPStatus.OK, found.body, found.content_type, send_body=send_body)

    def _reply(
        self, status: HTTPStatus, body: bytes | None = None, content_type: str = "text/plain",
        *, extra: dict[str, str] | None = None, send_body: bool = True,
    ) -> None:
        if body is None:
            body = status.phrase.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """No per-request log: guests must not be able to fill the router host's disk."""


def _daemonize() -> None:
    """Fork away from the caller (which exits 0 at once), in a session of its own, stdio on /dev/null."""
    if os.fork():
        os._exit(0)
    os.setsid()
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)


def drop_privileges(entry: pwd.struct_passwd) -> None:
    """Become this user (and its group, no supplementary groups) for good."""
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vrouter.metadata_server", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, required=True, help="JSON records file (private IP -> record)")
    parser.add_argument("--listen", type=_listen, default=(METADATA_IP, METADATA_PORT), help="HOST:PORT")
    parser.add_argument("--pid-file", type=Path, help="written once the server listens")
    parser.add_argument("--daemon", action="store_true", help="fork into the background once listening")
    parser.add_argument("--user", help="run as this user once listening (the records file must be readable by it)")
    parser.add_argument("--max-connections", type=int, default=Limits.connections, help="connections at once")
    parser.add_argument("--max-per-client", type=int, default=Limits.per_client, help="connections from one address")
    parser.add_argument("--request-timeout", type=float, default=Limits.request_timeout_s,
                        help="seconds a whole request may take to arrive")
    args = parser.parse_args(argv)
    limits = Limits(args.max_connections, args.max_per_client, args.request_timeout)
    records = Records(args.records)
    try:
        user = pwd.getpwnam(args.user) if args.user else None
        server = MetadataServer(args.listen, records, limits=limits)
        if user is not None:
            records.pin_directory()
    except (OSError, KeyError) as exc:  # reported through our exit status before daemonizing
        where = f"{args.listen[0]}:{args.listen[1]}"
        print(f"metadata: cannot listen on {where} as {args.user or 'root'}: {exc}", file=sys.stderr)
        return 1
    if args.daemon:
        _daemonize()
    if args.pid_file:
        atomic_write(args.pid_file, f"{os.getpid()}\n")
    if user is not None:
        drop_privileges(user)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
