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

from core.render.limits import RenderLimits
from core.render.problems import MissingVariable, RenderLimitExceeded, TemplateProblem, UnsafeSubject
from core.render.quoting import quote_previous
from core.render.steps import CompiledStep, RenderedEmail, compile_step, render_context, render_step
from core.render.text import html_to_text, looks_like_html

__all__ = [
    "CompiledStep", "MissingVariable", "RenderLimitExceeded", "RenderLimits", "RenderedEmail",
    "TemplateProblem", "UnsafeSubject", "compile_step", "html_to_text", "looks_like_html", "quote_previous", "render_context",
    "render_step",
]
