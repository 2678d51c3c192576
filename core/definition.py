"""Campaign YAML → `CampaignSpec`. Pure: the caller reads files and passes a `read_file` callback.

Every refusal is one `DefinitionError` naming the file, the line and the field at fault, also for
hostile files: a key given twice in a mapping, a key that is not text (`? [a, b]`), nesting deeper
than MAX_NESTING, a file over MAX_FILE_CHARS, a body over MAX_BODY_BYTES, `day:` outside 1..MAX_DAY,
and templates too deep for Jinja2 or Python to compile.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from core.campaign import WEEKDAYS, CampaignSpec, SendWindow, StepSpec
from core.render import TemplateProblem, compile_step
from core.vocabulary import SendOption, StepAction
from core.zones import canonical_zone

TOP_KEYS = {"name", "timezone", "send_window", "daily_limit", "track", "steps", "exclusions"}
STEP_KEYS = {"day", "action", "send", "time", "thread", "subject", "body", "body_file"}
WINDOW_KEYS = {"days", "start", "end", "skip_holidays"}
TRACK_KEYS = {"opens", "clicks"}
EXCLUSION_KEYS = {"active_elsewhere", "do_not_contact_domains"}
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](-*[a-z0-9])*\.)+[a-z]{2,63}$", re.IGNORECASE)
HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
MAX_DAY = 365  # a step's day, counted from the launch day
MAX_BODY_BYTES = 1_000_000  # a step's body (inline or body_file), UTF-8 encoded
MAX_FILE_CHARS = 2_000_000  # a whole campaign file; larger bodies belong in body_file
MAX_NESTING = 64  # YAML collections inside collections


class BodyFileError(ValueError):
    """Raised by a `read_file` callback for a body_file it refuses; the message is the reason
    (one clause, e.g. "is outside the campaign file's folder")."""


class DefinitionError(ValueError):
    def __init__(self, source: str, line: int | None, field: str, message: str):
        where = f"{source}, line {line}" if line else source
        super().__init__(f"{where}: {field}: {message}")
        self.source, self.line, self.field, self.message = source, line, field, message


class _Located(dict):
    """A YAML mapping that remembers the line of each key (1-based)."""

    lines: dict[str, int]
    line: int


class _KeyProblem(yaml.YAMLError):
    """A mapping key refused while loading (twice in one mapping, or not text)."""

    def __init__(self, line: int, field: str, message: str):
        super().__init__(message)
        self.line, self.field, self.message = line, field, message


class _Loader(yaml.SafeLoader):
    _depth = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        # PyYAML composes recursively: bound the depth before Python's own recursion limit does.
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise yaml.composer.ComposerError(None, None, f"collections nested more than {MAX_NESTING} deep",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Located:
    loader.flatten_mapping(node)
    mapping = _Located()
    mapping.lines = {}
    mapping.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            raise _KeyProblem(line, "yaml", "a key must be plain text, not a list or a mapping")
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise _KeyProblem(line, str(key), f"given twice in the same mapping (first on line {mapping.lines[key]}); "
                                              "keep one")
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = line
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.1 reads an unquoted 10:00 as the base-60 number 600; keep such times as text.
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _NUMBER_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_NUMBER_TAGS[0], re.compile(r"^[-+]?(0|[1-9][0-9_]*)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(_NUMBER_TAGS[1], re.compile(r"^[-+]?[0-9]*\.[0-9]+([eE][-+]?[0-9]+)?$"),
                              list("-+0123456789."))


@dataclass
class _Ctx:
    source: str

    def fail(self, mapping: Any, key: str | None, field: str, message: str) -> DefinitionError:
        line = None
        if isinstance(mapping, _Located):
            line = mapping.lines.get(key, mapping.line) if key is not None else mapping.line
        return DefinitionError(self.source, line, field, message)


def parse_campaign(text: str, *, source: str, read_file: Callable[[str], str]) -> CampaignSpec:
    """Validate a campaign file. `read_file(relative_path)` returns a `body_file`'s text."""
    ctx = _Ctx(source)
    if len(text) > MAX_FILE_CHARS:
        raise DefinitionError(source, None, "campaign", f"the file is over {MAX_FILE_CHARS:,} characters; "
                              "keep long bodies in body_file")
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except _KeyProblem as exc:
        raise DefinitionError(source, exc.line, exc.field, exc.message) from None
    except RecursionError:
        raise DefinitionError(source, None, "yaml", "nested too deeply to read") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DefinitionError(source, mark.line + 1 if mark else None, "yaml",
                              f"not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(doc, _Located):
        raise DefinitionError(source, 1, "campaign", "the file must be a mapping with name and steps")
    _refuse_unknown(ctx, doc, TOP_KEYS, "")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ctx.fail(doc, "name", "name", "a campaign needs a non-empty name")
    zone = doc.get("timezone")
    if zone is not None:
        zone = _zone(ctx, doc, "timezone", zone).key
    window = _window(ctx, doc.get("send_window"), doc) if "send_window" in doc else None
    daily_limit = doc.get("daily_limit")
    if daily_limit is not None and (not isinstance(daily_limit, int) or isinstance(daily_limit, bool) or daily_limit < 1):
        raise ctx.fail(doc, "daily_limit", "daily_limit", "must be a whole number of at least 1")
    track = doc.get("track", {}) or {}
    if not isinstance(track, dict):
        raise ctx.fail(doc, "track", "track", "must be a mapping like {opens: true, clicks: true}")
    _refuse_unknown(ctx, track, TRACK_KEYS, "track.")
    for key in TRACK_KEYS:
        if not isinstance(track.get(key, True), bool):
            raise ctx.fail(track, key, f"track.{key}", "must be true or false")
    exclusions = doc.get("exclusions", {}) or {}
    if not isinstance(exclusions, dict):
        raise ctx.fail(doc, "exclusions", "exclusions", "must be a mapping")
    _refuse_unknown(ctx, exclusions, EXCLUSION_KEYS, "exclusions.")
    if not isinstance(exclusions.get("active_elsewhere", True), bool):
        raise ctx.fail(exclusions, "active_elsewhere", "exclusions.active_elsewhere", "must be true or false")
    domains = exclusions.get("do_not_contact_domains", [])
    if not isinstance(domains, list) or not all(isinstance(d, str) and DOMAIN.match(d.lstrip("@")) for d in domains):
        raise ctx.fail(exclusions, "do_not_contact_domains", "exclusions.do_not_contact_domains",
                       "must be a list of domains such as [competitor.example]")
    steps_doc = doc.get("steps", [])
    if not isinstance(steps_doc, list):
        raise ctx.fail(doc, "steps", "steps", "must be a list of steps")
    steps: list[StepSpec] = []
    for index, step_doc in enumerate(steps_doc, start=1):
        steps.append(_step(ctx, index, step_doc, doc, steps, read_file))
    return CampaignSpec(
        name=name.strip(),
        steps=tuple(steps),
        timezone=zone,
        send_window=window,
        daily_limit=daily_limit,
        track_opens=track.get("opens", True),
        track_clicks=track.get("clicks", True),
        exclusions=dict(exclusions),
    )


def _refuse_unknown(ctx: _Ctx, mapping: dict, known: set[str], prefix: str) -> None:
    for key in mapping:
        if key not in known:
            raise ctx.fail(mapping, key, f"{prefix}{key}", f"unknown option (known: {', '.join(sorted(known))})")


def _zone(ctx: _Ctx, mapping: dict, key: str, value: Any) -> ZoneInfo:
    try:
        if not isinstance(value, str) or not value:
            raise ValueError
        return ZoneInfo(canonical_zone(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ctx.fail(mapping, key, key, f"{value!r} is not an IANA time zone such as Europe/Paris") from None


def _hhmm(ctx: _Ctx, mapping: dict, key: str, field: str) -> time:
    value = mapping.get(key)
    if not isinstance(value, str) or not HHMM.match(value):
        raise ctx.fail(mapping, key, field, f"{value!r} is not a time as \"HH:MM\" (00:00 to 23:59)")
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _window(ctx: _Ctx, window: Any, doc: dict) -> SendWindow:
    if not isinstance(window, dict):
        raise ctx.fail(doc, "send_window", "send_window", "must be a mapping with days, start and end")
    _refuse_unknown(ctx, window, WINDOW_KEYS, "send_window.")
    days_doc = window.get("days", list(WEEKDAYS))
    if not isinstance(days_doc, list) or not days_doc:
        raise ctx.fail(window, "days", "send_window.days", "must be a non-empty list such as [mon, tue]")
    days = set()
    for day in days_doc:
        if not isinstance(day, str) or day.strip().lower() not in WEEKDAYS:
            raise ctx.fail(window, "days", "send_window.days",
                           f"{day!r} is not a weekday; use {', '.join(WEEKDAYS)}")
        days.add(WEEKDAYS.index(day.strip().lower()))
    start = _hhmm(ctx, window, "start", "send_window.start") if "start" in window else time(0, 0)
    end = _hhmm(ctx, window, "end", "send_window.end") if "end" in window else time(23, 59, 59)
    if start >= end:
        raise ctx.fail(window, "end", "send_window.end", "must be later than start")
    skip = window.get("skip_holidays", False)
    if not isinstance(skip, bool):
        raise ctx.fail(window, "skip_holidays", "send_window.skip_holidays", "must be true or false")
    return SendWindow(frozenset(days), start, end, skip)


def _step(ctx: _Ctx, position: int, doc: Any, parent: dict, earlier: list[StepSpec],
          read_file: Callable[[str], str]) -> StepSpec:
    field = f"steps[{position}]"
    if not isinstance(doc, _Located):
        raise ctx.fail(parent, "steps", field, "each step must be a mapping")
    _refuse_unknown(ctx, doc, STEP_KEYS, f"{field}.")
    day = doc.get("day")
    if not isinstance(day, int) or isinstance(day, bool) or not 1 <= day <= MAX_DAY:
        raise ctx.fail(doc, "day", f"{field}.day", f"must be a whole number from 1 to {MAX_DAY}")
    if earlier and day < earlier[-1].day:
        raise ctx.fail(doc, "day", f"{field}.day", f"day {day} comes before the previous step's day {earlier[-1].day}")
    action = _choice(ctx, doc, "action", field, StepAction, StepAction.AUTO)
    send = _choice(ctx, doc, "send", field, SendOption, None)
    first = position == 1
    if send is SendOption.CHOOSE_AT_LAUNCH and not first:
        raise ctx.fail(doc, "send", f"{field}.send", "choose_at_launch is only for the first step")
    if send is SendOption.SAME_AS_PREVIOUS and first:
        raise ctx.fail(doc, "send", f"{field}.send", "same_as_previous needs a previous step; the first step has none")
    at: time | None = None
    if send is SendOption.AT_TIME:
        at = _hhmm(ctx, doc, "time", f"{field}.time")
    elif "time" in doc:
        raise ctx.fail(doc, "time", f"{field}.time", "is only used with send: at_time")
    thread = doc.get("thread", False)
    if not isinstance(thread, bool):
        raise ctx.fail(doc, "thread", f"{field}.thread", "must be true or false")
    if thread and first:
        raise ctx.fail(doc, "thread", f"{field}.thread", "the first step has no previous email to thread to")
    subject = doc.get("subject")
    if subject is not None and (not isinstance(subject, str) or not subject.strip()):
        raise ctx.fail(doc, "subject", f"{field}.subject", "must be non-empty text")
    if subject is None and not thread:
        raise ctx.fail(doc, None, f"{field}.subject", "is required unless the step is threaded")
    if ("body" in doc) == ("body_file" in doc):
        raise ctx.fail(doc, None, f"{field}.body", "give exactly one of body and body_file")
    if "body_file" in doc:
        path = doc["body_file"]
        if not isinstance(path, str) or not path:
            raise ctx.fail(doc, "body_file", f"{field}.body_file", "must be a path relative to the campaign file")
        try:
            body = read_file(path)
        except BodyFileError as exc:
            raise ctx.fail(doc, "body_file", f"{field}.body_file", f"{path} {exc}") from None
        except UnicodeDecodeError as exc:
            inner = bytes(exc.object[:exc.start]).count(b"\n") + 1 if isinstance(exc.object, (bytes, bytearray)) else None
            where = f"line {inner}, byte {exc.start + 1}" if inner else f"byte {exc.start + 1}"
            raise ctx.fail(doc, "body_file", f"{field}.body_file",
                           f"{path} is not UTF-8 text ({where} of that file); save it as UTF-8") from None
        except OSError as exc:
            raise ctx.fail(doc, "body_file", f"{field}.body_file",
                           f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
        body_key = "body_file"
        if not isinstance(body, str) or not body.strip():
            raise ctx.fail(doc, "body_file", f"{field}.body_file", f"{path} is empty")
    else:
        body, body_key = doc["body"], "body"
        if not isinstance(body, str) or not body.strip():
            raise ctx.fail(doc, "body", f"{field}.body", "must be non-empty text")
    if len(body) > MAX_BODY_BYTES or len(body.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
        raise ctx.fail(doc, body_key, f"{field}.{body_key}", f"the body is over {MAX_BODY_BYTES:,} bytes")
    try:
        compile_step(subject, body)
    except (RecursionError, SyntaxError, MemoryError) as exc:  # whatever a compile step let through
        raise ctx.fail(doc, body_key, f"{field}.{body_key}",
                       f"template error: too deeply nested to compile ({type(exc).__name__})") from None
    except TemplateProblem as problem:
        key = "subject" if problem.field == "subject" else body_key
        line = doc.lines.get(key, doc.line)
        inner = f" (template line {problem.line})" if problem.line else ""
        raise DefinitionError(ctx.source, line, f"{field}.{key}", f"template error{inner}: {problem.message}") from None
    return StepSpec(position=position, day=day, action=action, send=send, body=body,
                    subject=subject.strip() if subject else None, time=at, thread=thread)


def _choice(ctx: _Ctx, doc: dict, key: str, field: str, enum: type, default: Any) -> Any:
    if key not in doc:
        if default is None:
            raise ctx.fail(doc, None, f"{field}.{key}", f"is required ({' | '.join(e.value for e in enum)})")
        return default
    try:
        return enum(doc[key])
    except ValueError:
        raise ctx.fail(doc, key, f"{field}.{key}",
                       f"{doc[key]!r} is not one of {' | '.join(e.value for e in enum)}") from None


def campaign_warnings(spec: CampaignSpec) -> list[str]:
    """What is worth knowing about a valid campaign before it is sent (one sentence each).

    A threaded step with a subject of its own goes into the previous email's thread (In-Reply-To,
    References) under another subject: Gmail groups a conversation only when the subject matches
    too (https://support.google.com/mail/answer/5900), so Gmail users see a new conversation.
    """
    warnings = []
    for step in spec.steps:
        if not step.thread or step.subject is None or step.position == 1:
            continue
        previous = spec.step(step.position - 1).subject
        if previous is not None and _same_subject(step.subject, f"Re: {previous}"):
            continue
        warnings.append(
            f"steps[{step.position}] (day {step.day}) is threaded but has its own subject {step.subject!r}: "
            "Gmail threads a reply only under the conversation's subject, so Gmail users will see a new "
            "conversation; leave the subject out to send it as \"Re: <previous subject>\"")
    return warnings


def _same_subject(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()
