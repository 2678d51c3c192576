"""Header values: line breaks and control characters are refused, also inside RFC 2047 encoded-words."""
from __future__ import annotations

import base64

import pytest

from core.headers import HeaderInjection, InvalidAddress, check_address, check_display_name, check_header_value


def b_word(text: str, charset: str = "UTF-8", letter: str = "B") -> str:
    return f"=?{charset}?{letter}?{base64.b64encode(text.encode(charset)).decode()}?="


FORBIDDEN = {
    "carriage return": "\r",
    "line feed": "\n",
    "CRLF": "\r\n",
    "NUL": "\x00",
    "start of heading": "\x01",
    "vertical tab": "\x0b",
    "form feed": "\x0c",
    "escape": "\x1b",
    "unit separator": "\x1f",
    "delete": "\x7f",
    "next line U+0085": "\x85",
    "C1 control U+0090": "\x90",
    "line separator U+2028": "\u2028",
    "paragraph separator U+2029": "\u2029",
}


@pytest.mark.parametrize("char", FORBIDDEN.values(), ids=FORBIDDEN.keys())
def test_line_breaks_and_control_characters_are_refused(char):
    with pytest.raises(HeaderInjection) as caught:
        check_header_value("subject", f"Hello{char}Bcc: victim@example.com")
    assert caught.value.field == "subject"
    message = str(caught.value)
    assert message.startswith("subject is refused: it contains ")
    assert f"U+{ord(char[0]):04X}" in message
    assert "\n" not in message and message.endswith(".")


def test_tab_is_allowed():
    assert check_header_value("subject", "Agenda:\tTuesday") == "Agenda:\tTuesday"


ENCODED_INJECTIONS = {
    "Q line feed": "=?UTF-8?Q?=0A?=",
    "q lowercase hex": "=?utf-8?q?Hello=0d=0aBcc:_victim@example.com?=",
    "Q NUL": "=?UTF-8?Q?a=00b?=",
    "Q U+0085 in UTF-8": "=?utf-8?q?a=C2=85b?=",
    "Q U+0085 in Latin-1": "=?iso-8859-1?q?a=85b?=",
    "Q U+2028": "=?UTF-8?Q?a=E2=80=A8b?=",
    "B CRLF": b_word("Hi\r\nBcc: victim@example.com"),
    "b lowercase": b_word("Hi\nthere", charset="utf-8", letter="b"),
    "B U+2028": "=?utf-8?b?4oCo?=",
    "B U+2029": b_word("\u2029"),
    "B without padding": "=?UTF-8?B?" + base64.b64encode(b"x\n").decode().rstrip("=") + "?=",
    "B UTF-16": b_word("a\nb", charset="utf-16"),
    "unknown charset": "=?x-unknown?Q?=0A?=",
    "language suffix": "=?UTF-8*en?Q?=0D?=",
    "encoded-word inside an encoded-word": b_word("=?UTF-8?Q?=0A?="),
    "among normal text": "Re: Your order =?UTF-8?Q?caf=C3=A9?= and =?UTF-8?Q?=0A?= more",
}


@pytest.mark.parametrize("value", ENCODED_INJECTIONS.values(), ids=ENCODED_INJECTIONS.keys())
def test_encoded_words_that_decode_to_forbidden_characters_are_refused(value):
    with pytest.raises(HeaderInjection) as caught:
        check_header_value("subject", value)
    assert caught.value.field == "subject"
    assert "encoded-word" in str(caught.value)


GOOD_VALUES = [
    "Quick question, Ann",
    "Café Müller — 50% off!",
    "山田 太郎さんへ",
    "Zoë O'Brien, Jr. <not an address>",
    "Emoji 🚀 launch",
    "=?UTF-8?Q?Caf=C3=A9?=",
    b_word("Grüße aus Köln"),
    "Price = ?5 and a lone =? marker",
    "",
]


@pytest.mark.parametrize("value", GOOD_VALUES)
def test_ordinary_unicode_values_pass_unchanged(value):
    assert check_header_value("subject", value) == value


def test_non_text_is_refused():
    with pytest.raises(HeaderInjection):
        check_header_value("subject", b"bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["Ann Smith", "Zoë O'Brien", "Smith, John", "山田 太郎", '"Quoted" Name'])
def test_good_display_names_pass(name):
    assert check_display_name("from name", name) == name


@pytest.mark.parametrize("name", ["Ann\r\nBcc: victim@example.com", "Ann\u2028", "Ann\x85", "=?UTF-8?Q?Ann=0A?="])
def test_bad_display_names_are_refused(name):
    with pytest.raises(HeaderInjection) as caught:
        check_display_name("from name", name)
    assert str(caught.value).startswith("from name is refused: ")


def test_addresses_are_validated_and_normalized():
    assert check_address("to", "Ann.Smith@Example.COM") == "Ann.Smith@example.com"
    assert check_address("to", "zoë@bücher.example") == "zoë@bücher.example"


@pytest.mark.parametrize("address", ["not-an-address", "a@b@example.com", "Ann <ann@example.com>",
                                     "ann@", "ann@example..com", "ann smith@example.com"])
def test_invalid_addresses_are_refused_naming_the_field(address):
    with pytest.raises(InvalidAddress) as caught:
        check_address("to", address)
    assert isinstance(caught.value, HeaderInjection)
    message = str(caught.value)
    assert message.startswith("to is refused: ") and "not a valid email address" in message
    assert "\n" not in message and message.endswith(".") and ". " not in message


@pytest.mark.parametrize("address", ["ann@example.com\r\nBcc: victim@example.com", "ann@example.com\n",
                                     "ann\u2028@example.com", "=?UTF-8?Q?=0A?=@example.com"])
def test_addresses_with_line_breaks_are_refused(address):
    with pytest.raises(HeaderInjection) as caught:
        check_address("to", address)
    assert caught.value.field == "to"


def test_header_errors_survive_pickling():
    import pickle

    with pytest.raises(InvalidAddress) as caught:
        check_address("reply-to", "nope")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is InvalidAddress and copy.field == "reply-to" and str(copy) == str(caught.value)
