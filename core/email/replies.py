"""Telling replies apart: reply prefixes of subjects in common languages, and the marks of an
automatic reply (RFC 3834 and what mail systems really send), kept as data in two tables.

`subject_key(subject)` is a subject without its reply prefixes ("Re:", "AW:", "Sv:", "回复：" …,
repeated, counted forms like "Re[2]:" too), casefolded and with whitespace collapsed: two
subjects with the same key belong to the same conversation. `automatic_reply(headers, subject)`
names why a message is an automatic reply, or answers None.
"""
from __future__ import annotations

import re
from typing import Mapping

__all__ = ["AUTO_REPLY_SUBJECTS", "REPLY_PREFIXES", "automatic_reply", "automatic_subject", "conversation_key",
           "subject_key"]

# Reply prefixes, by language (what mail clients put before the subject they answer).
REPLY_PREFIXES: dict[str, tuple[str, ...]] = {
    "en": ("Re", "RE"),
    "de": ("Aw", "AW", "Antw", "Antwort"),
    "nl": ("Antw", "Antwoord"),
    "sv/da/no": ("Sv", "SV", "Svar"),
    "fr": ("Réf", "Ref", "Rép", "Réponse"),
    "es/pt": ("RV", "Rta", "Res", "Resp", "RES"),
    "it": ("R", "Rif"),
    "pl": ("Odp", "ODP"),
    "fi": ("VS", "Vs", "Vast"),
    "cs/sk": ("Odpověď", "Odp"),
    "hu": ("Vá", "VÁ", "Válasz"),
    "tr": ("YNT", "Ynt", "Cevap"),
    "el": ("ΑΠ", "ΣΧΕΤ", "Απ"),
    "ru/uk": ("Ответ", "Отв", "Відповідь"),
    "he": ("תשובה",),
    "ar": ("رد",),
    "zh": ("回复", "答复", "回覆", "答覆"),
    "ja": ("返信", "Re"),
    "ko": ("회신", "답장"),
}

# Subject prefixes of automatic replies (out-of-office and autoresponders), by language.
AUTO_REPLY_SUBJECTS: dict[str, tuple[str, ...]] = {
    "en": ("Automatic reply", "Auto reply", "Auto-reply", "Autoreply", "Auto response", "Auto-response",
           "Autoresponse", "Automatic response", "Out of office", "Out of the office", "Out of Office AutoReply",
           "OOO", "Auto"),
    "de": ("Automatische Antwort", "Abwesenheitsnotiz", "Automatische Rückantwort", "Abwesend", "Abwesenheit"),
    "fr": ("Réponse automatique", "Absence du bureau", "Absent du bureau", "Absente du bureau", "Message d'absence"),
    "es": ("Respuesta automática", "Fuera de la oficina", "Respuesta automática de fuera de la oficina",
           "Fuera de oficina"),
    "it": ("Risposta automatica", "Fuori sede", "Fuori ufficio", "Risposta automatica di assenza"),
    "nl": ("Automatisch antwoord", "Automatische reactie", "Afwezig", "Niet aanwezig"),
    "pt": ("Resposta automática", "Resposta Automática", "Fora do escritório", "Ausência temporária", "Ausente"),
    "sv": ("Automatiskt svar", "Autosvar", "Frånvaro", "Frånvarande"),
    "pl": ("Automatyczna odpowiedź", "Odpowiedź automatyczna", "Poza biurem", "Nieobecność"),
    "ja": ("自動応答", "自動返信", "不在"),
    "ko": ("자동 회신", "자동 응답", "자동응답", "부재중"),
    "zh": ("自动回复", "自動回覆", "自动答复", "自動回復", "外出"),
}

_COLON = r"\s*[:：]"


def _alternatives(words) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


# "Re:", "RE :", "Re[2]:", "Re(3):", "回复：", also a leading "[External]" tag before or after them.
_REPLY_PREFIX = re.compile(
    r"^\s*(?:\[[^\]\n]{1,24}\]\s*)?(?:" + _alternatives(w for ws in REPLY_PREFIXES.values() for w in ws)
    + r")(?:\s*[\[(]\d{1,3}[\])])?" + _COLON + r"\s*", re.IGNORECASE)
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]\n]{1,24}\]\s*)?(" + _alternatives(w for ws in AUTO_REPLY_SUBJECTS.values() for w in ws)
    + r")(?:" + _COLON + r"|\s*$)", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def subject_key(subject: str | None) -> str:
    """`subject` without reply prefixes (any number, any listed language), casefolded, spaces
    collapsed. "Re: AW: Quick  question" and "quick question" have the same key."""
    text = subject or ""
    for _ in range(20):
        stripped = _REPLY_PREFIX.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    return _SPACES.sub(" ", text).strip().casefold()


def automatic_subject(subject: str | None) -> str | None:
    """The automatic-reply prefix `subject` starts with ("Automatische Antwort"), or None."""
    found = _AUTO_SUBJECT.match(subject or "")
    return found.group(1) if found else None


def _without_automatic(subject: str) -> str:
    found = _AUTO_SUBJECT.match(subject)
    return subject[found.end():] if found else subject


def conversation_key(subject: str | None) -> str:
    """Like `subject_key`, after an automatic-reply prefix too: an out-of-office answering
    "Quick question" has the key of "Quick question"."""
    return subject_key(_without_automatic(subject or ""))


def automatic_reply(headers: Mapping[str, str], subject: str | None) -> str | None:
    """Why a message (headers with lower-case names) is an automatic reply, or None.

    RFC 3834 `Auto-Submitted` with any value but `no`; `X-Autoreply`, `X-Autorespond`,
    `X-Autoresponder` (any value); `Precedence: auto_reply | bulk | junk`; a null `Return-Path`
    (`<>`, what RFC 3834 asks of responders); a subject starting with an automatic-reply prefix
    of AUTO_REPLY_SUBJECTS. `X-Auto-Response-Suppress` is a request to others, not a mark of its
    own message, so it does not count.
    """
    auto_submitted = headers.get("auto-submitted", "").split(";", 1)[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    for name, shown in (("x-autoreply", "X-Autoreply"), ("x-autorespond", "X-Autorespond"),
                        ("x-autoresponder", "X-Autoresponder")):
        if name in headers:
            return f"{shown} header"
    precedence = headers.get("precedence", "").strip().lower()
    if precedence in ("auto_reply", "bulk", "junk"):
        return f"Precedence: {precedence}"
    if headers.get("return-path", "").strip() == "<>":
        return "null Return-Path <>"
    prefix = automatic_subject(subject)
    if prefix:
        return f"subject starts with {prefix!r}"
    return None
