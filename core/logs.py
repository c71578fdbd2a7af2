"""jobledger's loggers: structlog over the stdlib logger ``jobledger.<part>``.

A library must not configure logging. jobledger's loggers write through the
standard ``logging`` module under the ``jobledger`` name, which carries a
``NullHandler``: nothing is printed unless the application configures
logging. Context bound with ``structlog.contextvars`` (``job_id``,
``worker``) is merged into every record.

This module is the one place in ``core`` that imports a third-party package
besides msgspec: it does no I/O of its own.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["get_logger"]

logging.getLogger("jobledger").addHandler(logging.NullHandler())

_PROCESSORS: list[Any] = [
    structlog.stdlib.filter_by_level,
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.processors.format_exc_info,
    structlog.stdlib.render_to_log_kwargs,
]


def get_logger(part: str) -> structlog.stdlib.BoundLogger:
    """Return the structlog logger for ``jobledger.<part>``."""
    logger: structlog.stdlib.BoundLogger = structlog.wrap_logger(
        logging.getLogger(f"jobledger.{part}"),
        processors=_PROCESSORS,
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    return logger
