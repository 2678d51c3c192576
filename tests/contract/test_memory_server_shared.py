"""The in-memory provider's server (`App.memory_server`) is one per App, however many threads ask for
it first at once: a worker's lanes run on a thread pool, and a lane that made a second server
sent into it where nobody looks (bench.dispatch once saw 500 sends of one mailbox vanish)."""
from __future__ import annotations

import sys
import threading

from cadence.app import App
from cadence.settings import Settings
from store.db import Database


def test_threads_asking_a_fresh_app_for_its_memory_server_at_once_all_get_the_same_one(tmp_path):
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: any unguarded window shows
    try:
        for attempt in range(200):
            app = App(settings=Settings(CADENCE_HOME=str(tmp_path)), db=Database(f"sqlite:///{tmp_path / 'x.db'}"))
            start = threading.Barrier(8)
            seen: list[object] = []

            def ask() -> None:
                start.wait()
                seen.append(app.memory_server)

            threads = [threading.Thread(target=ask) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len({id(server) for server in seen}) == 1, f"attempt {attempt}: {len(set(map(id, seen)))} servers"
            app.db.dispose()
    finally:
        sys.setswitchinterval(switch)
