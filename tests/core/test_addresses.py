"""Addresses as mail servers write them back, in the form contacts are stored in (core.addresses)."""
from __future__ import annotations

import pytest

from core.addresses import comparable_address, stored_address
from core.contacts import normalize_email


@pytest.mark.parametrize(("written", "stored"), [
    ("anna@xn--mnchen-3ya.example", "anna@münchen.example"),
    ("ANNA@XN--MNCHEN-3YA.EXAMPLE", "anna@münchen.example"),
    ("<anna@xn--mnchen-3ya.example>", "anna@münchen.example"),
    (" Anna@München.example ", "anna@münchen.example"),
    ("li@xn--r8jz45g.xn--zckzah", "li@例え.テスト"),
    ("plain@Prospect.Example", "plain@prospect.example"),
    ("broken@xn--zz.example", "broken@xn--zz.example"),  # no valid IDNA: only lower-cased
    ("no-at-sign", "no-at-sign"),
])
def test_a_written_address_compares_equal_to_the_stored_one(written, stored):
    assert comparable_address(written) == stored


@pytest.mark.parametrize("imported", ["anna@münchen.example", "anna@xn--mnchen-3ya.example", "Anna@MÜNCHEN.example"])
def test_what_import_stores_is_what_comparison_yields(imported):
    assert normalize_email(imported) == comparable_address("anna@xn--mnchen-3ya.example")


@pytest.mark.parametrize(("typed", "stored"), [
    ("f@xn--mnchen-3ya.example", "f@münchen.example"),
    ("F@XN--MNCHEN-3YA.EXAMPLE", "f@münchen.example"),
    (" f@MÜNCHEN.example ", "f@münchen.example"),
    ("g@ＭÜＮＣＨＥＮ.example", "g@münchen.example"),  # full-width letters, as a keyboard may give them
    ("Plain@Prospect.Example", "plain@prospect.example"),
    ("not an address", "not an address"),  # finds nothing, raises nothing
])
def test_a_typed_address_is_looked_up_in_its_stored_form(typed, stored):
    assert stored_address(typed) == stored
