"""Logging a dependency that stops answering: one line when it starts failing, one when it works
again, not one per try (a loop that retries every second would flood the log with tracebacks).

- `short_error(exc)`: the first line of an error (a driver's own message when SQLAlchemy wraps
  one), for a log line.
- `OutageLog`: that pair of lines for one dependency, with `failing` saying which holds now.
"""
from __future__ import annotations

import logging


def short_error(exc: BaseException) -> str:
    """The first line of a (database) error, for a log line."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class OutageLog:
    """`failed(exc, consequence)` logs `"<failing> (<error type>: <first line>); <consequence>"` at
    WARNING the first time only; `worked()` logs `recovered` once after a failure. Not thread-safe:
    one loop (a writer thread, one probe at a time) reports through it."""

    def __init__(self, logger: logging.Logger, failing: str, recovered: str):
        self.logger, self.failing_text, self.recovered_text = logger, failing, recovered
        self.failing = False

    def failed(self, exc: BaseException, consequence: str) -> None:
        if not self.failing:
            self.failing = True
            self.logger.warning("%s (%s: %s); %s", self.failing_text, type(exc).__name__, short_error(exc)[:300],
                                consequence)

    def worked(self) -> None:
        if self.failing:
            self.failing = False
            self.logger.warning("%s", self.recovered_text)
