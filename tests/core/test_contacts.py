"""Contacts CSV → rows and line-numbered rejections (core/contacts.py): bytes in, decisions out."""
from __future__ import annotations

import pytest

from core.contacts import ContactsFileError, Rejection, normalize_email, parse_contacts


def parse(text: str, *, bom: bool = False):
    return parse_contacts(text.encode("utf-8-sig" if bom else "utf-8"), source="people.csv")


@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("separator", [",", ";"])
def test_a_row_is_read_with_known_and_custom_columns(separator, bom):
    header = separator.join(["Email", " First_Name ", "company", "timezone", "country", "owner", "plan"])
    row = separator.join([" Ada@Example.COM ", "Ada", "Analytical", "Europe/London", "gb", "Rita@Acme.Example", "gold"])
    parsed = parse(f"{header}\n{row}\n", bom=bom)
    assert parsed.rejections == []
    [contact] = parsed.rows
    assert (contact.line, contact.email) == (2, "ada@example.com")
    assert contact.fields == {"first_name": "Ada", "last_name": None, "company": "Analytical", "title": None,
                              "timezone": "Europe/London", "country": "GB", "owner": "rita@acme.example"}
    assert contact.custom == {"plan": "gold"}


@pytest.mark.parametrize(("row", "field", "words"), [
    ("not-an-address,Ada,,", "email", "'not-an-address' is not a valid address"),
    (",Ada,,", "email", "is not a valid address"),
    ("ada@example.com,Ada,Mars/Base,", "timezone", "'Mars/Base' is not an IANA time zone"),
    ("ada@example.com,Ada,,XX", "country", "'XX' is not an ISO 3166 country code"),
    ("ada@example.com,Ada,,FRA", "country", "'FRA' is not an ISO 3166 country code"),
    ('ada@example.com,"Ada\nLovelace",,', "first_name", "names may end up in headers"),
    ("ada@example.com,Ada,,,extra", "row", "5 values for 4 columns"),
])
def test_a_bad_row_is_refused_with_its_line_and_field_and_the_others_are_kept(row, field, words):
    parsed = parse(f"email,first_name,timezone,country\nfirst@example.com,First,,\n{row}\nlast@example.com,Last,,\n")
    assert [r.email for r in parsed.rows] == ["first@example.com", "last@example.com"]
    [rejection] = parsed.rejections
    assert (rejection.line, rejection.field) == (3, field)
    assert words in rejection.message
    assert str(rejection) == f"line 3: {field}: {rejection.message}"


def test_an_owner_that_is_not_an_address_is_refused():
    parsed = parse("email,owner\nada@example.com,rita\n")
    assert parsed.rows == []
    assert parsed.rejections == [Rejection(2, "owner", "'rita' is not a valid rep address")]


def test_the_same_address_twice_keeps_the_first_and_names_its_line():
    parsed = parse("email,first_name\nada@example.com,Ada\nbob@example.com,Bob\nADA@example.com,Again\n")
    assert [(r.line, r.email, r.fields["first_name"]) for r in parsed.rows] == [
        (2, "ada@example.com", "Ada"), (3, "bob@example.com", "Bob")]
    assert parsed.rejections == [Rejection(4, "email", "ada@example.com already given on line 2")]


def test_blank_lines_are_skipped_and_a_quoted_value_over_two_lines_keeps_the_line_where_its_record_starts():
    parsed = parse('email,title\n\nada@example.com,"Head of\nResearch"\n,\nbob@example.com,CTO\n')
    # A line feed in a title is refused (titles may end up in headers); the line is where the record began.
    assert [r.email for r in parsed.rows] == ["bob@example.com"]
    assert [(r.line, r.field) for r in parsed.rejections] == [(3, "title")]
    assert parsed.rows[0].line == 6


def test_missing_trailing_values_are_empty():
    parsed = parse("email,first_name,company\nada@example.com\n")
    assert parsed.rejections == []
    assert parsed.rows[0].fields["first_name"] is None and parsed.rows[0].fields["company"] is None


@pytest.mark.parametrize(("data", "message"), [
    (b"", "people.csv: the file is empty; a header row with an email column is required"),
    (b"email\n\xff\xfe\n", "people.csv, line 2, column 1: byte 0xff is not UTF-8"),
    (b"name,company\nAda,Analytical\n", "people.csv, line 1: header: no email column (found: name, company)"),
    (b"email,Email\nada@example.com,x\n", "people.csv, line 1: header: column 'email' appears twice"),
])
def test_a_file_that_cannot_be_read_as_a_whole_is_refused_in_one_sentence(data, message):
    with pytest.raises(ContactsFileError) as refused:
        parse_contacts(data, source="people.csv")
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize(("given", "normalized"), [
    ("ada@example.com", "ada@example.com"),
    ("  Ada@EXAMPLE.org ", "ada@example.org"),
    ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
])
def test_normalize_email_lower_cases_and_trims(given, normalized):
    assert normalize_email(given) == normalized


@pytest.mark.parametrize("given", ["", "ada", "ada@", "@example.com", "ada@@example.com", "ada@example..com",
                                   "a b@example.com"])
def test_normalize_email_refuses_what_is_not_an_address(given):
    with pytest.raises(ValueError):
        normalize_email(given)
