"""Reading the text of `/cadence …` into a command. Pure: malformed text becomes `help` with a reason."""
from __future__ import annotations

from dataclasses import dataclass

VERBS = ("status", "tasks", "pause", "resume", "digest", "web", "help")
MAX_TEXT = 300


@dataclass(frozen=True)
class Command:
    name: str  # one of VERBS
    argument: str = ""
    problem: str | None = None  # why the help text is shown instead of what was asked


def _unescape(text: str) -> str:
    # Slack escapes these three in command text; nothing else.
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse_command(text: str | None) -> Command:
    cleaned = "".join(ch if ch.isprintable() else " " for ch in _unescape(text or "")).strip()
    if len(cleaned) > MAX_TEXT:
        return Command("help", problem=f"That command is longer than {MAX_TEXT} characters.")
    words = cleaned.split()
    if not words:
        return Command("help")
    verb, rest = words[0].casefold(), " ".join(words[1:])
    if verb in ("help", "?", "-h", "--help"):
        return Command("help")
    if verb == "status":
        return Command("status", rest)
    if verb in ("tasks", "task", "todo"):
        if rest:
            return Command("help", problem="`tasks` takes nothing after it.")
        return Command("tasks")
    if verb in ("pause", "resume"):
        if not rest:
            return Command("help", problem=f"`{verb}` needs a campaign name: `/cadence {verb} <campaign>`.")
        return Command(verb, rest)
    if verb == "web":
        if rest:
            return Command("help", problem="`web` takes nothing after it.")
        return Command("web")
    if verb == "digest":
        if rest:
            return Command("help", problem="`digest` takes nothing after it.")
        return Command("digest")
    return Command("help", problem=f"I don't know \u201c{words[0][:40]}\u201d.")
