"""How a worker claims and sends (docs/workers.md): lease, batch, threads, slot wait, retry base."""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta

from cadence.services.errors import UserError
from cadence.settings import load_settings
from core.outcomes import RETRY_BASE

LEASE = timedelta(seconds=60)
LANE_CHUNK = 25  # a mailbox's messages of a claim go draft -> recorded -> sent this many at a time


def worker_identity() -> str:
    """host:pid:random, unique per process and readable in `lease_owner` and `workers`."""
    host = socket.gethostname()[:40]
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class DispatchOptions:
    """How a worker claims and sends. `from_env` reads the operator's settings (docs/workers.md)."""

    lease: timedelta = LEASE
    batch: int = 200  # messages per claim
    threads: int = 8  # mailboxes one worker serves at the same time
    slot_wait: float = 5.0  # seconds to wait for a free concurrency slot before giving a message back
    retry_base: timedelta = RETRY_BASE  # first wait after a provider error (doubling, with jitter)

    @classmethod
    def from_env(cls, environ: dict | None = None) -> "DispatchOptions":
        env = load_settings().tuning if environ is None else environ  # the environment and .env
        return cls(lease=timedelta(seconds=positive_setting(env, "CADENCE_LEASE_SECONDS", LEASE.total_seconds())),
                   batch=int(positive_setting(env, "CADENCE_CLAIM_BATCH", 200, integer=True)),
                   threads=int(positive_setting(env, "CADENCE_SEND_THREADS", 8, integer=True)),
                   slot_wait=positive_setting(env, "CADENCE_SLOT_WAIT", 5.0),
                   retry_base=timedelta(seconds=positive_setting(env, "CADENCE_RETRY_BASE_SECONDS",
                                                                 RETRY_BASE.total_seconds())))


def positive_setting(env, name: str, default: float, *, integer: bool = False) -> float:
    """`env[name]` as a number greater than 0 (`default` when unset); UserError naming it otherwise."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise UserError(f"{name}: {raw!r} is not a {'whole ' if integer else ''}number") from None
    if value <= 0:
        raise UserError(f"{name}: must be greater than 0, got {raw!r}")
    return value
