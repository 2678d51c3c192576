"""Render limits and the per-render budget: output size, loop iterations and calls, wall time,
and the size checks the sandbox runs on values before it builds them (no value bigger than
`max_output_chars`, no integer over NUMBER_BITS). Exceeding any raises `LimitHit`.
"""
from __future__ import annotations

import re
import string
from collections.abc import ItemsView, KeysView, ValuesView
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from jinja2.utils import Namespace

from core.render.problems import LimitHit, Refused


@dataclass(frozen=True)
class RenderLimits:
    max_output_chars: int = 200_000  # per rendered part, and for any value built on the way
    max_iterations: int = 100_000  # loop iterations plus calls, across the whole render
    max_seconds: float = 2.0  # wall time of the whole render, measured by the injected timer


DEFAULT_LIMITS = RenderLimits()
_MAX_INT_BITS = 10_000  # about 3,000 decimal digits: far beyond any email, far below a slow number


class Budget:
    __slots__ = ("limits", "timer", "deadline", "steps")

    def __init__(self, limits: RenderLimits, timer: Callable[[], float]):
        self.limits = limits
        self.timer = timer
        self.deadline = timer() + limits.max_seconds
        self.steps = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_iterations:
            raise LimitHit("max_iterations",
                            f"it ran more than {self.limits.max_iterations} loop iterations and calls")
        self.check_time()

    def check_time(self) -> None:
        if self.timer() > self.deadline:
            raise LimitHit("max_seconds", f"it ran longer than {self.limits.max_seconds:g} seconds")


# The budget of the render running in this thread/context; None outside render_step (for example
# while Jinja folds constants at compile time, where the default limits apply).
current_budget: ContextVar[Budget | None] = ContextVar("cadence_render_budget", default=None)


def max_chars() -> int:
    budget = current_budget.get()
    return (budget.limits if budget is not None else DEFAULT_LIMITS).max_output_chars


def tick() -> None:
    budget = current_budget.get()
    if budget is not None:
        budget.tick()


def too_big(size: int, cap: int) -> LimitHit:
    return LimitHit("max_output_chars", f"it would build a value of more than {cap} characters")


TEXTUAL = (str, bytes, bytearray)
_VIEWS = (KeysView, ValuesView, ItemsView)


def value_size(value: Any, cap: int) -> int:
    """Roughly how many characters printing `value` takes, counting shared parts every time they
    appear (as printing does); stops counting once past `cap`. Iterative, so deep nesting is fine."""
    if type(value) is str:
        return len(value)
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, TEXTUAL):
            total += len(item)
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            if total <= cap:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item)
            if total <= cap:
                stack.extend(item)
        elif isinstance(item, _VIEWS):
            total += 12 + 2 * len(item)
            if total <= cap:
                stack.extend(item)
        elif isinstance(item, Namespace):
            total += 12
            stack.append(dict(object.__getattribute__(item, "_Namespace__attrs")))
        else:
            total += 8
        if total > cap:
            return total
    return total


def check_size(value: Any) -> Any:
    cap = max_chars()
    if type(value) is str:
        if len(value) > cap:
            raise too_big(len(value), cap)
    elif value_size(value, cap) > cap:
        raise too_big(cap + 1, cap)
    return value


def is_sequence(value: Any) -> bool:
    return isinstance(value, (str, bytes, bytearray, list, tuple))


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_width(width: Any, what: str) -> None:
    cap = max_chars()
    number = as_int(width)
    if number is not None and number > cap:
        raise LimitHit("max_output_chars", f"{what} of {number} is more than the {cap} characters allowed")


_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?(.)", re.DOTALL)


def check_printf(template: Any, args: Any) -> None:
    """Refuse `template % args` when its widths or its result would be too big."""
    cap = max_chars()
    text = template.decode("latin-1") if isinstance(template, (bytes, bytearray)) else str(template)
    if isinstance(args, tuple):
        values = list(args)
    elif isinstance(args, Mapping):
        values = list(args.values())
    else:
        values = [args]
    biggest = max((value_size(v, cap) for v in values), default=0)
    estimate = len(text)
    for spec in _PRINTF_SPEC.finditer(text):
        width, precision, conversion = spec.groups()
        if conversion == "%":
            continue
        if width == "*" or precision == "*":
            raise Refused("'*' widths in % formatting are not allowed")
        for number in (width, precision):
            if number:
                check_width(int(number), "a % format width")
                estimate += int(number)
        estimate += biggest
        if estimate > cap:
            raise too_big(estimate, cap)


def check_format_string(template: str, args: tuple, kwargs: Mapping[str, Any]) -> None:
    """Refuse `template.format(...)` when its widths or its result would be too big."""
    cap = max_chars()
    biggest = max([value_size(v, cap) for v in args] + [value_size(v, cap) for v in kwargs.values()], default=0)
    estimate = len(template)
    for _, field, spec, _ in string.Formatter().parse(template):
        if field is None:
            continue
        if spec and "{" in spec:
            raise Refused("nested replacement fields in a format specification are not allowed")
        for number in re.findall(r"\d+", spec or ""):
            check_width(int(number), "a format width")
            estimate += int(number)
        estimate += biggest
        if estimate > cap:
            raise too_big(estimate, cap)


def check_binop(operator: str, left: Any, right: Any) -> None:
    cap = max_chars()
    if operator == "**":
        base, exponent = as_int(left), as_int(right)
        if base is not None and exponent is not None and exponent > 0 and abs(base) > 1:
            if base.bit_length() * exponent > _MAX_INT_BITS:
                raise LimitHit("number_size", f"{base} ** {exponent} would be a number of more than {_MAX_INT_BITS} bits")
    elif operator == "*":
        a, b = as_int(left), as_int(right)
        if a is not None and b is not None:
            if a.bit_length() + b.bit_length() > _MAX_INT_BITS:
                raise LimitHit("number_size", f"the product would be a number of more than {_MAX_INT_BITS} bits")
        elif b is not None and is_sequence(left):
            if value_size(left, cap) * b > cap:
                raise too_big(cap + 1, cap)
        elif a is not None and is_sequence(right):
            if value_size(right, cap) * a > cap:
                raise too_big(cap + 1, cap)
    elif operator == "+":
        if is_sequence(left) and is_sequence(right) and value_size(left, cap) + value_size(right, cap) > cap:
            raise too_big(cap + 1, cap)
    elif operator == "%":
        if isinstance(left, TEXTUAL):
            check_printf(left, right)
