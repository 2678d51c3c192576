"""Rendering campaign emails from Jinja2 templates, safely and fast.

Contract:
- `compile_step` compiles a step's subject and body once (Jinja2 sandbox); syntax errors, unknown
  filters, includes/imports and private attributes (`x.__class__`) are refused there as
  TemplateProblem with a line number.
- `render_step` renders one contact. Variables whose value is None or "" count as undefined, so
  `default()` applies to them; an undefined variable used without a fallback (`default()`,
  `is defined`, `{% if x %}`, `x or y`) raises MissingVariable naming it, never renders blank.
- HTML bodies are autoescaped; their text alternative is derived from the template at compile
  time (fast path) or from the rendered HTML (`html_to_text`). Plain-text bodies render without
  escaping; their HTML alternative is the escaped text in paragraphs.
- The subject renders without escaping, must be one line and passes `core.headers` checks.
- Every render runs under RenderLimits (output size, loop iterations and calls, wall time through
  the injected timer) plus fixed guards on big numbers and on values that would blow up in
  memory; exceeding any raises RenderLimitExceeded naming the limit. Anything the sandbox refuses
  raises TemplateProblem. All of these say which field and line, in one sentence.
"""
from __future__ import annotations

import functools
import re
import string
import time
from collections.abc import ItemsView, KeysView, ValuesView
from contextvars import ContextVar
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Callable, Mapping

from jinja2 import filters as jinja_filters
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner, Namespace, pass_context, pass_eval_context
from jinja2.visitor import NodeTransformer
from markupsafe import Markup, escape

from core.headers import HeaderInjection, check_header_value

__all__ = [
    "CompiledStep", "MissingVariable", "RenderLimitExceeded", "RenderLimits", "RenderedEmail",
    "TemplateProblem", "UnsafeSubject", "compile_step", "html_to_text", "looks_like_html", "quote_previous", "render_step",
]


# --- errors --------------------------------------------------------------------------------------

def _sentence(message: str) -> str:
    """One sentence: one line, inner sentence breaks turned into semicolons, one final period."""
    text = " ".join(str(message).split()).rstrip(".;: ")
    return text.replace(". ", "; ") + "."


class TemplateProblem(ValueError):
    """A template that cannot be compiled or rendered. `.field` is "subject" or "body", `.line`
    the template line when known, `.message` the reason; str() is one sentence naming all three."""

    def __init__(self, message: str, *, field: str, line: int | None = None, where: str = ""):
        self.message = _sentence(message)
        self.field = field
        self.line = line
        self.where = where
        super().__init__(str(self))

    def __reduce__(self) -> tuple:
        return _rebuild_problem, (type(self), dict(self.__dict__))

    def __str__(self) -> str:
        place = self.field if self.line is None else f"{self.field} line {self.line}"
        if self.where:
            place = f"{self.where}, {place}"
        return f"{place}: {self.message}"


def _rebuild_problem(cls: type, state: dict) -> TemplateProblem:
    problem = cls.__new__(cls)
    problem.__dict__.update(state)
    Exception.__init__(problem, str(problem))
    return problem


class MissingVariable(TemplateProblem):
    """A variable undefined for this contact and used without a default() fallback."""

    def __init__(self, variable: str, *, field: str, line: int | None = None, where: str = "",
                 detail: str | None = None):
        self.variable = variable
        reason = detail or f"{variable!r} is not defined for this contact"
        super().__init__(f"{reason} and there is no default() fallback", field=field, line=line, where=where)


class RenderLimitExceeded(TemplateProblem):
    """A render stopped by a limit. `.limit` names it: max_output_chars, max_iterations,
    max_seconds, recursion_depth or number_size."""

    def __init__(self, limit: str, message: str, *, field: str, line: int | None = None, where: str = ""):
        self.limit = limit
        super().__init__(f"render stopped by the {limit} limit: {message}", field=field, line=line, where=where)


class UnsafeSubject(TemplateProblem):
    """A rendered subject that would break its header line (a contact value holding CR/LF, U+2028,
    an encoded line break …). `.reason` is the header check's reason."""

    def __init__(self, reason: str, *, where: str = ""):
        self.reason = reason
        super().__init__(f"the rendered subject is not one safe header line ({reason})", field="subject", where=where)


class _LimitHit(Exception):
    def __init__(self, limit: str, message: str):
        super().__init__(message)
        self.limit = limit
        self.message = message


class _Refused(Exception):
    """Something the sandbox does not allow, found while rendering."""


class _CompileRefusal(Exception):
    def __init__(self, message: str, lineno: int | None):
        super().__init__(message)
        self.lineno = lineno


class _MissingVariableError(UndefinedError):
    def __init__(self, variable: str, message: str):
        super().__init__(message)
        self.variable = variable


# --- limits and the per-render budget ------------------------------------------------------------

@dataclass(frozen=True)
class RenderLimits:
    max_output_chars: int = 200_000  # per rendered part, and for any value built on the way
    max_iterations: int = 100_000  # loop iterations plus calls, across the whole render
    max_seconds: float = 2.0  # wall time of the whole render, measured by the injected timer


_DEFAULT_LIMITS = RenderLimits()
_MAX_INT_BITS = 10_000  # about 3,000 decimal digits: far beyond any email, far below a slow number


class _Budget:
    __slots__ = ("limits", "timer", "deadline", "steps")

    def __init__(self, limits: RenderLimits, timer: Callable[[], float]):
        self.limits = limits
        self.timer = timer
        self.deadline = timer() + limits.max_seconds
        self.steps = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_iterations:
            raise _LimitHit("max_iterations",
                            f"it ran more than {self.limits.max_iterations} loop iterations and calls")
        self.check_time()

    def check_time(self) -> None:
        if self.timer() > self.deadline:
            raise _LimitHit("max_seconds", f"it ran longer than {self.limits.max_seconds:g} seconds")


# The budget of the render running in this thread/context; None outside render_step (for example
# while Jinja folds constants at compile time, where the default limits apply).
_budget: ContextVar[_Budget | None] = ContextVar("cadence_render_budget", default=None)


def _max_chars() -> int:
    budget = _budget.get()
    return (budget.limits if budget is not None else _DEFAULT_LIMITS).max_output_chars


def _tick() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.tick()


def _too_big(size: int, cap: int) -> _LimitHit:
    return _LimitHit("max_output_chars", f"it would build a value of more than {cap} characters")


_TEXTUAL = (str, bytes, bytearray)
_VIEWS = (KeysView, ValuesView, ItemsView)


def _size(value: Any, cap: int) -> int:
    """Roughly how many characters printing `value` takes, counting shared parts every time they
    appear (as printing does); stops counting once past `cap`. Iterative, so deep nesting is fine."""
    if type(value) is str:
        return len(value)
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _TEXTUAL):
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


def _check_size(value: Any) -> Any:
    cap = _max_chars()
    if type(value) is str:
        if len(value) > cap:
            raise _too_big(len(value), cap)
    elif _size(value, cap) > cap:
        raise _too_big(cap + 1, cap)
    return value


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (str, bytes, bytearray, list, tuple))


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_width(width: Any, what: str) -> None:
    cap = _max_chars()
    number = _as_int(width)
    if number is not None and number > cap:
        raise _LimitHit("max_output_chars", f"{what} of {number} is more than the {cap} characters allowed")


_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?(.)", re.DOTALL)


def _check_printf(template: Any, args: Any) -> None:
    """Refuse `template % args` when its widths or its result would be too big."""
    cap = _max_chars()
    text = template.decode("latin-1") if isinstance(template, (bytes, bytearray)) else str(template)
    if isinstance(args, tuple):
        values = list(args)
    elif isinstance(args, Mapping):
        values = list(args.values())
    else:
        values = [args]
    biggest = max((_size(v, cap) for v in values), default=0)
    estimate = len(text)
    for spec in _PRINTF_SPEC.finditer(text):
        width, precision, conversion = spec.groups()
        if conversion == "%":
            continue
        if width == "*" or precision == "*":
            raise _Refused("'*' widths in % formatting are not allowed")
        for number in (width, precision):
            if number:
                _check_width(int(number), "a % format width")
                estimate += int(number)
        estimate += biggest
        if estimate > cap:
            raise _too_big(estimate, cap)


def _check_format_string(template: str, args: tuple, kwargs: Mapping[str, Any]) -> None:
    """Refuse `template.format(...)` when its widths or its result would be too big."""
    cap = _max_chars()
    biggest = max([_size(v, cap) for v in args] + [_size(v, cap) for v in kwargs.values()], default=0)
    estimate = len(template)
    for _, field, spec, _ in string.Formatter().parse(template):
        if field is None:
            continue
        if spec and "{" in spec:
            raise _Refused("nested replacement fields in a format specification are not allowed")
        for number in re.findall(r"\d+", spec or ""):
            _check_width(int(number), "a format width")
            estimate += int(number)
        estimate += biggest
        if estimate > cap:
            raise _too_big(estimate, cap)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    cap = _max_chars()
    if operator == "**":
        base, exponent = _as_int(left), _as_int(right)
        if base is not None and exponent is not None and exponent > 0 and abs(base) > 1:
            if base.bit_length() * exponent > _MAX_INT_BITS:
                raise _LimitHit("number_size", f"{base} ** {exponent} would be a number of more than {_MAX_INT_BITS} bits")
    elif operator == "*":
        a, b = _as_int(left), _as_int(right)
        if a is not None and b is not None:
            if a.bit_length() + b.bit_length() > _MAX_INT_BITS:
                raise _LimitHit("number_size", f"the product would be a number of more than {_MAX_INT_BITS} bits")
        elif b is not None and _is_sequence(left):
            if _size(left, cap) * b > cap:
                raise _too_big(cap + 1, cap)
        elif a is not None and _is_sequence(right):
            if _size(right, cap) * a > cap:
                raise _too_big(cap + 1, cap)
    elif operator == "+":
        if _is_sequence(left) and _is_sequence(right) and _size(left, cap) + _size(right, cap) > cap:
            raise _too_big(cap + 1, cap)
    elif operator == "%":
        if isinstance(left, _TEXTUAL):
            _check_printf(left, right)


# --- undefined variables -------------------------------------------------------------------------

def _undefined_error(undefined: Undefined) -> Exception:
    exc_class = undefined._undefined_exception
    message = undefined._undefined_message
    if exc_class is UndefinedError:
        return _MissingVariableError(str(undefined._undefined_name), message)
    return exc_class(message)  # SecurityError for attributes the sandbox refused


class _StrictUndefined(Undefined):
    """Undefined that refuses to print, iterate, compare or compute. It is falsy (so `{% if x %}`
    and `x or y` are fallbacks) unless it stands for an attribute the sandbox refused."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        raise _undefined_error(self)

    def __getattr__(self, name: str) -> Any:
        if name[:2] == "__" and name[-2:] == "__":
            raise AttributeError(name)
        raise _undefined_error(self)

    def __bool__(self) -> bool:
        if self._undefined_exception is not UndefinedError:
            raise _undefined_error(self)
        return False

    __add__ = __radd__ = __sub__ = __rsub__ = _fail_with_undefined_error
    __mul__ = __rmul__ = __div__ = __rdiv__ = _fail_with_undefined_error
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _fail_with_undefined_error
    __mod__ = __rmod__ = __pos__ = __neg__ = __pow__ = __rpow__ = _fail_with_undefined_error
    __call__ = __getitem__ = __contains__ = _fail_with_undefined_error
    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _fail_with_undefined_error
    __int__ = __float__ = __complex__ = __hash__ = _fail_with_undefined_error
    __str__ = __len__ = __iter__ = __format__ = _fail_with_undefined_error


# --- the sandbox ---------------------------------------------------------------------------------

def _bounded_range(*args: Any) -> range:
    numbers = range(*args)
    budget = _budget.get()
    limit = (budget.limits if budget is not None else _DEFAULT_LIMITS).max_iterations
    if len(numbers) > limit:
        raise _LimitHit("max_iterations", f"range() of {len(numbers)} items is more than the {limit} allowed")
    return numbers


def _finalize(value: Any) -> Any:
    """Applied to every printed expression before it becomes text."""
    kind = type(value)
    if kind is str or kind is Markup:
        return value
    if isinstance(value, Undefined):
        return value  # printing raises MissingVariable (or the sandbox's refusal)
    if callable(value):
        raise _Refused("printing a function, method or class is not allowed")
    _check_size(value)
    return value


def _string_method_check(owner: Any, name: str, args: tuple, kwargs: dict) -> tuple:
    """Pre-checks for str/bytes methods whose result can be far bigger than their inputs."""
    cap = _max_chars()
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill"):
        _check_width(first if first is not None else kwargs.get("width"), f"{name}() width")
    elif name == "expandtabs":
        tabsize = _as_int(first if first is not None else kwargs.get("tabsize", 8)) or 0
        if len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * tabsize > cap:
            raise _too_big(cap + 1, cap)
    elif name == "join" and args:
        items = list(args[0])
        total = len(owner) * len(items)
        for item in items:
            total += _size(item, cap)
            if total > cap:
                raise _too_big(total, cap)
        return (items,) + args[1:]
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        count = _as_int(args[2]) if len(args) > 2 else None
        if isinstance(old, _TEXTUAL) and isinstance(new, _TEXTUAL):
            hits = owner.count(old) if len(old) else len(owner) + 1
            if count is not None and count >= 0:
                hits = min(hits, count)
            if len(owner) + hits * len(new) > cap:
                raise _too_big(cap + 1, cap)
    elif name == "translate" and args:
        if len(owner) * max(_size(args[0], cap), 1) > cap:
            raise _too_big(cap + 1, cap)
    return args


def _pre_filter_checks() -> dict[str, Callable[..., None]]:
    def center(value: Any, width: Any = 80) -> None:
        _check_width(width, "center() width")

    def indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> None:
        text = str(s)
        per_line = len(width) if isinstance(width, str) else (_as_int(width) or 0)
        if len(text) + (text.count("\n") + 1) * per_line > _max_chars():
            raise _too_big(_max_chars() + 1, _max_chars())

    def format_(value: Any, *args: Any, **kwargs: Any) -> None:
        _check_printf(str(value), kwargs or args)

    def batch(value: Any, linecount: Any, fill_with: Any = None) -> None:
        _check_width(linecount, "batch() size")

    def slice_(value: Any, slices: Any, fill_with: Any = None) -> None:
        _check_width(slices, "slice() count")

    def replace(s: Any, old: Any, new: Any, count: Any = None) -> None:
        _string_method_check(str(s), "replace", (str(old), str(new), count if count is not None else -1), {})

    def wordwrap(s: Any, width: Any = 79, break_long_words: bool = True, wrapstring: Any = None,
                 break_on_hyphens: bool = True) -> None:
        text = str(s)
        lines = len(text) // max(_as_int(width) or 1, 1) + text.count("\n") + 1
        if len(text) + lines * len(str(wrapstring or "\n")) > _max_chars():
            raise _too_big(_max_chars() + 1, _max_chars())

    def urlize(value: Any, trim_url_limit: Any = None, nofollow: bool = False, target: Any = None,
               rel: Any = None, extra_schemes: Any = None) -> None:
        text = str(value)
        extra = len(str(target or "")) + len(str(rel or "")) + 64
        if 3 * len(text) + (len(text) // 4 + 1) * extra > _max_chars():
            raise _too_big(_max_chars() + 1, _max_chars())

    def tojson(value: Any, indent: Any = None) -> None:
        if (_as_int(indent) or 0) > 16:
            raise _LimitHit("max_output_chars", "tojson() indent is more than 16")

    return {"center": center, "indent": indent, "format": format_, "batch": batch, "slice": slice_,
            "replace": replace, "wordwrap": wordwrap, "urlize": urlize, "tojson": tojson}


_PRE_FILTER_CHECKS = _pre_filter_checks()
# Filters that never turn their input into a bigger text; they skip the size checks for speed.
_UNCHECKED_FILTERS = frozenset({"default", "d", "length", "count", "first", "last", "abs", "round",
                                "int", "float", "attr", "random", "select", "reject", "selectattr",
                                "rejectattr", "map", "unique", "items"})


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
    precheck = _PRE_FILTER_CHECKS.get(name)

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        data = args[skip:]
        for value in data:
            _check_size(value)
        for value in kwargs.values():
            _check_size(value)
        if precheck is not None:
            precheck(*data, **kwargs)
        return _check_size(func(*args, **kwargs))

    return guarded


@pass_eval_context
def _join_filter(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    cap = _max_chars()
    items = list(value)
    picked = items if attribute is None else list(map(jinja_filters.make_attrgetter(eval_ctx.environment, attribute), items))
    total = len(str(d)) * len(picked)
    for item in picked:
        total += _size(item, cap)
        if total > cap:
            raise _too_big(total, cap)
    return jinja_filters.sync_do_join(eval_ctx, items, d, attribute)


@pass_context
def _sum_filter(context: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    cap = _max_chars()
    items = list(iterable)
    if attribute is not None:
        items = list(map(jinja_filters.make_attrgetter(context.environment, attribute), items))
    if _is_sequence(start) or any(_is_sequence(item) for item in items):
        # Adding sequences one by one copies them again at every step: bound that work too.
        total = _size(start, cap) + sum(_size(item, cap) for item in items)
        if total > cap or total * len(items) > 20 * cap:
            raise _too_big(total, cap)
    return sum(items, start)


@pass_context
def _count_iterations(context: Any, iterable: Any) -> Any:
    """Wrapped around every {% for %} iterable: each item costs one step of the budget."""
    budget = _budget.get()
    if budget is None:
        return iterable
    return _counted(iterable, budget.tick)


def _counted(iterable: Any, tick: Callable[[], None]) -> Any:
    for item in iterable:
        tick()
        yield item


def _sized(value: Any) -> Any:
    """Wrapped around literals, concatenations and {% set %} blocks."""
    return _check_size(value)


_INTERNAL_FILTERS = {"_cadence_count": _count_iterations, "_cadence_sized": _sized}


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox plus our limits: intercepted operators, bounded range, counted
    loops and calls, size checks on values, refusal to print callables."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, autoescape: bool, trim: bool):
        super().__init__(autoescape=autoescape, undefined=_StrictUndefined, finalize=_finalize,
                         trim_blocks=trim, lstrip_blocks=trim, cache_size=0, auto_reload=False)
        self.globals.clear()
        self.globals.update(_GLOBALS)
        self.filters = {name: func if name in _UNCHECKED_FILTERS else _guard_filter(name, func)
                        for name, func in self.filters.items()}
        self.filters["join"] = _join_filter
        self.filters["sum"] = _sum_filter
        self.filters.update(_INTERNAL_FILTERS)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        _check_binop(operator, left, right)
        return _check_size(self.binop_table[operator](left, right))

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        _tick()
        for value in args:
            _check_size(value)
        for value in kwargs.values():
            _check_size(value)
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, _TEXTUAL):
            args = _string_method_check(owner, getattr(obj, "__name__", ""), args, kwargs)
        elif isinstance(owner, int) and getattr(obj, "__name__", "") == "to_bytes":
            _check_width(args[0] if args else kwargs.get("length", 1), "to_bytes() length")
        return _check_size(super().call(context, obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        template = value.__self__
        is_format_map = value.__name__ == "format_map"

        @functools.wraps(wrapper)
        def checked(*args: Any, **kwargs: Any) -> str:
            if is_format_map and len(args) == 1 and isinstance(args[0], Mapping):
                _check_format_string(template, (), args[0])
            else:
                _check_format_string(template, args, kwargs)
            return _check_size(wrapper(*args, **kwargs))

        return checked


_GLOBALS: dict[str, Any] = {"range": _bounded_range, "dict": dict, "cycler": Cycler,
                            "joiner": Joiner, "namespace": Namespace}


def _call_filter(name: str, node: nodes.Expr, lineno: int) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=lineno)


def _format_reaches_private(template: str) -> bool:
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field]
    except ValueError:
        return False
    return any(re.search(r"(\.|\[)\s*_", field) for field in fields)


class _Guard(NodeTransformer):
    """Refuses what never belongs in an email template and wires our checks into the tree."""

    def visit_Getattr(self, node: nodes.Getattr) -> nodes.Node:
        if node.attr.startswith("_"):
            raise _CompileRefusal(f"access to the private attribute {node.attr!r} is not allowed", node.lineno)
        if node.attr in ("format", "format_map") and isinstance(node.node, nodes.Const) \
                and isinstance(node.node.value, str) and _format_reaches_private(node.node.value):
            raise _CompileRefusal("a format string may not reach private attributes", node.lineno)
        return self.generic_visit(node)

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) and node.arg.value.startswith("_"):
            raise _CompileRefusal(f"access to the private attribute {node.arg.value!r} is not allowed", node.lineno)
        return self.generic_visit(node)

    def visit_Filter(self, node: nodes.Filter) -> nodes.Node:
        if node.name.startswith("_cadence"):
            raise _CompileRefusal(f"there is no filter named {node.name!r}", node.lineno)
        if node.name == "attr" and node.args and isinstance(node.args[0], nodes.Const) \
                and str(node.args[0].value).startswith("_"):
            raise _CompileRefusal(f"access to the private attribute {node.args[0].value!r} is not allowed", node.lineno)
        return self.generic_visit(node)

    def _refuse_loading(self, node: nodes.Node) -> nodes.Node:
        raise _CompileRefusal("include, import and extends are not available in email templates", node.lineno)

    visit_Include = visit_Import = visit_FromImport = visit_Extends = _refuse_loading

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)
        node.iter = _call_filter("_cadence_count", node.iter, node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        node.nodes = [_call_filter("_cadence_sized", part, node.lineno) for part in node.nodes]
        return _call_filter("_cadence_sized", node, node.lineno)

    def _sized_literal(self, node: nodes.Expr) -> nodes.Node:
        node = self.generic_visit(node)
        return _call_filter("_cadence_sized", node, node.lineno)

    visit_List = visit_Dict = _sized_literal

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        if node.ctx != "load":
            return self.generic_visit(node)
        return self._sized_literal(node)

    def visit_AssignBlock(self, node: nodes.AssignBlock) -> nodes.Node:
        node = self.generic_visit(node)
        node.filter = nodes.Filter(node.filter, "_cadence_sized", [], [], None, None, lineno=node.lineno)
        return node


_HTML_ENV = _Sandbox(autoescape=True, trim=True)
_TEXT_ENV = _Sandbox(autoescape=False, trim=True)
# Text alternatives derived from HTML templates manage their own whitespace.
_DERIVED_TEXT_ENV = _Sandbox(autoescape=False, trim=False)


def _compile(env: _Sandbox, source: str, field: str, where: str) -> Any:
    try:
        tree = env.parse(source)
        tree = _Guard().visit(tree)
        tree.set_environment(env)
        return env.from_string(tree)
    except _CompileRefusal as exc:
        raise TemplateProblem(str(exc), field=field, line=exc.lineno, where=where) from None
    except TemplateSyntaxError as exc:
        raise TemplateProblem(exc.message or "syntax error", field=field, line=exc.lineno, where=where) from None
    except TemplateError as exc:
        raise TemplateProblem(str(exc) or type(exc).__name__, field=field, where=where) from None
    except (RecursionError, SyntaxError, MemoryError) as exc:  # Jinja2's parser or Python's compiler gave up
        reason = exc.msg if isinstance(exc, SyntaxError) and exc.msg else "nested too deeply"
        raise TemplateProblem(f"the template is too complex to compile ({reason})", field=field, where=where) from None


# --- compiled steps ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RenderedEmail:
    subject: str  # "" when the step has no subject (a threaded step uses "Re: <previous subject>")
    html: str
    text: str


class CompiledStep:
    """A step's subject and body compiled once; safe to render from many threads at a time."""

    __slots__ = ("where", "is_html", "_subject", "_body", "_text")

    def __init__(self, where: str, is_html: bool, subject: Any, body: Any, text: Any):
        self.where = where
        self.is_html = is_html
        self._subject = subject
        self._body = body
        self._text = text  # text alternative template derived from an HTML body, or None

    @property
    def has_subject(self) -> bool:
        return self._subject is not None

    @property
    def has_fast_text(self) -> bool:
        """True when an HTML body's text alternative renders from a derived template."""
        return self._text is not None


def compile_step(subject: str | None, body: str, *, where: str = "") -> CompiledStep:
    """Compile a step once. Raises TemplateProblem for syntax errors (with line numbers), unknown
    filters, a multi-line subject, an empty body and constructs refused in email templates."""
    subject_template = None
    if subject is not None:
        source = subject.strip()
        try:
            check_header_value("subject", source)
        except HeaderInjection as exc:
            raise TemplateProblem(f"the subject must be one line ({exc.reason})", field="subject", where=where) from None
        subject_template = _compile(_TEXT_ENV, source, "subject", where)
    if not isinstance(body, str) or not body.strip():
        raise TemplateProblem("the body is empty", field="body", where=where)
    if looks_like_html(body):
        body_template = _compile(_HTML_ENV, body, "body", where)
        text_template = _derive_text_template(body)
        return CompiledStep(where, True, subject_template, body_template, text_template)
    return CompiledStep(where, False, subject_template, _compile(_TEXT_ENV, body, "body", where), None)


# --- rendering -----------------------------------------------------------------------------------

def _template_line(exc: BaseException, template: Any) -> int | None:
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__jinja_template__") is template:
            line = template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line


def _translate(exc: Exception, template: Any, field: str, where: str) -> TemplateProblem:
    line = _template_line(exc, template)
    if isinstance(exc, _LimitHit):
        return RenderLimitExceeded(exc.limit, exc.message, field=field, line=line, where=where)
    if isinstance(exc, RecursionError):
        return RenderLimitExceeded("recursion_depth", "calls nest too deeply, probably a macro that calls itself without end",
                                   field=field, line=line, where=where)
    if isinstance(exc, MemoryError):
        return RenderLimitExceeded("max_output_chars", "it ran out of memory", field=field, line=line, where=where)
    if isinstance(exc, _MissingVariableError):
        detail = None if str(exc).endswith("is undefined") else str(exc)
        return MissingVariable(exc.variable, field=field, line=line, where=where, detail=detail)
    if isinstance(exc, SecurityError):
        return TemplateProblem(f"refused by the sandbox: {exc}", field=field, line=line, where=where)
    if isinstance(exc, _Refused):
        return TemplateProblem(f"refused by the sandbox: {exc}", field=field, line=line, where=where)
    detail = str(exc) or type(exc).__name__
    return TemplateProblem(f"the template failed: {detail}", field=field, line=line, where=where)


def _run(template: Any, context_vars: dict[str, Any], field: str, where: str, budget: _Budget,
         source_lines: bool = True) -> str:
    cap = budget.limits.max_output_chars
    timer = budget.timer
    deadline = budget.deadline
    parts: list[str] = []
    append = parts.append
    size = 0
    try:
        for chunk in template.root_render_func(template.new_context(context_vars, shared=True)):
            size += len(chunk)
            if size > cap or timer() > deadline:
                if size > cap:
                    raise _LimitHit("max_output_chars", f"the output is longer than {cap} characters")
                budget.check_time()
            append(chunk)
    except Exception as exc:  # every failure of a template is that template's problem
        problem = _translate(exc, template, field, where)
        if not source_lines:
            problem.line = None  # a derived template's lines are not the author's lines
            problem.args = (str(problem),)
        raise problem from (None if isinstance(exc, RecursionError) else exc)
    return "".join(parts)


def render_step(step: CompiledStep, variables: Mapping[str, Any], *, limits: RenderLimits = _DEFAULT_LIMITS,
                timer: Callable[[], float] = time.perf_counter) -> RenderedEmail:
    """Render one contact's email. Raises MissingVariable, RenderLimitExceeded, UnsafeSubject or
    TemplateProblem (the base class of all three)."""
    context_vars = {**_GLOBALS, **{name: value for name, value in variables.items()
                                   if value is not None and value != ""}}
    budget = _Budget(limits, timer)
    token = _budget.set(budget)
    try:
        subject = ""
        if step._subject is not None:
            subject = _run(step._subject, context_vars, "subject", step.where, budget).strip(" \t")
            try:
                check_header_value("subject", subject)
            except HeaderInjection as exc:
                raise UnsafeSubject(exc.reason, where=step.where) from None
        body = _run(step._body, context_vars, "body", step.where, budget)
        if step.is_html:
            if step._text is not None:
                text = _tidy(_run(step._text, context_vars, "body", step.where, budget, source_lines=False))
            else:
                text = html_to_text(body)
            return RenderedEmail(subject=subject, html=body, text=text)
        text = body.strip("\n").rstrip()
        return RenderedEmail(subject=subject, html=_text_to_html(text), text=text)
    finally:
        _budget.reset(token)


# --- HTML and text -------------------------------------------------------------------------------

_HTML_HINT = re.compile(
    r"<\s*(?:!doctype\b|/?\s*(?:html|head|body|p|br|div|span|a|b|i|u|em|strong|table|tbody|thead|tr|td|th"
    r"|ul|ol|li|h[1-6]|img|blockquote|pre|code|hr|font|center|style|meta|title|section|header|footer|small"
    r"|sup|sub)\b[^<>]*>)",
    re.IGNORECASE,
)


def looks_like_html(body: str) -> bool:
    """True when the body uses HTML tags (a doctype or a common tag such as <p>, <br>, <a …>)."""
    return _HTML_HINT.search(body) is not None


# Runs on already-escaped text: "&amp;" may be part of a URL, any other entity ends it.
_URL_IN_ESCAPED = re.compile(r"\bhttps?://(?:[^\s&]|&amp;)+", re.IGNORECASE)
_URL_TRAILER = re.compile(r"(?:[.,;:!?)\]}]|&amp;)+$")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def _link(match: re.Match[str]) -> str:
    url = match.group()
    trailer = _URL_TRAILER.search(url)
    tail = ""
    if trailer:
        url, tail = url[: trailer.start()], trailer.group()
    if url.endswith("//"):
        return match.group()
    return f'<a href="{url}">{url}</a>{tail}'


def _text_to_html(text: str) -> str:
    """Escaped text in <p> paragraphs with <br> line breaks; bare http(s) URLs become links."""
    escaped = str(escape(text))
    if "://" in escaped:
        escaped = _URL_IN_ESCAPED.sub(_link, escaped)
    return "\n".join("<p>" + p.strip("\n").replace("\n", "<br>\n") + "</p>"
                     for p in _PARAGRAPH_BREAK.split(escaped) if p.strip())


_PARAGRAPH_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol",
                             "dl", "hr", "figure"})
_LINE_TAGS = frozenset({"div", "tr", "li", "dt", "dd", "section", "article", "header", "footer", "address",
                        "center", "main", "nav", "aside", "figcaption", "form", "caption"})
_SKIPPED_TAGS = frozenset({"script", "style", "head", "title", "template"})
_TEMPLATE_MARK = re.compile("\ue000(\\d+)\ue001")


class _TextMaker(HTMLParser):
    """Turns HTML into readable plain text: paragraphs and line breaks kept, lists bulleted,
    quotes prefixed with "> ", links written as "text (url)", scripts and styles dropped.

    In template mode the input holds placeholders for Jinja constructs: statements (`markers`) are
    zero-width and never change line layout, expressions count as text."""

    def __init__(self, markers: frozenset[int] = frozenset(), restore: Callable[[str], str] | None = None):
        super().__init__(convert_charrefs=True)
        self._markers = markers
        self._restore = restore or (lambda s: s)
        self._lines: list[str] = []
        self._pieces: list[str] = []
        self._visible = False
        self._space = False
        self._quote = 0
        self._skip = 0
        self._pre = 0
        self._lists: list[list[Any]] = []
        self._links: list[list[Any]] = []  # [display url or None, collected text pieces]
        self.unconvertible = False  # set when the layout depends on how often a statement runs

    # output primitives
    def _emit(self, text: str) -> None:
        if self._visible and self._space:
            self._pieces.append(" ")
            for link in self._links:
                link[1].append(" ")
        self._pieces.append(text)
        for link in self._links:
            link[1].append(text)
        self._visible = True
        self._space = False

    def _text(self, data: str) -> None:
        words = data.split()
        if not words:
            if data and self._visible:
                self._space = True
            return
        if data[0].isspace() and self._visible:
            self._space = True
        self._emit(" ".join(words))
        if data[-1].isspace():
            self._space = True

    def _flush(self) -> None:
        content = "".join(self._pieces).rstrip()
        prefix = "> " * self._quote
        self._lines.append(prefix + content if content else prefix.rstrip())
        self._pieces = []
        self._visible = False
        self._space = False

    def _break(self, blank_lines: int = 0, force: bool = False) -> None:
        # Statements waiting on an empty line go on a line of their own before a blank line, so
        # that the blank line lands after them (after an {% endfor %}, not inside the loop).
        if self._visible or force or (blank_lines and self._pieces):
            self._flush()
        if blank_lines and self._lines and self._lines[-1].replace(">", "").strip():
            self._lines.append(("> " * self._quote).rstrip())

    def _data(self, data: str) -> None:
        if self._pre:
            lines = data.split("\n")
            for number, line in enumerate(lines):
                if number:
                    self._flush()
                if line:
                    self._pieces.append(line)
                    for link in self._links:
                        link[1].append(line)
                    self._visible = True
        else:
            self._text(data)

    # parser callbacks
    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._markers:
            self._data(data)
            return
        done = 0
        for match in _TEMPLATE_MARK.finditer(data):
            if int(match.group(1)) in self._markers:
                if any(kind == "ol" for kind, _ in self._lists):
                    self.unconvertible = True  # item numbers would be fixed at compile time
                self._data(data[done : match.start()])
                self._pieces.append(match.group())
                done = match.end()
        self._data(data[done:])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip += 1
            return
        if self._skip:
            return
        if tag == "br":
            self._break(force=True)
        elif tag in _PARAGRAPH_TAGS:
            self._break(1)
            if tag == "blockquote":
                self._quote += 1
            elif tag == "pre":
                self._pre += 1
            elif tag in ("ul", "ol"):
                self._lists.append([tag, 0])
        elif tag in _LINE_TAGS:
            self._break()
            if tag == "li":
                depth = max(len(self._lists), 1)
                kind = self._lists[-1] if self._lists else ["ul", 0]
                kind[1] += 1
                self._emit("  " * (depth - 1) + (f"{kind[1]}. " if kind[0] == "ol" else "- "))
                self._space = False
        elif tag in ("td", "th"):
            if self._visible:
                self._space = True
        elif tag == "a":
            self._links.append([_display_url(dict(attrs).get("href")), []])
        elif tag == "img" and self._links:
            alt = dict(attrs).get("alt")
            if alt:
                self._text(alt)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip = max(self._skip - 1, 0)
            return
        if self._skip:
            return
        if tag in _PARAGRAPH_TAGS:
            if tag == "blockquote" and self._quote:
                self._break()
                while self._lines and self._lines[-1] and not self._lines[-1].strip("> "):
                    self._lines.pop()  # the quote's own trailing blank lines
                self._quote -= 1
            self._break(1)
            if tag == "pre" and self._pre:
                self._pre -= 1
            elif tag in ("ul", "ol") and self._lists:
                self._lists.pop()
        elif tag in _LINE_TAGS:
            self._break()
        elif tag == "a" and self._links:
            url, pieces = self._links.pop()
            text = "".join(pieces).strip()
            if url and self._restore(url) != self._restore(text):
                self._space = True
                self._emit(f"({url})" if text else url)

    def result(self) -> str:
        self.close()
        if self._pieces:
            self._flush()
        return "\n".join(self._lines)


def _display_url(href: str | None) -> str | None:
    """How a link's target is shown in text: http(s) URLs as they are, mailto:/tel: without the
    scheme, nothing for fragments, scripts and relative links. Placeholders count as a URL."""
    if not href:
        return None
    url = href.strip()
    lowered = url.lower()
    if lowered.startswith(("http://", "https://")) or url.startswith("\ue000"):
        return url
    if lowered.startswith("mailto:"):
        return url[7:].split("?", 1)[0] or None
    if lowered.startswith("tel:"):
        return url[4:] or None
    return None


_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)


def _tidy(text: str) -> str:
    """Trailing spaces off every line, at most one blank line in a row, no blank lines around."""
    if " \n" in text or "\t\n" in text:
        text = _TRAILING_SPACE.sub("", text)
    if "\n\n\n" in text:
        text = _BLANK_RUNS.sub("\n\n", text)
    return text.rstrip().lstrip("\n")


def html_to_text(html: str) -> str:
    """A plain-text rendering of `html` for the text/plain alternative."""
    maker = _TextMaker()
    maker.feed(html)
    return _tidy(maker.result())


_JINJA_CONSTRUCT = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
# Filters and constructs whose HTML output differs from what the text template would print.
_HTML_ONLY_FILTERS = frozenset({"safe", "e", "escape", "forceescape", "urlize", "xmlattr"})


def _without_whitespace_control(source: str) -> str:
    """`{%- x -%}` → `{% x %}`: the derived text manages its own whitespace."""
    if source[2:3] in ("-", "+"):
        source = source[:2] + " " + source[3:]
    if len(source) > 4 and source[-3] in "-+":
        source = source[:-3] + " " + source[-2:]
    return source


def _derive_text_template(body: str) -> Any:
    """Compile a text-alternative template from an HTML template's source, or return None when
    the source does not convert cleanly (then the rendered HTML is converted at every render)."""
    if "\ue000" in body or "\ue001" in body:
        return None  # our placeholder characters: cannot mask this source safely
    try:
        tree = _HTML_ENV.parse(body)
    except (TemplateSyntaxError, RecursionError):
        return None
    if any(isinstance(node, nodes.Filter) and node.name in _HTML_ONLY_FILTERS for node in tree.find_all(nodes.Filter)):
        return None
    if any(True for _ in tree.find_all((nodes.EvalContextModifier, nodes.MarkSafe, nodes.MarkSafeIfAutoescape))):
        return None
    constructs: list[str] = []
    statements: set[int] = set()

    def placeholder(match: re.Match[str]) -> str:
        source = match.group()
        if source.startswith("{#"):
            return ""
        constructs.append(_without_whitespace_control(source))
        if source.startswith("{%"):
            statements.add(len(constructs) - 1)
        return f"\ue000{len(constructs) - 1}\ue001"

    masked = _JINJA_CONSTRUCT.sub(placeholder, body)

    def restore(text: str) -> str:
        return _TEMPLATE_MARK.sub(lambda m: constructs[int(m.group(1))], text)

    maker = _TextMaker(markers=frozenset(statements), restore=restore)
    maker.feed(masked)
    derived = maker.result()
    if maker.unconvertible:
        return None
    found = [int(n) for n in _TEMPLATE_MARK.findall(derived)]
    kept_statements = [n for n in found if n in statements]
    if kept_statements != sorted(statements) or len(found) != len(set(found)):
        return None
    if re.search(r"\{[{%#]", _TEMPLATE_MARK.sub("\x00", derived)):
        return None  # literal text that Jinja would read as a construct
    try:
        return _compile(_DERIVED_TEXT_ENV, restore(derived), "body", "")
    except TemplateProblem:
        return None


# --- threads -------------------------------------------------------------------------------------

_BODY_CONTENT = re.compile(r"<body\b[^>]*>(.*)</body\s*>", re.IGNORECASE | re.DOTALL)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def _one_line(value: str) -> str:
    return " ".join(str(value).split())


def quote_previous(new: RenderedEmail, *, previous: RenderedEmail, previous_from: str,
                   previous_date: str) -> RenderedEmail:
    """`new` with the previous email quoted below it, as mail clients do for a reply: the text
    gets "On <date>, <from> wrote:" and "> " lines, the HTML an attribution and a <blockquote>."""
    attribution = f"On {_one_line(previous_date)}, {_one_line(previous_from)} wrote:"
    quoted = "\n".join(f"> {line}" if line else ">" for line in previous.text.splitlines())
    text = f"{new.text}\n\n{attribution}\n{quoted}".rstrip()
    inner = _BODY_CONTENT.search(previous.html)
    previous_html = inner.group(1) if inner else previous.html
    block = (f'<div class="cadence-quote"><p>{escape(attribution)}</p>'
             '<blockquote style="margin:0 0 0 .8ex;border-left:1px solid #ccc;padding-left:1ex">'
             f"{previous_html}</blockquote></div>")
    ends = list(_BODY_END.finditer(new.html))
    if ends:
        at = ends[-1].start()
        html = new.html[:at] + block + new.html[at:]
    else:
        html = new.html + "\n" + block
    return RenderedEmail(subject=new.subject, html=html, text=text)
