"""How ``ivfarm ec2 serve`` runs: addresses, processes, TLS, metrics and log format, checked up front."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ivfarm.errors import ConfigError

LOG_FORMATS = ("text", "json")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too; port 0 picks a free one) as a pair."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536 or not host:
        raise ConfigError(f"listen address must be HOST:PORT, not {value!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ServeOptions:
    """Everything the server needs besides the cloud."""

    host: str
    port: int
    workers: int = 1
    threads: int = 8
    keepalive_s: int = 5
    cert: Path | None = None
    key: Path | None = None
    metrics: tuple[str, int] | None = None
    metrics_dir: Path | None = None
    log_format: str = "text"
    provisioner: bool = True  # run one embedded provisioner

    @property
    def scheme(self) -> str:
        return "https" if self.cert else "http"


def _readable(option: str, value: str) -> Path:
    path = Path(value)
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ConfigError(f"{option} {value}: not a readable file")
    return path


def resolve(listen: str, *, workers: int = 1, threads: int = 8, keepalive_s: int = 5, cert: str | None = None,
            key: str | None = None, metrics_listen: str | None = None, log_format: str = "text",
            provisioner: bool = True, environ: dict[str, str] | None = None) -> ServeOptions:
    """Check the options together; ``environ`` (default ``os.environ``) gives the metrics directory."""
    host, port = parse_listen(listen)
    if workers < 1 or threads < 1 or keepalive_s < 0:
        raise ConfigError("--workers and --threads must be at least 1, --keep-alive at least 0")
    if bool(cert) != bool(key):
        raise ConfigError("TLS needs both --cert and --key")
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"--log-format must be one of {', '.join(LOG_FORMATS)}")
    metrics = parse_listen(metrics_listen) if metrics_listen else None
    if metrics and metrics == (host, port) and port:
        raise ConfigError("--metrics-listen must differ from --listen")
    metrics_dir = None
    if metrics:
        value = (os.environ if environ is None else environ).get(MULTIPROC_ENV)
        if not value or not Path(value).is_dir():
            raise ConfigError(f"--metrics-listen needs {MULTIPROC_ENV} set to a directory of this server's own "
                              "(prometheus_client multiprocess mode; it is emptied at start)")
        metrics_dir = Path(value)
    return ServeOptions(host, port, workers, threads, keepalive_s, _readable("--cert", cert) if cert else None,
                        _readable("--key", key) if key else None, metrics, metrics_dir, log_format, provisioner)
