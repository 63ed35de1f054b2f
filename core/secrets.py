"""Secrets never reach the store, logs or reports.

Every secret the process reads (an API key, a password) is registered here when it is read, and
`redact` masks each registered value in any text before the text leaves memory: a provider's error
message that echoes the key, a log record, a report. Registration is process-wide because the text
to clean often comes from far away (an exception raised inside a client library).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Iterable

MASK = "[redacted]"
_MIN_LENGTH = 6  # shorter values ("", "x", "none") would mask ordinary words
_lock = threading.Lock()
_secrets: tuple[str, ...] = ()  # longest first, so a secret containing another is masked whole


def register_secret(value: str | None) -> str | None:
    """Remember a secret's value so that `redact` masks it; returns the value unchanged."""
    global _secrets
    if value and len(value) >= _MIN_LENGTH and value not in _secrets:
        with _lock:
            _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))
    return value


def secret_from_env(name: str | None) -> str | None:
    """Read a secret from an environment variable and register it."""
    return register_secret(os.environ.get(name)) if name else None


def register_env_secrets(names: Iterable[str | None]) -> None:
    for name in names:
        secret_from_env(name)


def redact(text: str | None) -> str | None:
    if not text or not _secrets:
        return text
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in the message and in the traceback of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def redact_logging() -> None:
    """Put the filter on every handler of every configured logger (handler filters see records that
    propagate from child loggers; logger filters would not)."""
    loggers = [logging.getLogger(), *(logger for logger in list(logging.root.manager.loggerDict.values())
                                      if isinstance(logger, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
                handler.addFilter(RedactingFilter())


def redact_exception(error: BaseException) -> BaseException:
    """Mask secrets in an exception's message in place (its type and traceback stay), before a
    framework records it (Prefect keeps a failed run's message in its database)."""
    error.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in error.args)
    return error
