"""Every header we write is folded (RFC 5322 section 2.1.1: 78 characters a line where it can be
folded, never over 998) and still means the same when read back (issue 13 item 7)."""
from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from core.email.compose import build_message
from core.mailbox import OutgoingEmail, ThreadRef

LONG_URL = "https://t.example/u/" + "z" * 300
UNSUBSCRIBE = f"<mailto:unsubscribe@t.example?subject=stop>, <{LONG_URL}>"


def email(**changes) -> OutgoingEmail:
    values = dict(message_id="<m1@cadence.example>", from_address="rita@acme.example", from_name="Rita Acme",
                  to_address="anna@prospect.example", to_name="Anna", subject="Hello", html_body="<p>Hi</p>",
                  text_body="Hi", headers={"List-Unsubscribe": UNSUBSCRIBE,
                                           "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
    values.update(changes)
    return OutgoingEmail(**values)


SHAPES = [
    pytest.param({"to_name": "A" * 5000}, id="5000-letter-name"),
    pytest.param({"to_name": "Anna " + "b" * 190}, id="long-word-in-a-name"),
    pytest.param({"to_name": "Ünna Ärger " * 40}, id="long-non-ascii-name"),
    pytest.param({"to_name": 'Smith, "Ann" (Sales) ' * 10}, id="long-name-with-specials"),
    pytest.param({"to_name": 'Smith, Ann'}, id="short-name-with-a-comma"),
    pytest.param({"from_name": "R" * 300}, id="long-sender-name"),
    pytest.param({"subject": "Hello " + "y" * 1200}, id="long-word-in-a-subject"),
    pytest.param({"subject": "word " * 400}, id="many-words-in-a-subject"),
    pytest.param({"subject": "Grüße " * 200}, id="long-non-ascii-subject"),
    pytest.param({"reply_to": ThreadRef(message_id="<m0@cadence.example>",
                                        references=tuple(f"<m{i}-{'r' * 40}@cadence.example>" for i in range(1, 41)))},
                 id="many-references"),
    pytest.param({}, id="long-unsubscribe-url"),
    pytest.param({"to_name": "Jean-Baptiste Emmanuel Zorg, Directeur Général de l'Hôpital"}, id="non-ascii-with-a-comma"),
    pytest.param({"to_name": "Александра Константиновна Преображенская-Рождественская"}, id="cyrillic"),
    pytest.param({"to_name": "O'Brien-Fitzgerald, Mary-Catherine (Head of Procurement)"}, id="ascii-specials-two-lines"),
    pytest.param({"to_name": "=?utf-8?q?Your_Bank?=", "subject": "Re =?utf-8?q?Urgent?= now"},
                 id="literal-encoded-words-in-data"),
]


def header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


@pytest.mark.parametrize("changes", SHAPES)
def test_every_header_is_folded_and_reads_back_the_same(changes):
    outgoing = email(**changes)
    raw = build_message(outgoing).as_bytes(policy=policy.SMTP)
    lines = header_lines(raw)
    assert max(len(line) for line in lines) <= 998
    long_lines = [line for line in lines if len(line) > 78]
    assert all(line.strip().startswith(b"<") and line.strip().rstrip(b",").endswith(b">") for line in long_lines), \
        long_lines  # only a URI too long for a line stays longer, alone on its line
    read = message_from_bytes(raw, policy=policy.default)
    # Python's reader puts a space between adjacent encoded words (RFC 2047 section 6.2 says to
    # drop it), so names are compared without their spaces.
    for field, name, address in (("To", outgoing.to_name, outgoing.to_address),
                                 ("From", outgoing.from_name, outgoing.from_address)):
        [written] = read[field].addresses
        assert written.addr_spec == address
        assert "".join(written.display_name.split()) == "".join(name.split())
        if name.isascii() and max(len(w) for w in name.split()) <= 60:  # a quoted-string: read back exactly
            assert written.display_name == " ".join(name.split())
        long_words = [w for w in name.split() if len(w.encode()) > 40]
        # Encoded words end after the name's spaces: only a word longer than an encoded word is split.
        assert all(any(piece in w for w in long_words)
                   for piece in written.display_name.split() if piece not in name.split())
    assert " ".join(read["Subject"].split()) == " ".join(outgoing.subject.split())
    assert read["List-Unsubscribe"].replace(" ", "") == UNSUBSCRIBE.replace(" ", "")
    assert read["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    if outgoing.references:
        assert read["References"].split() == list(outgoing.references)
