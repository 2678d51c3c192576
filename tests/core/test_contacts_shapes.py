"""Contacts CSV shapes from the real world (issue 13): legacy zone names, regional countries,
Excel's cp1252, SMTPUTF8 local parts, IDN domains, absurd names. Pure: bytes in, decisions out."""
from __future__ import annotations

import pytest

from core.contacts import MAX_NAME_LENGTH, ContactsFileError, parse_contacts


def parse(text: str, **options):
    return parse_contacts(text.encode(options.pop("as_", "utf-8")), source="people.csv", **options)


@pytest.mark.parametrize("given, stored", [
    ("US/Eastern", "America/New_York"),
    ("US/Pacific", "America/Los_Angeles"),
    ("Asia/Calcutta", "Asia/Kolkata"),
    ("Europe/Kiev", "Europe/Kyiv"),
    ("America/Buenos_Aires", "America/Argentina/Buenos_Aires"),
    ("Japan", "Asia/Tokyo"),
    ("Europe/Oslo", "Europe/Oslo"),  # a canonical name stays, even where its rules are shared
    ("America/New_York", "America/New_York"),
    ("UTC", "UTC"),
])
def test_legacy_zone_names_are_accepted_and_stored_canonical(given, stored):
    parsed = parse(f"email,timezone\nanna@example.com,{given}\n")
    assert not parsed.rejections
    assert parsed.rows[0].fields["timezone"] == stored


@pytest.mark.parametrize("given", ["Mars/Base", "Eastern", "US/Eastern/x", "../etc/passwd"])
def test_unknown_zone_names_are_refused_by_line(given):
    parsed = parse(f"email,timezone\nanna@example.com,{given}\n")
    assert not parsed.rows
    assert str(parsed.rejections[0]).startswith("line 2: timezone:") and "IANA" in str(parsed.rejections[0])


@pytest.mark.parametrize("given, stored", [
    ("de", "DE"), ("DE-BY", "DE-BY"), ("us-ca", "US-CA"), ("ES-CT", "ES-CT"), ("FR", "FR"),
])
def test_countries_take_iso_3166_1_and_2(given, stored):
    parsed = parse(f"email,country\nanna@example.com,{given}\n")
    assert not parsed.rejections and parsed.rows[0].fields["country"] == stored


@pytest.mark.parametrize("given", ["Germany", "DE-XX", "XX", "D", "DE-"])
def test_unknown_countries_and_subdivisions_are_refused(given):
    parsed = parse(f"email,country\nanna@example.com,{given}\n")
    assert not parsed.rows and parsed.rejections[0].field == "country"


def test_a_cp1252_file_names_line_and_column_and_says_how_to_fix():
    data = "email,first_name\nanna@example.com,Anna\nrene@example.com,René\n".encode("cp1252")
    with pytest.raises(ContactsFileError) as refused:
        parse_contacts(data, source="people.csv")
    message = str(refused.value)
    assert message.startswith("people.csv, line 3, column 21: byte 0xe9 is not UTF-8")
    assert "CSV UTF-8" in message and "--encoding cp1252" in message


def test_the_encoding_can_be_given():
    data = "email,first_name\nrene@example.com,René\n".encode("cp1252")
    parsed = parse_contacts(data, source="people.csv", encoding="cp1252")
    assert parsed.rows[0].fields["first_name"] == "René"
    with pytest.raises(ContactsFileError, match="--encoding: 'klingon' is not a known text encoding"):
        parse_contacts(data, source="people.csv", encoding="klingon")


@pytest.mark.parametrize("address", ["josé@example.com", "名前@example.jp", "müller@example.de"])
def test_non_ascii_local_parts_are_refused_at_import(address):
    parsed = parse(f"email\n{address}\n")
    assert not parsed.rows
    assert parsed.rejections[0].field == "email" and "non-ASCII characters before the @" in parsed.rejections[0].message


@pytest.mark.parametrize("address, stored", [
    ("anna@münchen.example", "anna@münchen.example"),
    ("Anna@MÜNCHEN.example", "anna@münchen.example"),
    ("bo@xn--mnchen-3ya.example", "bo@münchen.example"),
])
def test_idn_domains_are_accepted(address, stored):
    parsed = parse(f"email\n{address}\n")
    assert not parsed.rejections and parsed.rows[0].email == stored


@pytest.mark.parametrize("column", ["first_name", "last_name", "company", "title"])
def test_absurd_name_lengths_are_refused(column):
    parsed = parse(f"email,{column}\nanna@example.com,{'x' * (MAX_NAME_LENGTH + 1)}\nbo@example.com,{'x' * MAX_NAME_LENGTH}\n")
    assert [r.email for r in parsed.rows] == ["bo@example.com"]
    assert parsed.rejections[0].line == 2 and parsed.rejections[0].field == column


def test_a_tab_separated_file_is_named_as_such():
    with pytest.raises(ContactsFileError, match="tab-separated"):
        parse("email\tfirst_name\nanna@example.com\tAnna\n")


@pytest.mark.parametrize("address, valid", [
    ("anna@example.com", True), ("anna@münchen.example", True), ("josé@example.com", False),
    ("名前@example.jp", False), ("a b@example.com", False),
])
def test_preparation_excludes_addresses_stored_before_import_refused_them(address, valid):
    from core.preparation import AddressCheck

    assert AddressCheck()(address) is valid
