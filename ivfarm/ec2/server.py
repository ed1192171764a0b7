"""Serve the EC2 app with gunicorn: a master process and ``workers`` forked worker processes.

Each worker (gunicorn's threaded ``gthread`` worker, keep-alive connections) builds its own cloud
after the fork; the master holds no database connection. Signals are
gunicorn's: SIGTERM stops gracefully (no new connections, requests in flight finish and their
answers go out), SIGHUP reloads (new workers, then the old ones stop gracefully; TLS
files are read again), SIGINT/SIGQUIT stop at once. The listening socket is bound here and handed
to gunicorn by descriptor, so ``--listen HOST:0`` picks a free port that survives reloads.
The embedded provisioner (unless disabled) is one process of its own, started by the master
and stopped after the workers: it finishes the jobs it is running, queued ones stay in the store.
"""
from __future__ import annotations

import logging
import logging.config
import socket
import subprocess
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from ivfarm.cloud import Cloud
from ivfarm.config import Config
from ivfarm.ec2 import embedded_provisioner, metrics
from ivfarm.ec2.app import Ec2App
from ivfarm.ec2.logs import logging_config
from ivfarm.ec2.serve_options import ServeOptions
from ivfarm.errors import ConfigError

log = logging.getLogger("ivfarm.ec2.server")
DRAIN_S = 30


def bind(options: ServeOptions) -> socket.socket:
    """The listening socket (inheritable, so gunicorn can take it over by descriptor)."""
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    try:
        sock = socket.create_server((options.host, options.port), family=family, backlog=2048)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


class Ec2Server(BaseApplication):  # type: ignore[misc] # gunicorn ships no type hints
    """gunicorn running the EC2 app of one configuration."""

    def __init__(self, config: Config, options: ServeOptions, sock: socket.socket) -> None:
        self.ivfarm_config = config
        self.options = options
        self.sock = sock
        self.provisioner: subprocess.Popen[bytes] | None = None
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.endpoint = f"{options.scheme}://{shown}:{port}/"
        super().__init__()

    def load_config(self) -> None:
        options = self.options
        settings: dict[str, Any] = {
            "bind": [f"fd://{self.sock.fileno()}"], "workers": options.workers, "threads": options.threads,
            "worker_class": "gthread", "keepalive": options.keepalive_s, "graceful_timeout": DRAIN_S,
            "timeout": 120, "proc_name": "ivfarm-ec2", "logconfig_dict": logging_config(options.log_format),
            "accesslog": None, "control_socket_disable": True, "limit_request_line": 8190, "limit_request_fields": 100,
            "on_starting": self._on_starting, "when_ready": self._when_ready, "child_exit": self._child_exit,
            "worker_exit": self._worker_exit, "on_exit": self._on_exit,
        }
        if options.cert and options.key:
            settings.update(certfile=str(options.cert), keyfile=str(options.key))
        for name, value in settings.items():
            self.cfg.set(name, value)

    def load(self) -> Ec2App:
        """In each worker, after the fork: its own cloud and store connections."""
        return Ec2App(Cloud(self.ivfarm_config), workers=self.options.workers)

    def _on_starting(self, _arbiter: Arbiter) -> None:
        if self.options.provisioner:
            self.provisioner = embedded_provisioner.start(self.ivfarm_config, self.options.log_format)
        if self.options.metrics_dir:
            metrics.clear(self.options.metrics_dir)

    def _when_ready(self, _arbiter: Arbiter) -> None:
        if self.options.metrics:
            host, port = self.options.metrics
            port = metrics.serve_exporter(host, port, Cloud(self.ivfarm_config))  # its store holds no connection
            log.info("metrics on http://%s:%d/metrics", host, port)
        log.info("ivfarm EC2 endpoint on %s (region %s, %d worker(s))", self.endpoint,
                 self.ivfarm_config.get("ec2.region"), self.options.workers)

    def _child_exit(self, _arbiter: Arbiter, worker: Worker) -> None:
        if self.options.metrics_dir:
            metrics.mark_dead(worker.pid)

    @staticmethod
    def _worker_exit(_arbiter: Arbiter, worker: Worker) -> None:
        app = worker.wsgi
        if isinstance(app, Ec2App):
            app.cloud.store.dispose()

    def _on_exit(self, _arbiter: Arbiter) -> None:
        if self.provisioner is not None:
            embedded_provisioner.stop(self.provisioner, DRAIN_S)
        log.info("stopped")


def serve(cloud: Cloud, options: ServeOptions) -> None:
    """Run the EC2 endpoint until SIGTERM (SIGHUP reloads)."""
    logging.config.dictConfig(logging_config(options.log_format))
    sock = bind(options)
    cloud.store.dispose()  # the master keeps no connection for the workers to inherit
    Ec2Server(cloud.config, options, sock).run()
