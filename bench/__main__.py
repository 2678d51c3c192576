"""`python -m bench` (`make bench`): run every benchmark module that exists, one after the other.

Extra arguments go to every module whose `main` takes an `argv` (each ignores what it does not
know), for example `--million` for the 1M-contact run of prepare and status. The full run takes
about 5 minutes on a quiet two-core machine (more when it is shared); `--quick` runs every module
on about a fifth of its data (20k contacts, enrollments and rows; 3,000 messages per dispatch
run), same baselines.
"""
from __future__ import annotations

import importlib
import inspect
import sys
import time

MODULES = ("prepare", "status", "tracking", "dispatch", "slack_ack", "cli", "web")
QUICK = ["--contacts", "20000", "--enrollments", "20000", "--messages", "3000", "--rows", "20000"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--quick" in argv:
        argv = [a for a in argv if a != "--quick"] + QUICK
    failures = 0
    for name in MODULES:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"== bench.{name}: not present, skipped\n", flush=True)
                continue
            raise
        print(f"== bench.{name}", flush=True)
        started = time.perf_counter()
        try:
            takes_argv = bool(inspect.signature(module.main).parameters)
            code = (module.main(argv) if takes_argv else module.main()) or 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"bench.{name} failed: {type(exc).__name__}: {exc}", flush=True)
            code = 1
        failures += code != 0
        print(f"== bench.{name}: {'ok' if code == 0 else 'FAILED'} in {time.perf_counter() - started:.1f} s\n",
              flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
