"""Tracking hits that `cadence serve` could not write when it stopped, kept on disk until a later
start writes them.

The hit writer (`cadence.tracking_http.HitWriter`) counts opens and clicks in memory and writes
them every second. When the database refuses the last write at shutdown, those hits would die with
the process; they are kept instead as one JSON file per stop under `CADENCE_HOME/spool/hits/`, and
the next writer to start writes each file in one transaction, then deletes it. A file is only
ever complete (written to a temporary name, flushed to disk, then renamed). Several `cadence serve`
processes may share one home: one writer at a time writes the kept files (`claim`), or two could
both write a file before either deletes it, and count its hits twice.

File shape: `{"version": 1, "rows": [row, ...]}`, each row an `engagement.hit_row` dict with
`at` as ISO 8601 text.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

VERSION = 1
LOCK = ".lock"  # in the folder: held by the one writer writing the kept files
TAKEN = ".writing"  # added to a kept file's name while its rows are written (then it is deleted)


class HitSpool:
    """The folder of kept hit files. `keep(rows)` writes one file (raises OSError when it cannot);
    `files()` lists them oldest first; `claim()` lists them for one writer at a time (OSError when
    its lock file cannot be opened); `read(path)` gives its rows back (ValueError for a file that
    is not one of ours); `take(path)` marks it as being written (`give_back` unmarks it when the
    write failed); `done(path)` deletes it once its rows are written. A file found marked (its
    writer died between the write and the delete) is written again: the one window where hits can
    count twice."""

    def __init__(self, folder: Path):
        self.folder = folder

    def keep(self, rows: list[dict]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())  # for the operator reading the folder
        path = self.folder / f"hits-{stamp}-{uuid.uuid4().hex[:8]}.json"
        partial = path.with_suffix(".partial")
        body = {"version": VERSION, "rows": [{**row, "at": row["at"].isoformat()} for row in rows]}
        with open(partial, "w", encoding="utf-8") as out:
            json.dump(body, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
        return path

    def files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted([*self.folder.glob("hits-*.json"), *self.folder.glob("hits-*.json" + TAKEN)])

    def take(self, path: Path) -> Path:
        """Mark a kept file as being written (renamed with TAKEN), before its rows go to the
        database; returns its new path. Raises OSError when the folder cannot be changed: then the
        file could not be deleted once written either, and would be written again and again."""
        if path.name.endswith(TAKEN):
            return path
        taken = path.with_name(path.name + TAKEN)
        os.rename(path, taken)
        return taken

    @contextmanager
    def claim(self) -> Iterator[list[Path]]:
        """The kept files (oldest first), for this writer alone until the block ends; none while
        another writer holds them (another process sharing the home, or a writer thread of this one
        still under way as the server stops). An exclusive `flock` on the folder's lock file: the
        system drops it when its holder dies, so a crashed writer never leaves the files stuck."""
        if not self.folder.is_dir():
            yield []
            return
        with open(self.folder / LOCK, "ab") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield []
                return
            try:
                yield self.files()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def give_back(self, taken: Path) -> None:
        """A file whose write failed is a plain kept file again (best effort: marked, it is
        written again all the same)."""
        try:
            os.rename(taken, taken.with_name(taken.name.removesuffix(TAKEN)))
        except OSError:
            pass

    def read(self, path: Path) -> list[dict]:
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            if body.get("version") != VERSION:
                raise ValueError(f"version {body.get('version')!r}, expected {VERSION}")
            return [{**row, "at": datetime.fromisoformat(row["at"])} for row in body["rows"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a file of kept tracking hits ({exc})") from None

    def done(self, path: Path) -> None:
        path.unlink(missing_ok=True)
