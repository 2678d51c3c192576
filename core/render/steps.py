"""Compiled steps and rendering one contact's email: `compile_step` once per step, `render_step`
per contact, under RenderLimits; every failure becomes a TemplateProblem naming field and line.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping, NamedTuple

from jinja2.exceptions import SecurityError

from core.headers import HeaderInjection, check_header_value
from core.render.limits import DEFAULT_LIMITS, Budget, LimitHit, RenderLimits, current_budget
from core.render.problems import (
    MissingVariable, MissingVariableError, Refused, RenderLimitExceeded, TemplateProblem, UnsafeSubject,
)
from core.render.sandbox import GLOBALS, HTML_ENV, TEXT_ENV, compile_template
from core.render.spacing import resolve_breaks
from core.render.text import derive_text_template, html_to_text, looks_like_html, text_to_html, tidy_text


class RenderedEmail(NamedTuple):
    """One contact's rendered email (immutable; a named tuple: one is made per message prepared,
    where a frozen dataclass's `__init__` cost a prepare of 100k contacts 1 % of its time)."""

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
        subject_template = compile_template(TEXT_ENV, source, "subject", where)
    if not isinstance(body, str) or not body.strip():
        raise TemplateProblem("the body is empty", field="body", where=where)
    if looks_like_html(body):
        body_template = compile_template(HTML_ENV, body, "body", where)
        text_template = derive_text_template(body)
        return CompiledStep(where, True, subject_template, body_template, text_template)
    return CompiledStep(where, False, subject_template, compile_template(TEXT_ENV, body, "body", where), None)


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
    if isinstance(exc, LimitHit):
        return RenderLimitExceeded(exc.limit, exc.message, field=field, line=line, where=where)
    if isinstance(exc, RecursionError):
        return RenderLimitExceeded("recursion_depth", "calls nest too deeply, probably a macro that calls itself without end",
                                   field=field, line=line, where=where)
    if isinstance(exc, MemoryError):
        return RenderLimitExceeded("max_output_chars", "it ran out of memory", field=field, line=line, where=where)
    if isinstance(exc, MissingVariableError):
        detail = None if str(exc).endswith("is undefined") else str(exc)
        return MissingVariable(exc.variable, field=field, line=line, where=where, detail=detail)
    if isinstance(exc, SecurityError):
        return TemplateProblem(f"refused by the sandbox: {exc}", field=field, line=line, where=where)
    if isinstance(exc, Refused):
        return TemplateProblem(f"refused by the sandbox: {exc}", field=field, line=line, where=where)
    detail = str(exc) or type(exc).__name__
    return TemplateProblem(f"the template failed: {detail}", field=field, line=line, where=where)


def _run(template: Any, context_vars: dict[str, Any], field: str, where: str, budget: Budget,
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
                    raise LimitHit("max_output_chars", f"the output is longer than {cap} characters")
                budget.check_time()
            append(chunk)
    except Exception as exc:  # every failure of a template is that template's problem
        problem = _translate(exc, template, field, where)
        if not source_lines:
            problem.line = None  # a derived template's lines are not the author's lines
            problem.args = (str(problem),)
        raise problem from (None if isinstance(exc, RecursionError) else exc)
    return resolve_breaks("".join(parts))


def render_context(variables: Mapping[str, Any]) -> dict[str, Any]:
    """What templates see for these variables: the sandbox's globals and every variable that has a
    value (None and "" count as missing, so `default` applies). Build it once per contact."""
    return {**GLOBALS, **{name: value for name, value in variables.items() if value is not None and value != ""}}


def render_step(step: CompiledStep, variables: Mapping[str, Any], *, limits: RenderLimits = DEFAULT_LIMITS,
                timer: Callable[[], float] = time.perf_counter, context: dict[str, Any] | None = None) -> RenderedEmail:
    """Render one contact's email. Raises MissingVariable, RenderLimitExceeded, UnsafeSubject or
    TemplateProblem (the base class of all three). `context` is `render_context(variables)` when the
    caller renders several steps for the same contact."""
    context_vars = render_context(variables) if context is None else context
    budget = Budget(limits, timer)
    token = current_budget.set(budget)
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
                text = tidy_text(_run(step._text, context_vars, "body", step.where, budget, source_lines=False))
            else:
                text = html_to_text(body)
            return RenderedEmail(subject=subject, html=body, text=text)
        text = body.strip("\n").rstrip()
        return RenderedEmail(subject=subject, html=text_to_html(text), text=text)
    finally:
        current_budget.reset(token)
