"""``ivfarm ec2 serve`` options checked together, and the JSON log line format."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ivfarm.ec2.logs import JsonFormatter
from ivfarm.ec2.serve_options import MULTIPROC_ENV, ServeOptions, parse_listen, resolve
from ivfarm.errors import ConfigError


def test_defaults_serve_plain_http_on_one_worker() -> None:
    options = resolve("127.0.0.1:8773", environ={})
    assert options == ServeOptions("127.0.0.1", 8773)
    assert options.scheme == "http" and options.workers == 1 and options.metrics is None


def test_listen_addresses() -> None:
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("8773", "host:", ":80", "host:65536", "host:x"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            parse_listen(bad)


def test_tls_needs_a_readable_cert_and_key(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("cert")
    key.write_text("key")
    with pytest.raises(ConfigError, match="both --cert and --key"):
        resolve("127.0.0.1:0", cert=str(cert), environ={})
    with pytest.raises(ConfigError, match="both --cert and --key"):
        resolve("127.0.0.1:0", key=str(key), environ={})
    with pytest.raises(ConfigError, match="--key .*missing.pem: not a readable file"):
        resolve("127.0.0.1:0", cert=str(cert), key=str(tmp_path / "missing.pem"), environ={})
    options = resolve("127.0.0.1:0", cert=str(cert), key=str(key), environ={})
    assert options.scheme == "https" and options.cert == cert and options.key == key


def test_metrics_need_their_own_address_and_a_multiprocess_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=MULTIPROC_ENV):
        resolve("127.0.0.1:8773", metrics_listen="127.0.0.1:9100", environ={})
    with pytest.raises(ConfigError, match=MULTIPROC_ENV):
        resolve("127.0.0.1:8773", metrics_listen="127.0.0.1:9100", environ={MULTIPROC_ENV: str(tmp_path / "nope")})
    env = {MULTIPROC_ENV: str(tmp_path)}
    with pytest.raises(ConfigError, match="must differ"):
        resolve("127.0.0.1:8773", metrics_listen="127.0.0.1:8773", environ=env)
    options = resolve("127.0.0.1:8773", workers=4, metrics_listen="127.0.0.1:9100", environ=env)
    assert options.metrics == ("127.0.0.1", 9100) and options.metrics_dir == tmp_path and options.workers == 4


def test_counts_and_log_format_are_checked() -> None:
    with pytest.raises(ConfigError, match="--workers"):
        resolve("127.0.0.1:0", workers=0, environ={})
    with pytest.raises(ConfigError, match="--log-format"):
        resolve("127.0.0.1:0", log_format="xml", environ={})


def test_json_log_lines_hold_the_request_fields() -> None:
    record = logging.LogRecord("ivfarm.ec2.access", logging.INFO, __file__, 1, "POST %s", ("RunInstances",), None)
    for name, value in {"request_id": "r-1", "farm": "alpha", "action": "RunInstances", "status": 200,
                        "duration_ms": 1.5}.items():
        setattr(record, name, value)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "POST RunInstances" and line["level"] == "info" and line["logger"] == "ivfarm.ec2.access"
    assert (line["request_id"], line["farm"], line["action"], line["status"], line["duration_ms"]) == (
        "r-1", "alpha", "RunInstances", 200, 1.5)
    assert line["time"].endswith("+00:00") and isinstance(line["pid"], int)
