"""Reply quoting: a follow-up carries the previous email below it, as mail clients quote."""
from __future__ import annotations

import re

from markupsafe import escape

from core.render.steps import RenderedEmail


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
