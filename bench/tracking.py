"""Benchmark of the tracking endpoints of `cadence serve` (not a test).

    python -m bench.tracking [--emails E] [--requests N] [--connections C] [--seconds S]

A campaign is sent to `--emails` people on SQLite (Maildir mailbox), then the real
`cadence serve --no-scheduler` runs on loopback in a child process and is hammered with open-pixel
and click-redirect requests (half each) by an asyncio client over C keep-alive connections, bounded
by N requests and S seconds. The *baseline*, measured in the same run with the same client, is a
bare Starlette app on uvicorn answering the same paths with the same bytes and no work at all.
Afterwards the server is stopped (its shutdown writes the queued hits) and every hit must be
counted exactly once: one hit per answered request (stored as at most one row per message, or
link, per minute, with its `hits`), and the KPIs' unique opens and clicks.
Target: >= 0.9 x the bare app's requests/s (judged on the wall clock). Beside it, the server
process's CPU seconds per answered request (Linux /proc, user + system, during the measured load
only) of both servers and their ratio: steadier than the wall clock on a shared machine, where the
load of other jobs changes between the two phases.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

TARGET = 0.9  # x the bare Starlette app's requests/s, same client, same run
REP = "rita@acme.example"
CAMPAIGN_YAML = """\
name: Tracked
timezone: UTC
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Hello {{ first_name }}"
    body: "<p>Hi {{ first_name }}, see <a href='https://example.org/offer'>the offer</a>.</p>"
"""
BARE_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from cadence.http import NO_CACHE, PIXEL

async def pixel(request):
    return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)

async def click(request):
    return RedirectResponse("https://example.org/offer", status_code=302, headers=NO_CACHE)

app = Starlette(routes=[Route("/t/o/{token}", pixel), Route("/t/c/{token}", click),
                        Route("/healthz", lambda request: Response("ok"))])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def _environment(home: Path) -> dict:
    return {**os.environ, "CADENCE_HOME": str(home), "CADENCE_DATABASE_URL": f"sqlite:///{home / 'cadence.db'}",
            "CADENCE_PUBLIC_URL": "https://cadence.bench",
            "CADENCE_SECRET_KEY": "bench-secret-key-bench-secret-key-bench-sec="}


def sent_campaign(home: Path, contacts: int) -> list[tuple[str, str]]:
    """Send the campaign; returns (pixel path, click path) of every sent email."""
    os.environ.update(_environment(home))
    from cadence.app import App
    from cadence.services.audience import enroll
    from cadence.services.campaigns import send_campaign
    from cadence.services.directory import add_mailbox, add_rep
    from cadence.services.imports import import_campaign, import_contacts
    from cadence.services.preparing import prepare
    from cadence.worker.passes import run_pass
    from core.clock import FixedClock
    from core.tracking import sign_token
    from sqlalchemy import select
    from store.models import Message

    home.mkdir(parents=True, exist_ok=True)
    app = App.from_settings(clock=FixedClock(datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)))
    add_rep(app, email=REP, name="Rita Rep")
    add_mailbox(app, provider="maildir", address=REP, owner=REP, path=str(home / "maildir"))
    (home / "campaign.yml").write_text(CAMPAIGN_YAML, encoding="utf-8")
    (home / "contacts.csv").write_text("email,first_name\n" + "".join(
        f"person{i}@prospect.example,P{i}\n" for i in range(contacts)), encoding="utf-8")
    import_campaign(app, home / "campaign.yml")
    import_contacts(app, home / "contacts.csv")
    enroll(app, "Tracked", mailbox=REP, everyone=True)
    prepare(app, "Tracked")
    send_campaign(app, "Tracked")
    run_pass(app)
    key = app.settings.secret_keys[0]
    with app.db.session() as session:
        ids = list(session.scalars(select(Message.id).where(Message.state == "sent").order_by(Message.id)))
    app.db.dispose()
    return [(f"/t/o/{sign_token(key, 'o', i)}", f"/t/c/{sign_token(key, 'c', i, 0)}") for i in ids]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc/PID/stat fields 14 and 15), else None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _cpu_per_request(pid: int, run) -> tuple[dict, float, float | None]:
    """run() -> (counts, rate); returns them with the server's CPU µs per answered request (None off Linux)."""
    before = _cpu_seconds(pid)
    counts, rate = run()
    after = _cpu_seconds(pid)
    answered = sum(v for k, v in counts.items() if k[0] != "answered")
    cpu = None if before is None or after is None or not answered else (after - before) / answered * 1e6
    return counts, rate, cpu


def _start(command: list[str], env: dict, port: int) -> subprocess.Popen:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               cwd=Path(__file__).resolve().parent.parent)
    deadline = time.monotonic() + 120  # a shared, loaded machine can take this long
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as probe:
                probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if probe.recv(64).startswith(b"HTTP/1.1 200"):
                    return process
        except OSError:
            time.sleep(0.05)
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode()[-2000:]}")
    process.kill()
    raise RuntimeError("server did not start")


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)  # graceful: the lifespan shutdown writes the queued hits
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _connection(port: int, paths: list[str], deadline: float, counts: dict) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for path in paths:
            if time.monotonic() > deadline:
                return
            writer.write(f"GET {path} HTTP/1.1\r\nHost: cadence.bench\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            kind = "open" if path.startswith("/t/o/") else "click"
            counts[(kind, status)] = counts.get((kind, status), 0) + 1
            counts.setdefault(("answered", kind), set()).add(path)
    finally:
        writer.close()


async def _load(port: int, paths: list[str], connections: int, seconds: float) -> tuple[dict, float]:
    counts: dict = {}
    deadline = time.monotonic() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, paths[i::connections], deadline, counts) for i in range(connections)))
    return counts, time.perf_counter() - started


def measure(port: int, paths: list[str], connections: int, seconds: float) -> tuple[dict, float]:
    counts, elapsed = asyncio.run(_load(port, paths, connections, seconds))
    return counts, sum(v for k, v in counts.items() if k[0] != "answered") / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracking")
    parser.add_argument("--emails", type=int, default=500, help="emails sent (one per contact) to track")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    args, _unknown = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory(prefix="cadence-bench-tracking-") as tmp:
        home = Path(tmp) / "home"
        started = time.perf_counter()
        hits = sent_campaign(home, args.emails)
        print(f"tracking: {len(hits)} emails sent in {time.perf_counter() - started:.1f} s; {args.requests:,} "
              f"requests (half opens, half clicks) over {args.connections} connections, at most {args.seconds:g} s",
              flush=True)
        paths = [hits[i % len(hits)][i % 2] for i in range(args.requests)]
        env = _environment(home)

        port = _free_port()
        bare = _start([sys.executable, "-c", BARE_APP, str(port)], env, port)
        try:
            measure(port, paths[:500], args.connections, args.seconds)  # warm-up
            _, baseline, bare_cpu = _cpu_per_request(
                bare.pid, lambda: measure(port, paths, args.connections, args.seconds))
        finally:
            _stop(bare)

        port = _free_port()
        server = _start([sys.executable, "-m", "cadence.cli", "serve", "--no-scheduler", "--host", "127.0.0.1",
                         "--port", str(port)], env, port)
        try:
            counts, rate, serve_cpu = _cpu_per_request(
                server.pid, lambda: measure(port, paths, args.connections, args.seconds))
        finally:
            _stop(server)
        opens, clicks = counts.get(("open", 200), 0), counts.get(("click", 302), 0)
        unexpected = {k: v for k, v in counts.items() if k not in (("open", 200), ("click", 302)) and k[0] != "answered"}
        print(f"  cadence serve: {rate:,.0f} requests/s ({opens:,} pixels 200, {clicks:,} redirects 302"
              + (f", unexpected {unexpected}" if unexpected else "") + ")")
        print(f"  baseline (bare Starlette app, same client): {baseline:,.0f} requests/s; ratio {rate / baseline:.2f}")
        print(f"  target ratio >= {TARGET}: {'OK' if rate / baseline >= TARGET else 'BELOW TARGET'}", flush=True)
        if serve_cpu and bare_cpu:
            print(f"  server CPU per answered request: cadence serve {serve_cpu:.0f} µs, bare app {bare_cpu:.0f} µs; "
                  f"CPU ratio (bare / cadence) {bare_cpu / serve_cpu:.2f}")

        os.environ.update(env)
        from cadence.app import App
        from cadence.services.reporting import campaign_status
        from sqlalchemy import func, select
        from store.models import Event

        app = App.from_settings()
        with app.db.session() as session:
            # Repeats within a minute share a row (issue #12): count hits, and show the rows too.
            recorded = {kind: int(hits or 0) for kind, hits in session.execute(
                select(Event.kind, func.sum(Event.hits)).where(
                    Event.kind.in_(("opened", "clicked"))).group_by(Event.kind)).all()}
            rows = dict(session.execute(select(Event.kind, func.count()).where(
                Event.kind.in_(("opened", "clicked"))).group_by(Event.kind)).all())
        kpis = campaign_status(app, "Tracked")["delivery"]
        app.db.dispose()
        openers, clickers = len(counts.get(("answered", "open"), ())), len(counts.get(("answered", "click"), ()))
        counted_once = (recorded.get("opened", 0) == opens and recorded.get("clicked", 0) == clicks
                        and kpis["opens"] == openers and kpis["clicks"] == clickers)
        print(f"  recorded hits: opened {recorded.get('opened', 0):,}, clicked {recorded.get('clicked', 0):,} "
              f"(stored as {rows.get('opened', 0):,} and {rows.get('clicked', 0):,} rows); "
              f"KPIs: opens {kpis['opens']} ({kpis['opens_pct']} %), clicks {kpis['clicks']} ({kpis['clicks_pct']} %) "
              f"of {kpis['delivered_contacts']} delivered contacts; expected {openers} openers, {clickers} clickers")
        print(f"  every answered hit counted once: {'yes' if counted_once else 'NO'}", flush=True)
        print("\n  | figure | measured | baseline in the same run | ratio | target |\n  | --- | --- | --- | --- | --- |")
        print(f"  | tracking pixel + click, {args.connections} connections | {rate:,.0f} req/s | bare Starlette "
              f"{baseline:,.0f} req/s | {rate / baseline:.2f} | >= {TARGET} (every hit counted once: "
              f"{'yes' if counted_once else 'NO'}) |")
        print(json.dumps({"requests_per_s": round(rate), "baseline_per_s": round(baseline),
                          "cpu_us_per_request": serve_cpu and round(serve_cpu),
                          "baseline_cpu_us_per_request": bare_cpu and round(bare_cpu), "counted_once": counted_once}))
    return 0 if counted_once else 1


if __name__ == "__main__":
    sys.exit(main())
