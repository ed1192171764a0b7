"""Issue 13, item 6 (metadata server): a VM holding many slow connections cannot deny the
metadata service to another VM.

The router's real metadata server runs as its own process with a small descriptor limit (as any
process has one). One client (127.0.0.1) opens 100 connections (more than its 64 descriptors) and trickles half a request on
each; another (127.0.0.2) must still be answered at once. A connection that sends a byte every
0.3 s (each read well within the per-read timeout) is cut when its whole request is overdue.
Before the fix every connection got a thread and a descriptor until the process ran out of them
(``accept`` failing with EMFILE), so the second client waited in the backlog and timed out, and a
trickling client was never cut.
"""
from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.polling import poll_until

RECORD = {"meta-data": {"instance-id": "i-0000000000000000b"}, "user-data": None}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _few_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    records, pid = tmp_path / "records.json", tmp_path / "metadata.pid"
    records.write_text(json.dumps({"127.0.0.2": RECORD}))
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "vrouter.metadata_server", f"--records={records}", f"--listen=127.0.0.1:{port}",
         f"--pid-file={pid}", "--max-connections=32", "--max-per-client=16", "--request-timeout=2"],
        preexec_fn=_few_descriptors)
    try:
        poll_until(pid.exists, 10, 0.05, lambda: "the metadata server did not start")
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _connect(port: int, source: str, timeout: float = 5) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


def _get(port: int, source: str, path: str) -> bytes:
    with _connect(port, source) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


def test_many_slow_connections_of_one_client_leave_the_others_served(server: int) -> None:
    held = []
    try:
        for _ in range(100):  # more than the server has descriptors
            try:
                sock = _connect(server, "127.0.0.1", timeout=0.05)
                sock.sendall(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\n")  # never finished
                held.append(sock)
            except OSError:
                pass
        started = time.monotonic()
        answer = _get(server, "127.0.0.2", "/latest/meta-data/instance-id")
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"i-0000000000000000b")
        assert time.monotonic() - started < 2
    finally:
        for sock in held:
            sock.close()


def test_a_request_trickling_in_is_cut_when_it_is_overdue(server: int) -> None:
    with _connect(server, "127.0.0.3") as sock:
        started = time.monotonic()
        cut = False
        for byte in b"GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                cut = True
                break
            time.sleep(0.3)
            if time.monotonic() - started > 6:
                break
        if not cut:
            sock.settimeout(1)
            try:
                cut = sock.recv(1) == b""
            except OSError:
                cut = True
        assert cut and time.monotonic() - started < 6
