"""Benchmark of `cadence prepare` (not a test): recipients/s against a floor, and memory growth.

    python -m bench.prepare               # 100k contacts x 3 steps; RSS growth from 10k to 100k
    python -m bench.prepare --million     # and the RSS growth from 10k to 1M (about 7 more minutes)
    python -m bench.prepare --contacts N  # another size for the speed run

The *floor* is measured in the same run on an identical copy of the database: a compile-once
Jinja2 render of the same templates (plain environment, no sandbox) and a SQLAlchemy Core
executemany of the same message rows, in batches of the same size, without any rule. Each
measurement runs in a child process of its own, so its peak RSS is its own; both start after
`cadence.heap.settle()`, as the `cadence prepare` command does.
Targets: prepare/floor ratio >= 0.9; RSS growth <= 64 MB from 10k to 1M contacts.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

RATIO_TARGET = 0.9
GROWTH_TARGET_MB = 64
REP = "rita@acme.example"
CAMPAIGN = "Bench"
CAMPAIGN_YAML = """\
name: Bench
timezone: America/New_York
send_window: {days: [mon, tue, wed, thu, fri], start: "08:00", end: "18:00"}
track: {opens: true, clicks: true}
exclusions:
  do_not_contact_domains: [blocked.example]
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:30"
    subject: "Quick question, {{ first_name | default('there') }}"
    body: |
      <p>Hi {{ first_name | default('there') }},</p>
      <p>Teams like {{ company | default('yours') }} use Cadence to run their outbound without
      losing the personal touch. Would a 15-minute call next week be useful?</p>
      <p>Here is a two-minute overview: <a href="https://cadence.example/overview">the overview</a>,
      and the <a href="https://cadence.example/pricing?ref={{ company | default('x') | urlencode }}">pricing</a>.</p>
      <p>{{ sender_name }}</p>
  - day: 3
    action: task
    send: at_time
    time: "10:00"
    subject: "Idea for {{ company }}"
    body: |
      <p>Hi {{ first_name | default('there') }},</p>
      <p>I was looking at {{ company }}{% if title is defined %} and your work as {{ title }}{% endif %}
      and had one idea: {{ pain_point | default('shorter follow-up cycles') }}.</p>
      <p>Worth a chat?</p>
      <p>{{ sender_name }}</p>
  - day: 5
    action: auto
    send: same_as_previous
    thread: true
    body: |
      Hi {{ first_name | default('there') }}, just bumping this up in case it got buried.

      {{ sender_name }}
"""
ZONES = ("America/New_York", "Europe/London", "Asia/Tokyo", "Europe/Paris")
COUNTRIES = ("US", "GB", "JP", "FR")


# -- the dataset -----------------------------------------------------------------------------------

def _environment(home: Path) -> None:
    os.environ["CADENCE_HOME"] = str(home)
    os.environ["CADENCE_DATABASE_URL"] = f"sqlite:///{home / 'cadence.db'}"
    os.environ["CADENCE_PUBLIC_URL"] = "https://cadence.bench"
    os.environ["CADENCE_SECRET_KEY"] = "bench-secret-key-bench-secret-key-bench-sec="


def bench_app(home: Path):
    _environment(home)
    from cadence.app import App
    from core.clock import FixedClock

    return App.from_settings(clock=FixedClock(datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)))


def contact_row(i: int, now: datetime) -> dict:
    """Contact number i: about 4 % of them fall under an exclusion rule, deterministically."""
    domain = "blocked.example" if i % 250 == 3 else f"prospect{i % 97}.example"
    return {
        "email": f"person{i}@{domain}", "first_name": f"Name{i}", "last_name": "Example",
        "company": None if i % 100 == 42 else f"Company {i % 5000}", "title": "VP Sales" if i % 3 == 0 else None,
        "timezone": ZONES[i % 4], "country": COUNTRIES[i % 4], "owner_id": None,
        "custom": {"pain_point": "long sales cycles"} if i % 2 else {},
        "opted_out_at": now if i % 100 == 7 else None, "bounced_at": now if i % 200 == 13 else None,
        "created_at": now, "updated_at": now,
    }


def build_dataset(home: Path, contacts: int) -> None:
    """A campaign with `contacts` enrolled contacts, one maildir mailbox, ready to prepare."""
    from sqlalchemy import insert, select

    from cadence.services.directory import add_mailbox, add_rep
    from cadence.services.imports import import_campaign
    from store.models import Campaign, Contact, Enrollment

    home.mkdir(parents=True, exist_ok=True)
    app = bench_app(home)
    now = app.clock.now()
    add_rep(app, email=REP, name="Rita Rep")
    box = add_mailbox(app, provider="maildir", address=REP, owner=REP, path=str(home / "maildir"))
    (home / "bench.yml").write_text(CAMPAIGN_YAML, encoding="utf-8")
    import_campaign(app, home / "bench.yml")
    with app.db.session() as session:
        campaign_id = session.scalar(select(Campaign.id).where(Campaign.name == CAMPAIGN))
    chunk = 20_000
    for start in range(0, contacts, chunk):
        stop = min(start + chunk, contacts)
        with app.db.session() as session:
            first_id = (session.scalar(select(Contact.id).order_by(Contact.id.desc()).limit(1)) or 0) + 1
            session.execute(insert(Contact.__table__), [contact_row(i, now) for i in range(start, stop)])
            session.execute(insert(Enrollment.__table__), [
                {"campaign_id": campaign_id, "contact_id": first_id + n, "mailbox_id": box.id, "state": "active",
                 "zone": ZONES[(start + n) % 4], "send_at_local": None, "enrolled_at": now}
                for n in range(stop - start)])
    with app.db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        campaign.audience_version += 1
    app.db.engine.dispose()
    app.db.writer_engine.dispose()


# -- the two measured runs (each in its own process) -----------------------------------------------

def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_prepare(home: Path) -> dict:
    """`prepare` as the `cadence prepare` command runs it: after `cadence.heap.settle()`."""
    app = bench_app(home)
    from cadence.heap import settle
    from cadence.services.preparing import prepare

    settle()
    rss_before = _peak_rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    result = prepare(app, CAMPAIGN)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"seconds": seconds, "cpu_seconds": cpu, "targeted": result.targeted, "to_deliver": result.to_deliver,
            "to_exclude": result.to_exclude, "messages": result.messages, "errors": result.errors,
            "exclusions": dict(result.exclusions), "rss_before_mb": rss_before, "peak_rss_mb": _peak_rss_mb()}


def run_floor(home: Path, batch: int) -> dict:
    """Compile-once Jinja2 render + Core executemany of the same rows, no rules; settled as prepare is."""
    import jinja2
    from sqlalchemy import insert, select

    from cadence.heap import settle
    from core.email.message_id import new_message_id
    from store.campaigns import read_spec
    from store.models import Campaign, Contact, Enrollment, MailboxRow, Message, Rep

    app = bench_app(home)
    settle()
    rss_before = _peak_rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    html_env = jinja2.Environment(autoescape=True)
    text_env = jinja2.Environment(autoescape=False)
    with app.db.session() as session:
        campaign = session.scalar(select(Campaign).where(Campaign.name == CAMPAIGN))
        spec = read_spec(session, campaign)
        box, rep = session.execute(select(MailboxRow, Rep).join(Rep, Rep.id == MailboxRow.owner_id)).one()
        campaign_id, box_id, box_address, rep_name = campaign.id, box.id, box.address, rep.name
    templates = [(step, text_env.from_string(step.subject or "Re: previous"),
                  (html_env if "<p>" in step.body else text_env).from_string(step.body)) for step in spec.steps]
    table = Message.__table__
    now = app.clock.now()
    domain = box_address.rsplit("@", 1)[-1]
    last, rows_written = 0, 0
    while True:
        with app.db.session() as session:
            found = session.execute(
                select(Enrollment.id, Contact.email, Contact.first_name, Contact.last_name, Contact.company,
                       Contact.title, Contact.country, Contact.timezone, Contact.custom)
                .join(Contact, Contact.id == Enrollment.contact_id)
                .where(Enrollment.campaign_id == campaign_id, Enrollment.id > last)
                .order_by(Enrollment.id).limit(batch)).all()
            if not found:
                break
            last = found[-1][0]
            rows = []
            for eid, email, first, last_name, company, title, country, zone, custom in found:
                variables = {"first_name": first, "last_name": last_name, "company": company, "title": title,
                             "country": country, "timezone": zone, **(custom or {}), "email": email,
                             "sender_email": box_address, "sender_name": rep_name}
                for step, subject, body in templates:
                    rendered = body.render(variables)
                    rows.append({"enrollment_id": eid, "campaign_id": campaign_id, "mailbox_id": box_id,
                                 "position": step.position, "action": step.action.value, "state": "planned",
                                 "message_id": new_message_id(uuid.uuid4().hex, domain), "to_address": email,
                                 "subject": subject.render(variables), "html": rendered, "text": rendered,
                                 "links": [], "attempts": 0, "updated_at": now})
            session.execute(insert(table), rows)
            rows_written += len(rows)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"seconds": seconds, "cpu_seconds": cpu, "messages": rows_written, "rss_before_mb": rss_before, "peak_rss_mb": _peak_rss_mb()}


def record_step_one_sent(app) -> None:
    """Step 1 of every prepared message sent at 14:00 UTC and step 2 scheduled, with engagement
    events: every sent message once, 1 in 5 opened (seen twice), 1 in 20 clicked, 1 in 100
    bounced, 1 in 50 replied. Written in SQL, as a finished first step would have left them."""
    from sqlalchemy import text

    with app.db.session() as session:
        at = {"at": datetime(2026, 11, 30, 14, 0)}
        session.execute(text("UPDATE enrollments SET launched_at = :at WHERE state = 'active'"), at)
        session.execute(text("UPDATE messages SET state = 'sent', sent_at = :at WHERE position = 1"), at)
        session.execute(text("UPDATE messages SET state = 'scheduled', due_at = :at WHERE position = 2"), at)
        for kind, every, times in (("sent", 1, 1), ("opened", 5, 2), ("clicked", 20, 1), ("bounced", 100, 1),
                                   ("replied", 50, 1)):
            for _ in range(times):  # an open is often seen twice: unique contacts count once
                session.execute(text(
                    "INSERT INTO events (at, kind, level, campaign_id, enrollment_id, message_id, contact_id, detail) "
                    "SELECT :at, :kind, 'info', m.campaign_id, m.enrollment_id, m.id, e.contact_id, '' FROM messages m "
                    "JOIN enrollments e ON e.id = m.enrollment_id WHERE m.position = 1 AND m.id % :every = 0"),
                    {**at, "kind": kind, "every": every})


def run_status(home: Path) -> dict:
    """`cadence status` of the prepared campaign once it has sent step 1 to everyone: cold (first
    call of a process, as the CLI does) and warm, on the migrated schema (which carries the status
    indexes `ix_messages_campaign_state` and `ix_events_campaign_kind`)."""
    from sqlalchemy import select

    app = bench_app(home)
    record_step_one_sent(app)
    app.db.dispose()

    def timed() -> tuple[float, float, dict]:
        from cadence.services.reporting import status_of
        from store.models import Campaign

        fresh = bench_app(home)
        runs = []
        for _ in range(6):
            with fresh.db.session() as session:
                campaign = session.scalar(select(Campaign).where(Campaign.name == CAMPAIGN))
                started = time.perf_counter()
                document = status_of(session, campaign)
                runs.append(time.perf_counter() - started)
        fresh.db.dispose()
        return runs[0] * 1000, min(runs[1:]) * 1000, document["delivery"]

    cold, warm, delivery = timed()
    return {"cold_ms": cold, "warm_ms": warm,
            "sent": delivery["sent"], "opens": delivery["opens"]}


# -- orchestration ---------------------------------------------------------------------------------

def _child(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.prepare", "--child", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"bench child {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _build(root: Path, name: str, contacts: int) -> Path:
    home = root / name
    started = time.perf_counter()
    _child("build", str(home), str(contacts))
    print(f"  dataset {name}: {contacts:,} contacts built in {time.perf_counter() - started:.1f} s", flush=True)
    return home


def _copy_home(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def speed(root: Path, contacts: int) -> tuple[dict, float]:
    from cadence.services.preparing import BATCH

    home = _build(root, f"speed-{contacts}", contacts)
    floor_home = _copy_home(home, root / f"floor-{contacts}")
    floor = _child("floor", str(floor_home), str(BATCH))
    shutil.rmtree(floor_home)
    prepared = _child("prepare", str(home))
    recipients_per_s = prepared["targeted"] / prepared["seconds"]
    floor_per_s = contacts / floor["seconds"]
    ratio = recipients_per_s / floor_per_s
    print(f"  prepare: {prepared['targeted']:,} recipients x 3 steps in {prepared['seconds']:.1f} s = "
          f"{recipients_per_s:,.0f} recipients/s (to deliver {prepared['to_deliver']:,}, to exclude "
          f"{prepared['to_exclude']:,}: {prepared['exclusions']}; {prepared['messages']:,} messages)")
    print(f"  floor:   {contacts:,} recipients x 3 steps in {floor['seconds']:.1f} s = {floor_per_s:,.0f} "
          f"recipients/s (compile-once Jinja2 + Core executemany of {floor['messages']:,} rows, no rules)")
    print(f"  ratio prepare/floor: {ratio:.2f} (target >= {RATIO_TARGET})  "
          f"{'OK' if ratio >= RATIO_TARGET else 'BELOW TARGET'}")
    cpu_ratio = floor["cpu_seconds"] / prepared["cpu_seconds"]
    print(f"  CPU seconds: prepare {prepared['cpu_seconds']:.1f}, floor {floor['cpu_seconds']:.1f}: ratio {cpu_ratio:.2f} "
          "(less sensitive to other load on the machine than the wall-clock ratio)")
    print(f"  peak RSS: prepare {prepared['peak_rss_mb']:.0f} MB (after imports {prepared['rss_before_mb']:.0f} MB), "
          f"floor {floor['peak_rss_mb']:.0f} MB", flush=True)
    if prepared["errors"]:
        print(f"  preparation errors: {prepared['errors']}")
    timing = _child("status", str(home))
    print(f"  status of the {contacts:,}-enrollment campaign after step 1 ({timing['sent']:,} sent, {timing['opens']:,} "
          f"unique opens): {timing['cold_ms']:.0f} ms cold / {timing['warm_ms']:.0f} ms warm (target <= 50 ms)",
          flush=True)
    print("\n  | figure | measured | baseline in the same run | ratio | target |\n  | --- | --- | --- | --- | --- |")
    print(f"  | prepare, {contacts:,} x 3 steps, SQLite | {recipients_per_s:,.0f} recipients/s | floor "
          f"{floor_per_s:,.0f} recipients/s | {ratio:.2f} | >= {RATIO_TARGET} |", flush=True)
    shutil.rmtree(home)
    return prepared, ratio


def growth(root: Path, small: int, large: int, large_run: dict | None = None) -> float:
    runs = {}
    for size in (small, large):
        if size == large and large_run is not None:
            runs[size] = large_run
            continue
        home = _build(root, f"memory-{size}", size)
        runs[size] = _child("prepare", str(home))
        shutil.rmtree(home)
        print(f"  {size:>9,} contacts: peak RSS {runs[size]['peak_rss_mb']:.1f} MB "
              f"({runs[size]['targeted'] / runs[size]['seconds']:,.0f} recipients/s)", flush=True)
    grown = runs[large]["peak_rss_mb"] - runs[small]["peak_rss_mb"]
    print(f"  RSS growth from {small:,} to {large:,} contacts: {grown:.1f} MB (target <= {GROWTH_TARGET_MB} MB "
          f"from 10k to 1M)  {'OK' if grown <= GROWTH_TARGET_MB else 'ABOVE TARGET'}", flush=True)
    return grown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prepare")
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--million", action="store_true", help="also measure RSS growth from 10k to 1M")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args, _unknown = parser.parse_known_args(argv)
    if args.child:
        kind, home, *rest = args.child
        if kind == "build":
            build_dataset(Path(home), int(rest[0]))
            print(json.dumps({"ok": True}))
        elif kind == "prepare":
            print(json.dumps(run_prepare(Path(home))))
        elif kind == "status":
            print(json.dumps(run_status(Path(home))))
        elif kind == "floor":
            print(json.dumps(run_floor(Path(home), int(rest[0]))))
        return 0
    with tempfile.TemporaryDirectory(prefix="cadence-bench-") as tmp:
        root = Path(tmp)
        print(f"prepare: {args.contacts:,} contacts x 3 steps on SQLite", flush=True)
        prepared, _ratio = speed(root, args.contacts)
        print("memory (peak RSS of a child process per size):", flush=True)
        growth(root, 10_000, args.contacts, prepared)
        if args.million:
            growth(root, 10_000, 1_000_000)
        else:
            print("  (the 10k -> 1M growth run takes about 7 minutes: python -m bench.prepare --million)")
    return 0  # figures, not a verdict: a slower machine must not fail `make bench`


if __name__ == "__main__":
    sys.exit(main())
