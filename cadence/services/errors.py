"""Refusals shown to the operator as one sentence."""
from __future__ import annotations

import re
from datetime import datetime


class UserError(ValueError):
    """A refusal to show the operator as one clear sentence (CLI: stderr, non-zero exit)."""


def date_problem(field: str, value: str, expected: str) -> str:
    """The sentence for a date or time `value` of `field` that did not parse: `field: 2026-11-31 is
    no such date` for a well-formed impossible date, else `field: 'value' is not <expected>`."""
    match = re.match(r"^(\d{4})-(\d{2})-(\d{2})", value.strip())
    if match:
        try:
            datetime(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            return f"{field}: {match.group(0)} is no such date"
    return f"{field}: {value!r} is not {expected}"
