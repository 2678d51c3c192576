"""`python -m bench` (`make bench`): run every benchmark module that exists, one after the other.

Extra arguments go to every module whose `main` takes an `argv` (each ignores what it does not
know), for example `--million` for the 1M-contact run of prepare.
"""
from __future__ import annotations

import importlib
import inspect
import sys
import time

MODULES = ("prepare", "status", "tracking", "dispatch", "slack_ack", "cli", "web")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
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
