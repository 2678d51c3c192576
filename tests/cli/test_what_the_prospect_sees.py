"""What the prospect sees, read back as .eml files from the Maildir's Sent folder after a campaign
walked through the CLI (issue 13 items 1, 2, 3, 6 and 7)."""
from __future__ import annotations

import re

import httpx

from cadence.app import App
from tests.support.http import CLICK, html_of, serving
from tests.support.maildir import by_recipient, read_folder

REP = "rita@acme.example"
LONG_NAME = "W" * 190  # one word: no space to fold the To line at
CAMPAIGN = """\
name: Seen
timezone: UTC
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Quote for {{ company }}"
    body: |
      Hi {{ first_name }},
      At {{ company }}{% if title %} as {{ title }}{% endif %}
      and more.
      A https://quote.example/it's-here?z=1
      Our office: https://büro.example/café
  - day: 2
    action: auto
    send: same_as_previous
    thread: true
    body: "<p>Second note, {{ first_name }}.</p>"
  - day: 3
    action: auto
    send: same_as_previous
    thread: true
    body: "<p>Last one, {{ first_name }}.</p>"
"""
CONTACTS = f"""\
email,first_name,company,title
anna@münchen.example,Anna,Acme,CTO
wide@prospect.example,{LONG_NAME},WideCo,
"""


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text)


def test_the_emails_read_as_mail_clients_expect(sqlite_cli):
    cli = sqlite_cli
    maildir = cli.maildir_campaign(CAMPAIGN, contacts=CONTACTS)
    cli.launch("Seen", now="2026-11-30T07:00:00Z")
    for day in ("2026-11-30", "2026-12-01", "2026-12-02"):
        cli.ok("worker", "--once", "--now", f"{day}T09:00:00Z")

    raw = {path.name: path.read_bytes() for folder in ("cur", "new") for path in (maildir / ".Sent" / folder).iterdir()}
    assert len(raw) == 6
    for data in raw.values():  # item 7: every header line folded, never over 998, To within 78
        header = data.split(b"\n\n", 1)[0].split(b"\n")
        assert max(len(line) for line in header) <= 998
        to_lines = [line for line in header if line.startswith(b"To:")]
        assert all(len(line) <= 78 for line in to_lines) and b"@=?" not in data  # item 3: no encoded domain

    sent = by_recipient(read_folder(maildir, ".Sent"))
    assert set(sent) == {"anna@xn--mnchen-3ya.example", "wide@prospect.example"}  # item 3: IDNA in To
    first, second, third = sorted(sent["anna@xn--mnchen-3ya.example"], key=lambda m: m["Date"].datetime)
    assert "".join(sent["wide@prospect.example"][0]["To"].addresses[0].display_name.split()) == LONG_NAME

    text = first.get_body(("plain",)).get_content()
    html = html_of(first)
    assert "as CTO\nand more." in text  # item 1: the line break after {% endif %} is kept
    assert "CTOand" not in text and "CTOand" not in html
    plain_words = words(text.split("Not interested?")[0])
    html_words = words(re.sub(r"<[^>]+>", " ", html.split("Not interested?")[0]))
    assert plain_words[:12] == html_words[:12]  # item 1: both parts say the same words

    # item 2 and 3: the whole URL is linked, and its tracked redirect goes there (IDNA host).
    app = App.from_settings()
    clicks = CLICK.findall(html)
    assert len(clicks) == 2
    with serving(app) as base:
        targets = [httpx.get(base + path, follow_redirects=False).headers["location"] for path in clicks]
    assert targets == ["https://quote.example/it's-here?z=1", "https://xn--bro-hoa.example/caf%C3%A9"]

    # item 6: the last email quotes the second with the second's own quote of the first.
    last = third.get_body(("plain",)).get_content()
    assert last.index("Last one, Anna.") < last.index("> Second note, Anna.") < last.index("> > Hi Anna,")
    assert html_of(third).count("<blockquote") == 2
    assert third["Subject"] == "Re: Quote for Acme" and third["In-Reply-To"] == second["Message-ID"]
