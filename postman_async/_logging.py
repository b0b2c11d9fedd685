"""The SDK's logs: ``logging.getLogger("postman_async")``, each HTTP attempt and retry with
structured fields in ``record.postman`` (endpoint, method, status, attempt, latency_ms,
limiter_wait_ms, error_id, ...; never a recipient, a message body or a key).

``POSTMAN_ASYNC_LOG=debug|info|warning`` turns on a stderr handler at that level, which
prints the fields as ``key=value`` (like ``OPENAI_LOG``); without it the SDK configures no
handler, as a library should.
"""

from __future__ import annotations

import logging
import os
import sys

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class FieldsFormatter(logging.Formatter):
    """The message, then the record's structured fields as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "postman", None)
        if isinstance(fields, dict):
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return text


def configure_from_environment(environ: dict[str, str] | None = None) -> logging.Handler | None:
    """Apply ``POSTMAN_ASYNC_LOG``; returns the handler it added (None: not set)."""
    value = (environ if environ is not None else os.environ).get("POSTMAN_ASYNC_LOG", "")
    level = LEVELS.get(value.strip().lower())
    if level is None:
        return None
    logger = logging.getLogger("postman_async")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FieldsFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
