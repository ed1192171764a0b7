"""Serve the EC2 app with waitress (threaded); stop cleanly on SIGTERM or SIGINT.

Stopping closes the listening socket first, lets requests in flight finish and their answers
go out, then lets the embedded provisioner (unless disabled) finish the jobs it is running
(queued jobs stay in the store for the next provisioner).
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from waitress import create_server, wasyncore

from ivfarm.cloud import Cloud
from ivfarm.ec2.app import Ec2App
from ivfarm.errors import ConfigError
from ivfarm.services.jobs.provisioner import Provisioner

log = logging.getLogger("ivfarm.ec2.server")
DRAIN_S = 30.0


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too; port 0 picks a free one) as a pair."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536 or not host:
        raise ConfigError(f"listen address must be HOST:PORT, not {value!r}")
    return host.strip("[]"), int(port)


def _busy(channels: dict[int, Any], app: Ec2App) -> bool:
    """True while a request is being handled or an answer is still being written."""
    if app.in_flight:
        return True
    return any(getattr(c, "requests", None) or getattr(c, "total_outbufs_len", 0) for c in channels.values())


def serve(cloud: Cloud, listen: str, threads: int = 8, embedded: bool = True) -> None:
    """Run the EC2 endpoint until SIGTERM/SIGINT, with one embedded provisioner unless not ``embedded``."""
    host, port = parse_listen(listen)
    app = Ec2App(cloud)
    try:
        server = create_server(app, host=host, port=port, threads=threads, ident="ivfarm", expose_tracebacks=False)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {listen}: {exc.strerror or exc}") from exc
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    provisioner = Provisioner(cloud, int(cloud.config.get("ec2.provision_workers"))) if embedded else None
    if provisioner is not None:
        provisioner.start()
    channels = server._map  # waitress's socket map: the listener, its trigger and client connections
    log.info("ivfarm EC2 endpoint on http://%s:%s/ (region %s)", host, server.effective_port, app.region)
    try:
        while not stop.is_set():
            wasyncore.loop(timeout=0.5, map=channels, count=1)
        log.info("stopping: no new connections; finishing requests in flight")
        wasyncore.dispatcher.close(server)  # the listening socket only; the loop keeps serving open ones
        deadline = time.monotonic() + DRAIN_S
        while _busy(channels, app) and time.monotonic() < deadline:
            wasyncore.loop(timeout=0.05, map=channels, count=1)
    finally:
        if provisioner is not None:
            provisioner.stop()
        server.task_dispatcher.shutdown()
        wasyncore.close_all(channels)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopped")
