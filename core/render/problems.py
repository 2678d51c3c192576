"""Errors of template compiling and rendering: one sentence each, naming field, line and place.

Public: TemplateProblem and its kinds (MissingVariable, RenderLimitExceeded, UnsafeSubject), raised
to callers. LimitHit, Refused, CompileRefusal and MissingVariableError are raised inside the sandbox
and turned into TemplateProblem by `core.render.steps` before they reach a caller.
"""
from __future__ import annotations

from jinja2.exceptions import UndefinedError


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


class LimitHit(Exception):
    def __init__(self, limit: str, message: str):
        super().__init__(message)
        self.limit = limit
        self.message = message


class Refused(Exception):
    """Something the sandbox does not allow, found while rendering."""


class CompileRefusal(Exception):
    def __init__(self, message: str, lineno: int | None):
        super().__init__(message)
        self.lineno = lineno


class MissingVariableError(UndefinedError):
    def __init__(self, variable: str, message: str):
        super().__init__(message)
        self.variable = variable
