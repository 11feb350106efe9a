"""Logging setup: one line per event, as text for people or JSON for machines."""

from __future__ import annotations

import json
import logging
import sys
import time

from .config import LogConfig


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message (+ exc)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(cfg: LogConfig) -> None:
    """Configure the root logger from ``[log]``."""
    handler = logging.StreamHandler(sys.stderr)
    if cfg.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.level.upper())
    # Neither format shows where a call was made, so skip finding it (the logging HOWTO's
    # "Optimization" section): finding it walks the stack, which makes every suspended
    # connection handler that logged keep frame objects, about 0.3 KB per idle connection.
    logging._srcfile = None  # type: ignore[attr-defined]
    # websockets logs every failed handshake at INFO/ERROR; chathub counts refusals itself.
    logging.getLogger("websockets").setLevel(logging.WARNING if cfg.level.upper() != "DEBUG" else logging.DEBUG)
