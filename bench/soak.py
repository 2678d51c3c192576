"""Soak (not a test): real `cadence worker` processes on PostgreSQL killed with SIGKILL until
>= 1,000 kills have landed while sending.

    python -m bench.soak                       # make soak: 1,000 kills while sending, 4 workers
    python -m bench.soak --kills 200 --workers 3 --seed 7

Campaigns run one after the other (each on mailboxes of its own at the fake Gmail, with caps on
concurrent requests, on sends per day and per minute; two automatic steps and a rep's task draft)
while every 0.4-1.4 s a worker that holds claimed due messages at that moment is killed and
started again (none is killed while no worker holds any, or while nothing was sent or drafted
since the previous kill: kills land between real sends, even on a loaded machine);
provider faults (429, 5xx, answers lost after the send) and database outages come on the way.
A kill counts towards `--kills` only when it lands while sending: the victim is frozen (SIGSTOP)
and the store says whether it still held claimed due messages at that moment (and whether any
was in `sending`, its intent recorded). At the end the fake's own records are read: every message that was due went out
exactly once, every drafted task has exactly one draft in Drafts and nothing else left a draft
there, and no mailbox limit was ever passed. Prints kills (all, while sending, with an intent in
flight) / delivered / duplicates / lost / duplicate drafts; exits 1 when anything went wrong.
Needs PostgreSQL at 127.0.0.1:5432 (CADENCE_BENCH_PG).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

PG_DSN = os.environ.get("CADENCE_BENCH_PG", "host=127.0.0.1 port=5432 user=postgres dbname=test")
PG_URL = os.environ.get("CADENCE_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def round_boxes(n: int, rng: random.Random, contacts: int) -> list:
    from tests.support.cluster import Box

    return [Box(f"r{n}m0@acme.example", contacts, concurrency=rng.choice((1, 2))),
            Box(f"r{n}m1@acme.example", contacts, concurrency=3, daily=rng.randint(contacts, 2 * contacts)),
            Box(f"r{n}m2@acme.example", contacts, per_minute=rng.choice((40, 60)), concurrency=2),
            Box(f"r{n}m3@acme.example", contacts)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--kills", type=int, default=1000, help="kills that land while sending")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--gap", type=float, nargs=2, default=(0.4, 1.4), metavar=("MIN", "MAX"),
                        help="seconds between two kills (uniform)")
    parser.add_argument("--contacts", type=int, default=60, help="contacts per mailbox and round")
    parser.add_argument("--seed", type=int, default=None)
    args, _unknown = parser.parse_known_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.cluster import Cluster, drop_schema, pg_schema_url

    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    schema = f"soak_{uuid.uuid4().hex[:8]}"
    url = pg_schema_url(PG_DSN, PG_URL, schema)
    root = Path(tempfile.mkdtemp(prefix="cadence-soak-"))
    started = time.monotonic()
    print(f"soak: {args.workers} workers, until {args.kills} kills land while sending, seed {seed}, logs in {root}",
          flush=True)
    try:
        with Cluster(root, url, workers=args.workers, latency=0.005, lease=3.0, batch=8, seed=seed,
                     task_step=True) as cluster:
            rounds = 0
            while cluster.kills_sending < args.kills:
                name = f"Soak {rounds}"
                cluster.add_campaign(name, round_boxes(rounds, rng, args.contacts),
                                     daily_limit=rng.choice((None, 2 * args.contacts - 10)))
                if rounds == 0:
                    cluster.start()
                cluster.chaos(3600, kill_gap=tuple(args.gap), fault_chance=0.3, outage_every=30, outage=1.5,
                              stop_when=lambda: cluster.kills_sending >= args.kills or cluster.pending() == 0,
                              while_sending=True)
                rounds += 1
                print(f"  round {rounds}: {cluster.kills} kills so far ({cluster.kills_sending} while sending, "
                      f"{cluster.kills_in_intent} with an intent in flight), {len(cluster.gmail.sends)} sends, "
                      f"{time.monotonic() - started:.0f} s", flush=True)
            settled = cluster.wait_settled(300)
            cluster.terminate_all()
            verdict = cluster.verdict()
            print(f"\n{verdict.line()}")
            print(f"kills that landed while sending: {verdict.kills_sending} of {verdict.kills} "
                  f"({verdict.kills_in_intent} with a send or draft intent in flight)")
            print(f"faults injected: {dict(cluster.faults)}; rounds {rounds}; {time.monotonic() - started:.0f} s; "
                  f"slowest SIGTERM exit {max(cluster.exit_times):.1f} s; workers that could not start during "
                  f"an outage (restarted): {sum(cluster.restarts.values())}")
            for problem in (verdict.violations + verdict.draft_problems)[:20]:
                print(f"  ! {problem}")
            if not settled:
                print("  ! due work was still left after 300 s")
            if verdict.kills_sending < args.kills:
                print(f"  ! only {verdict.kills_sending} kills landed while sending; {args.kills} were asked for")
            return 0 if verdict.ok and settled and verdict.kills_sending >= args.kills else 1
    finally:
        drop_schema(PG_DSN, schema)


if __name__ == "__main__":
    sys.exit(main())
