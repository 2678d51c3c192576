"""Benchmark of the command line (not a test): start-up, `status` and bulk imports, each beside a
baseline measured in the same run.

    python -m bench.cli                  # 100k enrollments for status, 100k rows imported and enrolled
    python -m bench.cli --rows 20000     # another size
    python -m bench.cli --repeat 7       # more runs of each start-up measurement (the median is shown)

- Start-up: CPU seconds (user + system, from the kernel's accounting of each child process) of
  `cadence --help` beside `python -c pass` with the same interpreter, interleaved so both see the
  same load. Target: --help <= 1.5 x bare Python.
- `cadence status CAMPAIGN --json` of a 100k-enrollment campaign (3 steps, step 1 sent, opens,
  clicks, bounces and replies recorded as bench.prepare's status phase writes them), each run a
  new process as an operator runs it: CPU and wall seconds. Target: <= 0.4 s.
- `cadence contacts import FILE.csv` and `cadence enroll CAMPAIGN --contacts FILE.csv` of the same
  100k rows: rows/s of the real command (a process of its own, start-up included) beside a
  SQLAlchemy Core executemany of the same rows into the same tables (also a process of its own,
  on a copy of the same database: csv.DictReader, lower-cased addresses, no checks).
  Target: >= 0.5 x.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HELP_TARGET = 1.5
STATUS_TARGET_S = 0.4
IMPORT_TARGET = 0.5
REP = "rita@acme.example"
ROOT = Path(__file__).resolve().parent.parent
ZONES = ("America/New_York", "Europe/London", "Asia/Tokyo", "Europe/Paris")
COUNTRIES = ("US", "GB", "JP", "FR")


# -- running a child and what it cost -------------------------------------------------------------

def cadence_command() -> list[str]:
    """The installed `cadence` script next to this interpreter, else `python -m cadence.cli`."""
    script = Path(sys.executable).with_name("cadence")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cadence.cli"]


def environment(home: Path) -> dict[str, str]:
    return {**os.environ, "CADENCE_HOME": str(home), "CADENCE_DATABASE_URL": f"sqlite:///{home / 'cadence.db'}",
            "CADENCE_PUBLIC_URL": "https://cadence.bench",
            "CADENCE_SECRET_KEY": "bench-secret-key-bench-secret-key-bench-sec=",
            "CADENCE_NOW": "2026-11-30T15:00:00Z"}


def measured(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> dict:
    """Run one child to its end; its CPU seconds (user + system) and wall seconds, and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd or ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}{done.stdout[-1000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu": cpu, "wall": wall, "out": done.stdout}


def cadence(home: Path, *args: str) -> dict:
    return measured([*cadence_command(), *args], env=environment(home), cwd=home)


# -- start-up ------------------------------------------------------------------------------------

def startup(repeat: int) -> tuple[float, float, float]:
    """(--help CPU s, bare Python CPU s, ratio). The help text is cached after its first run
    (cadence.help_cache): the first run, in a fresh cache folder, is shown apart as "uncached"."""
    bare, helped = [], []
    with tempfile.TemporaryDirectory(prefix="cadence-bench-cache-") as cache:
        env = {**os.environ, "XDG_CACHE_HOME": cache}
        uncached = measured([*cadence_command(), "--help"], env=env)["cpu"]
        for _ in range(repeat):
            bare.append(measured([sys.executable, "-c", "pass"], env=env)["cpu"])
            helped.append(measured([*cadence_command(), "--help"], env=env)["cpu"])
    bare_s, help_s = statistics.median(bare), statistics.median(helped)
    ratio = help_s / bare_s if bare_s else float("inf")
    print(f"  `python -c pass`: {bare_s * 1000:.0f} ms CPU (median of {repeat}; min {min(bare) * 1000:.0f})")
    print(f"  `cadence --help`: {help_s * 1000:.0f} ms CPU (median of {repeat}; min {min(helped) * 1000:.0f}); "
          f"its first run, building the help cache: {uncached * 1000:.0f} ms")
    print(f"  ratio --help / bare Python: {ratio:.2f} (target <= {HELP_TARGET})  "
          f"{'OK' if ratio <= HELP_TARGET else 'ABOVE TARGET'}", flush=True)
    return help_s, bare_s, ratio


# -- status of a large campaign ------------------------------------------------------------------

def build_status_campaign(home: Path, enrollments: int) -> int:
    """bench.prepare's campaign with `enrollments` people, its messages written as a preparation
    would leave them (one per step and person), then step 1 sent. Returns the step-1 messages."""
    from sqlalchemy import String, cast, func, insert, literal, select

    from bench.prepare import bench_app, build_dataset, record_step_one_sent
    from store.models import Campaign, Contact, Enrollment, Message, Step

    build_dataset(home, enrollments)
    app = bench_app(home)
    now = app.clock.now()
    with app.db.session() as session:
        campaign = session.scalar(select(Campaign).where(Campaign.name == "Bench"))
        rows = (select(Enrollment.id, Enrollment.campaign_id, Enrollment.mailbox_id, Step.position, Step.action,
                       literal("planned"),
                       literal("<") + cast(Enrollment.id, String) + literal(".") + cast(Step.position, String)
                       + literal("@cadence.bench>"),
                       Contact.email, literal("Quick question"), literal("<p>Hi there</p>"), literal("Hi there"),
                       literal(0), literal(now, Message.updated_at.type))
                .join(Contact, Contact.id == Enrollment.contact_id)
                .join(Step, Step.campaign_id == Enrollment.campaign_id)
                .where(Enrollment.campaign_id == campaign.id))
        session.execute(insert(Message.__table__).from_select(
            ["enrollment_id", "campaign_id", "mailbox_id", "position", "action", "state", "message_id", "to_address",
             "subject", "html", "text", "attempts", "updated_at"], rows))
        session.execute(Enrollment.__table__.update().where(Enrollment.campaign_id == campaign.id)
                        .values(prepared_version=campaign.content_version))
        campaign.state = "sending"
        campaign.prepared_content_version = campaign.content_version
        campaign.prepared_audience_version = campaign.audience_version
    record_step_one_sent(app)
    with app.db.session() as session:
        sent = session.scalar(select(func.count()).select_from(Message).where(Message.position == 1))
    app.db.dispose()
    return sent


def status(root: Path, enrollments: int, repeat: int) -> tuple[float, float]:
    home = root / "status"
    started = time.perf_counter()
    sent = build_status_campaign(home, enrollments)
    print(f"  campaign of {enrollments:,} enrollments x 3 steps built in {time.perf_counter() - started:.1f} s",
          flush=True)
    runs = [cadence(home, "status", "Bench", "--json") for _ in range(repeat)]
    document = json.loads(runs[-1]["out"])
    cpu, wall = statistics.median(r["cpu"] for r in runs), statistics.median(r["wall"] for r in runs)
    bare = statistics.median(measured([sys.executable, "-c", "pass"])["cpu"] for _ in range(repeat))
    print(f"  `cadence status Bench --json`: {cpu:.2f} s CPU, {wall:.2f} s wall (median of {repeat} processes; "
          f"bare Python {bare:.2f} s CPU); it shows {document['delivery']['sent']:,} sent, "
          f"{document['delivery']['opens']:,} unique opens")
    if document["delivery"]["sent"] != sent:
        print(f"  WARNING: status shows {document['delivery']['sent']:,} sent, the data holds {sent:,}")
    print(f"  status: {cpu:.2f} s CPU (target <= {STATUS_TARGET_S} s)  "
          f"{'OK' if cpu <= STATUS_TARGET_S else 'ABOVE TARGET'}", flush=True)
    shutil.rmtree(home)
    return cpu, bare


# -- contacts import and enroll ------------------------------------------------------------------

CAMPAIGN_YAML = """\
name: Imported
timezone: America/New_York
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:30"
    subject: "Quick question, {{ first_name | default('there') }}"
    body: "<p>Hi {{ first_name | default('there') }}, would a call help?</p>"
"""
CSV_COLUMNS = ("email", "first_name", "last_name", "company", "title", "timezone", "country", "pain_point")


def write_contacts(path: Path, rows: int) -> None:
    """`rows` distinct people over 997 company domains (repeated domains, as real lists have)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for i in range(rows):
            writer.writerow((f"Person.{i}@Prospect{i % 997}.example", f"Name{i}", "Example", f"Company {i % 997}",
                             "VP Sales" if i % 3 == 0 else "", ZONES[i % 4], COUNTRIES[i % 4],
                             "long sales cycles" if i % 2 else ""))


def floor_import(home: Path, csv_path: Path) -> dict:
    """Child: Core executemany of the CSV's rows into contacts, in batches of 10,000."""
    from sqlalchemy import insert

    from bench.prepare import bench_app
    from store.models import Contact

    app = bench_app(home)
    started = time.perf_counter()
    now = datetime.now(timezone.utc)
    known = set(CSV_COLUMNS) - {"pain_point"}
    rows = 0
    with csv_path.open(newline="", encoding="utf-8") as handle:
        batch = []
        for record in csv.DictReader(handle):
            batch.append({"email": record["email"].lower(), **{k: record[k] or None for k in known - {"email"}},
                          "custom": {k: v for k, v in record.items() if k not in known and v}, "owner_id": None,
                          "created_at": now, "updated_at": now})
            if len(batch) == 10_000:
                rows += _insert(app, insert(Contact.__table__), batch)
                batch = []
        rows += _insert(app, insert(Contact.__table__), batch)
    return {"rows": rows, "seconds": time.perf_counter() - started}


def floor_enroll(home: Path, csv_path: Path) -> dict:
    """Child: the contacts of the CSV looked up by address, then a Core executemany of their enrollments."""
    from sqlalchemy import insert, select

    from bench.prepare import bench_app
    from store.models import Campaign, Contact, Enrollment, MailboxRow

    app = bench_app(home)
    started = time.perf_counter()
    now = datetime.now(timezone.utc)
    with csv_path.open(newline="", encoding="utf-8") as handle:
        wanted = [(record["email"].lower(), record["timezone"]) for record in csv.DictReader(handle)]
    with app.db.session() as session:
        campaign_id = session.scalar(select(Campaign.id).where(Campaign.name == "Imported"))
        mailbox_id = session.scalar(select(MailboxRow.id).where(MailboxRow.address == REP))
        ids = dict(session.execute(select(Contact.email, Contact.id)).all())
    rows = _insert(app, insert(Enrollment.__table__), [
        {"campaign_id": campaign_id, "contact_id": ids[email], "mailbox_id": mailbox_id, "state": "active",
         "zone": zone, "send_at_local": None, "enrolled_at": now} for email, zone in wanted])
    return {"rows": rows, "seconds": time.perf_counter() - started}


def _insert(app, statement, rows: list[dict]) -> int:
    if rows:
        with app.db.session() as session:
            session.execute(statement, rows)
    return len(rows)


def child(*args: str) -> dict:
    """A baseline in a process of its own; its wall time includes start-up, as the command's does."""
    started = time.perf_counter()
    result = measured([sys.executable, "-m", "bench.cli", "--child", *args])
    inner = json.loads(result["out"].strip().splitlines()[-1])
    return {**inner, "wall": time.perf_counter() - started, "cpu": result["cpu"]}


def imports(root: Path, rows: int) -> list[tuple[str, float, float, float]]:
    home = root / "imports"
    home.mkdir()
    csv_path = root / "contacts.csv"
    write_contacts(csv_path, rows)
    (home / "imported.yml").write_text(CAMPAIGN_YAML, encoding="utf-8")
    cadence(home, "init")
    cadence(home, "rep", "add", "--email", REP, "--name", "Rita Rep")
    cadence(home, "mailbox", "add", "--provider", "maildir", "--address", REP, "--owner", REP, "--path",
            str(home / "maildir"))
    cadence(home, "campaign", "import", str(home / "imported.yml"))
    floor_home = root / "imports-floor"
    shutil.copytree(home, floor_home)

    floor_in = child("floor-import", str(floor_home), str(csv_path))
    floor_en = child("floor-enroll", str(floor_home), str(csv_path))
    shutil.rmtree(floor_home)
    imported = cadence(home, "contacts", "import", str(csv_path))
    enrolled = cadence(home, "enroll", "Imported", "--contacts", str(csv_path), "--mailbox", REP)
    shutil.rmtree(home)
    table = []
    for what, run, floor, said in (("contacts import", imported, floor_in, imported["out"].strip()),
                                   ("enroll", enrolled, floor_en, enrolled["out"].strip())):
        per_s, floor_per_s = rows / run["wall"], floor["rows"] / floor["wall"]
        ratio = per_s / floor_per_s
        table.append((what, per_s, floor_per_s, ratio))
        print(f"  `cadence {what}` of {rows:,} rows: {run['wall']:.1f} s wall, {run['cpu']:.1f} s CPU = "
              f"{per_s:,.0f} rows/s ({said[-90:]})")
        print(f"  floor: Core executemany of the same {floor['rows']:,} rows: {floor['wall']:.1f} s wall "
              f"({floor['seconds']:.1f} s after start-up), {floor['cpu']:.1f} s CPU = {floor_per_s:,.0f} rows/s")
        print(f"  ratio {what}/floor: {ratio:.2f} (target >= {IMPORT_TARGET})  "
              f"{'OK' if ratio >= IMPORT_TARGET else 'BELOW TARGET'}; by CPU seconds (floor {floor['cpu']:.1f} / "
              f"command {run['cpu']:.1f}, less sensitive to other load on the machine): "
              f"{floor['cpu'] / run['cpu'] if run['cpu'] else float('inf'):.2f}", flush=True)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli")
    parser.add_argument("--rows", type=int, default=100_000, help="enrollments for status; rows imported and enrolled")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args, _unknown = parser.parse_known_args(argv)
    if args.child:
        kind, home, csv_path = args.child
        run = floor_import if kind == "floor-import" else floor_enroll
        print(json.dumps(run(Path(home), Path(csv_path))))
        return 0
    print(f"cli: start-up, status of {args.rows:,} enrollments, import and enroll of {args.rows:,} rows (SQLite)",
          flush=True)
    help_s, bare_s, help_ratio = startup(args.repeat)
    with tempfile.TemporaryDirectory(prefix="cadence-bench-cli-") as tmp:
        root = Path(tmp)
        status_s, status_bare = status(root, args.rows, args.repeat)
        rows = imports(root, args.rows)
    print("\n  | figure | measured | baseline in the same run | ratio | target |\n  | --- | --- | --- | --- | --- |")
    print(f"  | `cadence --help` CPU | {help_s * 1000:.0f} ms | `python -c pass` {bare_s * 1000:.0f} ms | "
          f"{help_ratio:.2f} | <= {HELP_TARGET} |")
    print(f"  | `cadence status` CPU, {args.rows:,} enrollments | {status_s:.2f} s | `python -c pass` "
          f"{status_bare:.2f} s | {status_s / status_bare if status_bare else float('inf'):.1f} | <= {STATUS_TARGET_S} s |")
    for what, per_s, floor_per_s, ratio in rows:
        print(f"  | `cadence {what}` | {per_s:,.0f} rows/s | Core executemany {floor_per_s:,.0f} rows/s | "
              f"{ratio:.2f} | >= {IMPORT_TARGET} |")
    return 0  # figures, not a verdict: a slower machine must not fail `make bench`


if __name__ == "__main__":
    sys.exit(main())
