"""Log lines of the EC2 server: the classic text lines, or one JSON object per line."""
from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

# Fields the access log passes as ``extra``; nothing else of a request is ever logged.
REQUEST_FIELDS = ("request_id", "farm", "action", "method", "status", "duration_ms")
LOGGERS = ("ivfarm", "gunicorn.error")
TEXT_FORMAT = "%(asctime)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC ISO 8601), level, logger, pid, message, request fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "pid": record.process,
            "message": record.getMessage(),
        }
        line.update({name: getattr(record, name) for name in REQUEST_FIELDS if hasattr(record, name)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def logging_config(log_format: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ivfarm's and gunicorn's loggers, on stderr."""
    formatter = {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    logger = {"level": "INFO", "handlers": ["stderr"], "propagate": False}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"ivfarm": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "ivfarm", "stream": "ext://sys.stderr"}},
        "loggers": {name: dict(logger) for name in LOGGERS},
        "root": {"level": "WARNING", "handlers": []},
    }
