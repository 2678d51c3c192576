"""Reply prefixes and automatic-reply marks (core.email.replies): a test per language, from the tables."""
from __future__ import annotations

import pytest

from core.email.replies import AUTO_REPLY_SUBJECTS, REPLY_PREFIXES, automatic_reply, automatic_subject, subject_key

LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pt", "sv", "pl", "ja", "ko", "zh"]
# What an out-of-office really puts in the subject, per language (Exchange, Gmail, Zimbra …).
SEEN = {
    "en": "Automatic reply: Quick question", "de": "Automatische Antwort: Quick question",
    "fr": "Réponse automatique : Quick question", "es": "Respuesta automática: Quick question",
    "it": "Risposta automatica: Quick question", "nl": "Automatisch antwoord: Quick question",
    "pt": "Resposta automática: Quick question", "sv": "Automatiskt svar: Quick question",
    "pl": "Automatyczna odpowiedź: Quick question", "ja": "自動応答: Quick question",
    "ko": "자동 회신: Quick question", "zh": "自动回复：Quick question",
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_has_automatic_reply_subjects_and_each_is_recognised(language):
    assert AUTO_REPLY_SUBJECTS[language]
    for prefix in AUTO_REPLY_SUBJECTS[language]:
        assert automatic_subject(f"{prefix}: Quick question") is not None, prefix
        assert automatic_subject(f"{prefix.upper()}：Quick question") is not None, prefix
    assert automatic_reply({}, SEEN[language]) is not None
    assert automatic_reply({}, f"Re: {SEEN[language]}") is None  # a person quoting it is no autoresponder


@pytest.mark.parametrize("subject", ["Quick question", "Re: Automatic reply rules", "Autonomous trucks",
                                     "Out of stock: what now?", "Abwesenheit von Herrn Meier", "不在场证明"])
def test_human_subjects_are_not_automatic(subject):
    assert automatic_subject(subject) is None


@pytest.mark.parametrize("headers, automatic", [
    ({"auto-submitted": "auto-replied"}, True), ({"auto-submitted": "auto-generated"}, True),
    ({"auto-submitted": "auto-replied (zimbra; vacation)"}, True), ({"auto-submitted": "No"}, False),
    ({"auto-submitted": "no; comment"}, False), ({"x-autoreply": "yes"}, True), ({"x-autorespond": "x"}, True),
    ({"x-autoresponder": "1"}, True), ({"precedence": "auto_reply"}, True), ({"precedence": "bulk"}, True),
    ({"precedence": "junk"}, True), ({"precedence": "list"}, False), ({"return-path": "<>"}, True),
    ({"return-path": "<ada@prospect.example>"}, False), ({"x-auto-response-suppress": "All"}, False),
    ({"x-auto-response-suppress": "DR, RN, NRN, OOF, AutoReply"}, False),
])
def test_automatic_reply_headers(headers, automatic):
    assert (automatic_reply(headers, "Re: Quick question") is not None) is automatic


@pytest.mark.parametrize("language", REPLY_PREFIXES)
def test_reply_prefixes_of_every_language_are_stripped(language):
    for prefix in REPLY_PREFIXES[language]:
        assert subject_key(f"{prefix}: Quick  Question") == "quick question", prefix
        assert subject_key(f"{prefix}： {prefix}: Quick question") == "quick question", prefix


@pytest.mark.parametrize("subject", ["RE: AW: Sv: Quick question", "Re[2]: Quick question", "RE (3): Quick question",
                                     "Réf : Quick question", "[EXTERNAL] Re: Quick question", "回复：Quick question",
                                     "Ответ: Quick question", "Odp: Quick question", "RV: Quick question",
                                     "R: Quick question", "Antw: Quick question", "  re:quick question  "])
def test_real_reply_subjects_have_the_key_of_the_original(subject):
    assert subject_key(subject) == subject_key("Quick question") == "quick question"


def test_words_that_start_like_a_prefix_are_kept():
    assert subject_key("Rebate offer") == "rebate offer"
    assert subject_key("Research: results") == "research: results"
