"""A connector error that retrying cannot fix fails the message once, with its cause (issue 13)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.headers import HeaderInjection
from core.outcomes import FAILED, MAX_CRASH_ATTEMPTS, RETRY, judge_crash

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(minutes=2)


@pytest.mark.parametrize("error", [
    UnicodeEncodeError("ascii", "josé", 3, 4, "ordinal not in range(128)"),
    ValueError("Non-ASCII local part"),
    HeaderInjection("To", "a line break is not allowed"),
    TypeError("expected str"),
    LookupError("unknown encoding: x-klingon"),
])
def test_input_errors_fail_at_once_with_their_cause(error):
    outcome = judge_crash(error, attempts=1, doing="creating the draft", backoff_at=LATER)
    assert outcome.kind == FAILED
    assert "retrying cannot help" in outcome.detail and type(error).__name__ in outcome.detail


@pytest.mark.parametrize("attempts, kind", [(1, RETRY), (MAX_CRASH_ATTEMPTS - 1, RETRY), (MAX_CRASH_ATTEMPTS, FAILED),
                                            (MAX_CRASH_ATTEMPTS + 3, FAILED)])
def test_other_errors_are_retried_a_bounded_number_of_times(attempts, kind):
    outcome = judge_crash(RuntimeError("connector bug"), attempts=attempts, doing="creating the draft", backoff_at=LATER)
    assert outcome.kind == kind
    if kind == RETRY:
        assert outcome.at == LATER and "RuntimeError: connector bug" in outcome.detail
    else:
        assert f"failed {attempts} times; giving up" in outcome.detail
