"""Benchmark of `status` on a large campaign (not a test): the read side's status document of a
campaign of N enrollments x 3 steps (step 1 sent, opens, clicks, bounces and replies recorded as
bench.prepare's status phase writes them), beside a baseline measured in the same process.

    python -m bench.status                 # 100k enrollments (quick)
    python -m bench.status --million       # 1M enrollments (builds for a few minutes)
    python -m bench.status --enrollments 300000

- figure: `status_of` of the campaign, in-process, cold (the first call of a fresh engine) and warm
  (best of 5), on SQLite.
- baseline: a primary-key read of the same campaign row in the same session (the floor of any
  read of the store); ratio = status / baseline.
- Target: status of a 1M-enrollment campaign <= 50 ms on a quiet machine: the campaign's counters
  (kept by the database in the transaction of each change) are read, the campaign never scanned.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 50.0


def child_measure(home: Path) -> dict:
    from sqlalchemy import select

    from bench.prepare import CAMPAIGN, bench_app
    from cadence.services.reads.status import status_of
    from store.models import Campaign

    app = bench_app(home)
    cold = warm = base = None
    document = None
    for run in range(6):
        with app.db.session(readonly=True) as session:
            cid = session.scalar(select(Campaign.id).where(Campaign.name == CAMPAIGN))
            started = time.perf_counter()
            session.get(Campaign, cid)
            took_base = time.perf_counter() - started
            session.expire_all()
            started = time.perf_counter()
            campaign = session.get(Campaign, cid)
            document = status_of(session, campaign)
            took = time.perf_counter() - started
        if run == 0:
            cold = took
        else:
            warm = took if warm is None else min(warm, took)
            base = took_base if base is None else min(base, took_base)
    app.db.dispose()
    return {"cold_ms": cold * 1000, "warm_ms": warm * 1000, "base_ms": base * 1000,
            "sent": document["delivery"]["sent"], "opens": document["delivery"]["opens"],
            "bounces": document["delivery"]["bounces"]}


def child_build(home: Path, enrollments: int) -> dict:
    from bench.cli import build_status_campaign

    return {"sent": build_status_campaign(home, enrollments)}


def _child(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.status", "--child", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"bench child {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.status")
    parser.add_argument("--enrollments", type=int, default=100_000)
    parser.add_argument("--million", action="store_true", help="1M enrollments")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args, _unknown = parser.parse_known_args(argv)
    if args.child:
        kind, home, *rest = args.child
        result = child_build(Path(home), int(rest[0])) if kind == "build" else child_measure(Path(home))
        print(json.dumps(result))
        return 0
    size = 1_000_000 if args.million else args.enrollments
    root = Path(tempfile.mkdtemp(prefix="cadence-bench-status-"))
    try:
        home = root / "home"
        started = time.perf_counter()
        built = _child("build", str(home), str(size))
        print(f"status: campaign of {size:,} enrollments x 3 steps ({built['sent']:,} sent) built in "
              f"{time.perf_counter() - started:.1f} s (SQLite)", flush=True)
        r = _child("measure", str(home))
        ratio = r["warm_ms"] / r["base_ms"] if r["base_ms"] else float("inf")
        print(f"  status_of: {r['cold_ms']:.1f} ms cold, {r['warm_ms']:.1f} ms warm ({r['sent']:,} sent, "
              f"{r['opens']:,} unique opens, {r['bounces']:,} bounces)")
        print(f"  baseline (primary-key read of the campaign row, same session): {r['base_ms']:.2f} ms")
        print(f"  ratio status/baseline: {ratio:.1f}; status {r['warm_ms']:.1f} ms warm, {r['cold_ms']:.1f} ms cold "
              f"(target <= {TARGET_MS:.0f} ms at 1M)  {'OK' if r['cold_ms'] <= TARGET_MS else 'ABOVE TARGET'}",
              flush=True)
        print("\n  | figure | measured | baseline | ratio |\n  | --- | --- | --- | --- |\n"
              f"  | status of {size:,} enrollments (warm) | {r['warm_ms']:.1f} ms | {r['base_ms']:.2f} ms (PK read) "
              f"| {ratio:.1f} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
