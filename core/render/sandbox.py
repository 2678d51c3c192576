"""The Jinja2 sandbox email templates run in: Jinja's immutable sandbox plus our limits (intercepted
operators, bounded range, counted loops and calls, size checks, no printing of callables), strict
undefined variables, and a compile-time guard refusing private attributes and template loading.
"""
from __future__ import annotations

import functools
import re
import string
from typing import Any, Callable, Mapping

from jinja2 import filters as jinja_filters
from jinja2 import nodes
from jinja2.exceptions import TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner, Namespace, pass_context, pass_eval_context
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from core.render.limits import (
    DEFAULT_LIMITS, TEXTUAL, as_int, check_binop, check_format_string, check_printf, check_size,
    check_width, current_budget, is_sequence, max_chars, tick, too_big, value_size,
)
from core.render.problems import CompileRefusal, LimitHit, MissingVariableError, Refused, TemplateProblem
from core.render.spacing import BREAK_MARK, prepare_source, resolve_breaks


def _undefined_error(undefined: Undefined) -> Exception:
    exc_class = undefined._undefined_exception
    message = undefined._undefined_message
    if exc_class is UndefinedError:
        return MissingVariableError(str(undefined._undefined_name), message)
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


def _bounded_range(*args: Any) -> range:
    numbers = range(*args)
    budget = current_budget.get()
    limit = (budget.limits if budget is not None else DEFAULT_LIMITS).max_iterations
    if len(numbers) > limit:
        raise LimitHit("max_iterations", f"range() of {len(numbers)} items is more than the {limit} allowed")
    return numbers


def _finalize(value: Any) -> Any:
    """Applied to every printed expression before it becomes text."""
    kind = type(value)
    if kind is str or kind is Markup:
        return value
    if isinstance(value, Undefined):
        return value  # printing raises MissingVariable (or the sandbox's refusal)
    if callable(value):
        raise Refused("printing a function, method or class is not allowed")
    check_size(value)
    return value


def _string_method_check(owner: Any, name: str, args: tuple, kwargs: dict) -> tuple:
    """Pre-checks for str/bytes methods whose result can be far bigger than their inputs."""
    cap = max_chars()
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill"):
        check_width(first if first is not None else kwargs.get("width"), f"{name}() width")
    elif name == "expandtabs":
        tabsize = as_int(first if first is not None else kwargs.get("tabsize", 8)) or 0
        if len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * tabsize > cap:
            raise too_big(cap + 1, cap)
    elif name == "join" and args:
        items = list(args[0])
        total = len(owner) * len(items)
        for item in items:
            total += value_size(item, cap)
            if total > cap:
                raise too_big(total, cap)
        return (items,) + args[1:]
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        count = as_int(args[2]) if len(args) > 2 else None
        if isinstance(old, TEXTUAL) and isinstance(new, TEXTUAL):
            hits = owner.count(old) if len(old) else len(owner) + 1
            if count is not None and count >= 0:
                hits = min(hits, count)
            if len(owner) + hits * len(new) > cap:
                raise too_big(cap + 1, cap)
    elif name == "translate" and args:
        if len(owner) * max(value_size(args[0], cap), 1) > cap:
            raise too_big(cap + 1, cap)
    return args


def _pre_filter_checks() -> dict[str, Callable[..., None]]:
    def center(value: Any, width: Any = 80) -> None:
        check_width(width, "center() width")

    def indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> None:
        text = str(s)
        per_line = len(width) if isinstance(width, str) else (as_int(width) or 0)
        if len(text) + (text.count("\n") + 1) * per_line > max_chars():
            raise too_big(max_chars() + 1, max_chars())

    def format_(value: Any, *args: Any, **kwargs: Any) -> None:
        check_printf(str(value), kwargs or args)

    def batch(value: Any, linecount: Any, fill_with: Any = None) -> None:
        check_width(linecount, "batch() size")

    def slice_(value: Any, slices: Any, fill_with: Any = None) -> None:
        check_width(slices, "slice() count")

    def replace(s: Any, old: Any, new: Any, count: Any = None) -> None:
        _string_method_check(str(s), "replace", (str(old), str(new), count if count is not None else -1), {})

    def wordwrap(s: Any, width: Any = 79, break_long_words: bool = True, wrapstring: Any = None,
                 break_on_hyphens: bool = True) -> None:
        text = str(s)
        lines = len(text) // max(as_int(width) or 1, 1) + text.count("\n") + 1
        if len(text) + lines * len(str(wrapstring or "\n")) > max_chars():
            raise too_big(max_chars() + 1, max_chars())

    def urlize(value: Any, trim_url_limit: Any = None, nofollow: bool = False, target: Any = None,
               rel: Any = None, extra_schemes: Any = None) -> None:
        text = str(value)
        extra = len(str(target or "")) + len(str(rel or "")) + 64
        if 3 * len(text) + (len(text) // 4 + 1) * extra > max_chars():
            raise too_big(max_chars() + 1, max_chars())

    def tojson(value: Any, indent: Any = None) -> None:
        if (as_int(indent) or 0) > 16:
            raise LimitHit("max_output_chars", "tojson() indent is more than 16")

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
            check_size(value)
        for value in kwargs.values():
            check_size(value)
        if precheck is not None:
            precheck(*data, **kwargs)
        return check_size(func(*args, **kwargs))

    return guarded


@pass_eval_context
def _join_filter(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    cap = max_chars()
    items = list(value)
    picked = items if attribute is None else list(map(jinja_filters.make_attrgetter(eval_ctx.environment, attribute), items))
    total = len(str(d)) * len(picked)
    for item in picked:
        total += value_size(item, cap)
        if total > cap:
            raise too_big(total, cap)
    return jinja_filters.sync_do_join(eval_ctx, items, d, attribute)


@pass_context
def _sum_filter(context: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    cap = max_chars()
    items = list(iterable)
    if attribute is not None:
        items = list(map(jinja_filters.make_attrgetter(context.environment, attribute), items))
    if is_sequence(start) or any(is_sequence(item) for item in items):
        # Adding sequences one by one copies them again at every step: bound that work too.
        total = value_size(start, cap) + sum(value_size(item, cap) for item in items)
        if total > cap or total * len(items) > 20 * cap:
            raise too_big(total, cap)
    return sum(items, start)


@pass_context
def _count_iterations(context: Any, iterable: Any) -> Any:
    """Wrapped around every {% for %} iterable: each item costs one step of the budget."""
    budget = current_budget.get()
    if budget is None:
        return iterable
    return _counted(iterable, budget.tick)


def _counted(iterable: Any, tick: Callable[[], None]) -> Any:
    for item in iterable:
        tick()
        yield item


def _sized(value: Any) -> Any:
    """Wrapped around literals and concatenations."""
    return check_size(value)


def _settled(value: Any) -> Any:
    """A captured value ({% set %} block, macro call) checked for size, its break marks resolved."""
    value = check_size(value)
    if isinstance(value, str) and BREAK_MARK in value:
        return type(value)(resolve_breaks(value))
    return value


_INTERNAL_FILTERS = {"_cadence_count": _count_iterations, "_cadence_sized": _sized, "_cadence_settled": _settled}


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox plus our limits: intercepted operators, bounded range, counted
    loops and calls, size checks on values, refusal to print callables."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, autoescape: bool, trim: bool):
        super().__init__(autoescape=autoescape, undefined=_StrictUndefined, finalize=_finalize,
                         trim_blocks=trim, lstrip_blocks=trim, cache_size=0, auto_reload=False)
        self.globals.clear()
        self.globals.update(GLOBALS)
        self.filters = {name: func if name in _UNCHECKED_FILTERS else _guard_filter(name, func)
                        for name, func in self.filters.items()}
        self.filters["join"] = _join_filter
        self.filters["sum"] = _sum_filter
        self.filters.update(_INTERNAL_FILTERS)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        tick()
        check_binop(operator, left, right)
        return check_size(self.binop_table[operator](left, right))

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        tick()
        for value in args:
            check_size(value)
        for value in kwargs.values():
            check_size(value)
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, TEXTUAL):
            args = _string_method_check(owner, getattr(obj, "__name__", ""), args, kwargs)
        elif isinstance(owner, int) and getattr(obj, "__name__", "") == "to_bytes":
            check_width(args[0] if args else kwargs.get("length", 1), "to_bytes() length")
        return _settled(super().call(context, obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        template = value.__self__
        is_format_map = value.__name__ == "format_map"

        @functools.wraps(wrapper)
        def checked(*args: Any, **kwargs: Any) -> str:
            if is_format_map and len(args) == 1 and isinstance(args[0], Mapping):
                check_format_string(template, (), args[0])
            else:
                check_format_string(template, args, kwargs)
            return check_size(wrapper(*args, **kwargs))

        return checked


GLOBALS: dict[str, Any] = {"range": _bounded_range, "dict": dict, "cycler": Cycler,
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
            raise CompileRefusal(f"access to the private attribute {node.attr!r} is not allowed", node.lineno)
        if node.attr in ("format", "format_map") and isinstance(node.node, nodes.Const) \
                and isinstance(node.node.value, str) and _format_reaches_private(node.node.value):
            raise CompileRefusal("a format string may not reach private attributes", node.lineno)
        return self.generic_visit(node)

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) and node.arg.value.startswith("_"):
            raise CompileRefusal(f"access to the private attribute {node.arg.value!r} is not allowed", node.lineno)
        return self.generic_visit(node)

    def visit_Filter(self, node: nodes.Filter) -> nodes.Node:
        if node.name.startswith("_cadence"):
            raise CompileRefusal(f"there is no filter named {node.name!r}", node.lineno)
        if node.name == "attr" and node.args and isinstance(node.args[0], nodes.Const) \
                and str(node.args[0].value).startswith("_"):
            raise CompileRefusal(f"access to the private attribute {node.args[0].value!r} is not allowed", node.lineno)
        return self.generic_visit(node)

    def _refuse_loading(self, node: nodes.Node) -> nodes.Node:
        raise CompileRefusal("include, import and extends are not available in email templates", node.lineno)

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
        node.filter = nodes.Filter(node.filter, "_cadence_settled", [], [], None, None, lineno=node.lineno)
        return node


HTML_ENV = Sandbox(autoescape=True, trim=True)
TEXT_ENV = Sandbox(autoescape=False, trim=True)
# Text alternatives derived from HTML templates manage their own whitespace.
DERIVED_TEXT_ENV = Sandbox(autoescape=False, trim=False)


def compile_template(env: Sandbox, source: str, field: str, where: str) -> Any:
    try:
        source = prepare_source(source, keep_line_breaks=not env.trim_blocks)
        tree = env.parse(source)
        tree = _Guard().visit(tree)
        tree.set_environment(env)
        template = env.from_string(tree)
        # Jinja copies the keys of a template's globals on every render; a ChainMap makes that
        # copy cost more than a short template's output. The sandbox's globals never change.
        template.globals = dict(template.globals)
        return template
    except CompileRefusal as exc:
        raise TemplateProblem(str(exc), field=field, line=exc.lineno, where=where) from None
    except TemplateSyntaxError as exc:
        raise TemplateProblem(exc.message or "syntax error", field=field, line=exc.lineno, where=where) from None
    except TemplateError as exc:
        raise TemplateProblem(str(exc) or type(exc).__name__, field=field, where=where) from None
    except (RecursionError, SyntaxError, MemoryError) as exc:  # Jinja2's parser or Python's compiler gave up
        reason = exc.msg if isinstance(exc, SyntaxError) and exc.msg else "nested too deeply"
        raise TemplateProblem(f"the template is too complex to compile ({reason})", field=field, where=where) from None
