"""`/` uploads, the dashboard's launch form, "Why is this message here" and the per-day chart, over
real HTTP against `cadence serve`'s app: the CLI's importers and use cases behind each."""
from __future__ import annotations

import re

from sqlalchemy import func, select

from cadence.services.directory import add_rep
from cadence.services.reads.status import campaign_status
from store.models import Campaign, Contact, Enrollment
from tests.support.web import MANAGER, OTHER, REP, campaign_id, seed

ADMIN = "ana@acme.example"
GOOD = """\
name: Spring launch
timezone: UTC
steps:
  - day: 1
    action: auto
    send: choose_at_launch
    subject: "Hi {{ first_name }}"
    body: "<p>Hello {{ first_name }}.</p>"
"""


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def upload(client, path: str, field: str, name: str, data: bytes, **extra):
    token = csrf_of(client.get("/").text)
    return client.post(path, data={"csrf": token, **extra}, files={field: (name, data, "application/octet-stream")})


def count(site, model) -> int:
    with site.app.db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def alert_of(html: str) -> str:
    block = re.search(r'role="alert"[^>]*>(.*?)</div>', html, re.S) or re.search(r'role="alert"[^>]*>(.*?)</p>',
                                                                                  html, re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", block.group(1))).strip()


def test_an_admin_uploads_a_campaign_and_a_bad_one_gets_the_clis_sentence(site):
    seed(site)
    add_rep(site.app, email=ADMIN, name="Ana Admin", role="admin")
    ana = site.client(ADMIN)
    bad = GOOD.replace("    subject:", "    subjet:")
    refused = upload(ana, "/upload/campaign", "campaign", "spring.yml", bad.encode())
    assert refused.status_code == 400
    sentence = alert_of(refused.text)
    assert sentence.startswith("spring.yml") and "line 7" in sentence and "subjet" in sentence, sentence
    assert count(site, Campaign) == 1  # nothing written
    done = upload(ana, "/upload/campaign", "campaign", "spring.yml", GOOD.encode())
    assert done.status_code == 303 and done.headers["location"] == "/?campaign=created"
    assert "Spring launch" in ana.get("/").text
    assert campaign_status(site.app, "Spring launch")["state"] == "draft"


def test_a_rep_may_not_add_a_campaign_nor_replace_another_teams(site):
    seed(site)
    rob = site.client(OTHER)
    refused = upload(rob, "/upload/campaign", "campaign", "spring.yml", GOOD.encode())
    assert refused.status_code == 400 and "only an admin may add a new one" in alert_of(refused.text)
    theirs = GOOD.replace("Spring launch", "Q4 outbound")
    refused = upload(rob, "/upload/campaign", "campaign", "q4.yml", theirs.encode())
    assert refused.status_code == 400 and "is not yours to change" in alert_of(refused.text)
    assert count(site, Campaign) == 1
    assert campaign_status(site.app, "Q4 outbound")["steps"][0]["position"] == 1


def test_an_uploaded_body_file_or_a_file_over_the_limit_is_refused(site):
    seed(site)
    add_rep(site.app, email=ADMIN, name="Ana Admin", role="admin")
    ana = site.client(ADMIN)
    with_file = GOOD.replace('    body: "<p>Hello {{ first_name }}.</p>"', "    body_file: /etc/passwd")
    refused = upload(ana, "/upload/campaign", "campaign", "spring.yml", with_file.encode())
    assert refused.status_code == 400 and "body_file" in alert_of(refused.text)
    big = upload(ana, "/upload/contacts", "contacts", "big.csv", b"email\n" + b"x" * 1_000_001)
    assert big.status_code in (400, 413)
    assert count(site, Campaign) == 1


def test_a_contacts_upload_with_a_bad_row_writes_nothing_and_names_file_line_and_field(site):
    seed(site)
    rita = site.client(REP)
    before = count(site, Contact)
    csv = b"email,first_name,company\nnew1@prospect.example,New,Acme\nnot-an-address,Bad,Acme\n"
    refused = upload(rita, "/upload/contacts", "contacts", "leads.csv", csv)
    assert refused.status_code == 400
    text = alert_of(refused.text)
    assert "leads.csv, line 3: email:" in text and "nothing was written" in text, text
    assert count(site, Contact) == before
    others = upload(rita, "/upload/contacts", "contacts", "leads.csv",
                    f"email,owner\nnew1@prospect.example,{OTHER}\n".encode())
    assert others.status_code == 400 and "line 2: owner:" in alert_of(others.text)
    done = upload(rita, "/upload/contacts", "contacts", "leads.csv", csv.replace(b"not-an-address", b"new2@x.example"))
    assert done.status_code == 303 and done.headers["location"].startswith("/?imported=2")
    assert count(site, Contact) == before + 2
    assert "imported 2" in rita.get(done.headers["location"]).text


def test_the_launch_form_enrolls_by_company_through_enroll_and_refuses_a_foreign_mailbox(site):
    seed(site)
    cid = campaign_id(site)
    rita = site.client(REP)
    upload(rita, "/upload/contacts", "contacts", "more.csv",
           b"email,company\nd1@acme-corp.example,Acme Corp\nd2@acme-corp.example,acme corp\ne@else.example,Else\n")
    page = rita.get(f"/campaigns/{cid}")
    assert 'id="launch-mailbox"' in page.text and OTHER not in re.search(
        r'<select id="launch-mailbox".*?</select>', page.text, re.S).group(0)
    token = csrf_of(page.text)
    foreign = rita.post(f"/campaigns/{cid}/enroll", data={"csrf": token, "who": "filter", "company": "Acme Corp",
                                                          "mailbox": OTHER})
    assert foreign.status_code == 400 and "Mailbox" in alert_of(foreign.text)
    done = rita.post(f"/campaigns/{cid}/enroll", data={"csrf": token, "who": "filter", "company": "Acme Corp",
                                                       "mailbox": REP})
    assert done.status_code == 303 and "enrolled=2" in done.headers["location"]
    with site.app.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Enrollment)) == 5
    again = rita.post(f"/campaigns/{cid}/enroll", data={"csrf": token, "who": "all", "mailbox": REP})
    assert again.status_code == 303 and "enrolled=1&already=5" in again.headers["location"]
    no_token = rita.post(f"/campaigns/{cid}/enroll", data={"who": "all", "mailbox": REP})
    assert no_token.status_code == 403
    rob = site.client(OTHER)
    assert rob.post(f"/campaigns/{cid}/enroll", data={"csrf": csrf_of(rob.get("/").text), "who": "all",
                                                       "mailbox": OTHER}).status_code == 404


def test_a_choose_at_launch_campaign_needs_the_send_time_and_a_bad_csv_enrolls_no_one(site):
    seed(site)
    add_rep(site.app, email=ADMIN, name="Ana Admin", role="admin")
    ana = site.client(ADMIN)
    upload(ana, "/upload/campaign", "campaign", "spring.yml", GOOD.encode())
    cid = campaign_id(site, "Spring launch")
    page = ana.get(f"/campaigns/{cid}")
    assert 'id="launch-date"' in page.text and 'id="launch-time"' in page.text
    token = csrf_of(page.text)
    missing = ana.post(f"/campaigns/{cid}/enroll", data={"csrf": token, "who": "all", "mailbox": REP})
    assert missing.status_code == 400 and "Send time" in alert_of(missing.text)
    before = count(site, Contact)
    bad = ana.post(f"/campaigns/{cid}/enroll", data={"csrf": token, "who": "csv", "mailbox": REP,
                                                     "send_date": "2099-01-05", "send_time": "09:30"},
                   files={"contacts": ("people.csv", b"email\nz1@new.example\nbroken\n", "text/csv")})
    assert bad.status_code == 400 and "people.csv, line 3: email:" in alert_of(bad.text)
    assert count(site, Contact) == before
    done = ana.post(f"/campaigns/{cid}/enroll", data={"csrf": token, "who": "csv", "mailbox": REP,
                                                      "send_date": "2099-01-05", "send_time": "09:30"},
                    files={"contacts": ("people.csv", b"email\nz1@new.example\nada@prospect.example\n", "text/csv")})
    assert done.status_code == 303 and "enrolled=2" in done.headers["location"]
    with site.app.db.session() as session:
        chosen = set(session.scalars(select(Enrollment.send_at_local).where(Enrollment.campaign_id == cid)))
    assert chosen == {"2099-01-05 09:30"}


def test_why_is_this_message_here_from_the_dashboard_the_logs_and_a_task(site):
    from cadence.services.preparing import prepare

    seed(site)
    cid = campaign_id(site)
    prepare(site.app, "Q4 outbound")
    rita = site.client(REP)
    logs = rita.get(f"/campaigns/{cid}/logs").text
    assert f'/campaigns/{cid}/explain?contact=cy%40competitor.example' in logs
    why = rita.get(f"/campaigns/{cid}/explain", params={"contact": "cy@competitor.example"})
    assert why.status_code == 200 and "Why is this message here?" in why.text
    assert "competitor.example" in why.text and 'data-step="1"' in why.text
    nobody = rita.get(f"/campaigns/{cid}/explain", params={"contact": "zed@nowhere.example"})
    assert nobody.status_code == 404 and "not enrolled" in alert_of(nobody.text)
    assert site.client(OTHER).get(f"/campaigns/{cid}/explain",
                                  params={"contact": "ada@prospect.example"}).status_code == 404
    assert f'action="/campaigns/{cid}/explain"' in rita.get(f"/campaigns/{cid}").text


def test_a_task_links_to_its_explanation(site):
    from tests.support.web import tasks_ready

    tasks_ready(site)
    rita = site.client(REP)
    listing = rita.get("/tasks").text
    tid = re.search(r'href="/tasks/(\d+)"', listing).group(1)
    assert f'href="/tasks/{tid}/explain"' in rita.get(f"/tasks/{tid}").text
    why = rita.get(f"/tasks/{tid}/explain")
    assert why.status_code == 200 and 'data-step="1"' in why.text and "Q4 outbound" in why.text
    assert site.client(OTHER).get(f"/tasks/{tid}/explain").status_code == 404
    assert site.client(MANAGER).get(f"/tasks/{tid}/explain").status_code == 200


def test_the_dashboard_charts_sends_opens_clicks_and_replies_per_day(site):
    from cadence.services.campaigns import send_campaign
    from cadence.services.preparing import prepare
    from cadence.worker.passes import run_pass

    seed(site)
    cid = campaign_id(site)
    rita = site.client(REP)
    assert "Nothing sent yet" in rita.get(f"/campaigns/{cid}").text
    prepare(site.app, "Q4 outbound")
    send_campaign(site.app, "Q4 outbound")
    run_pass(site.app)
    html = rita.get(f"/campaigns/{cid}").text
    sent = [int(v) for v in re.findall(r'data-series="sent" data-value="(\d+)"', html)]
    assert sum(sent) == campaign_status(site.app, "Q4 outbound")["delivery"]["sent"] == 2
    assert "<svg" in html and "<script" not in html.split("</head>")[1]
