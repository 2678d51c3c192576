"""New Message-IDs (`core.email.message_id.random_message_ids`): RFC 5322 section 3.6.4 ids, each
unique, also across threads and in a forked child (whose ids must never repeat its parent's).
The ids are drawn from os.urandom a block at a time (issue 17), which these tests must not see.
"""
from __future__ import annotations

import os
import threading

import pytest

from core.email.message_id import is_message_id, random_message_ids


@pytest.mark.parametrize("domain, right", [("acme.example", "acme.example"),
                                           ("büro.example", "xn--bro-hoa.example"),
                                           ("ACME.Example", "ACME.Example")])
def test_every_id_is_one_message_id_of_32_hex_digits_at_the_sender_domain(domain, right):
    make = random_message_ids(domain)
    ids = [make() for _ in range(1000)]  # more than one block
    assert all(is_message_id(i) for i in ids)
    assert {i.rsplit("@", 1)[1] for i in ids} == {right + ">"}
    left = [i[1:].split("@", 1)[0] for i in ids]
    assert all(len(part) == 32 and set(part) <= set("0123456789abcdef") for part in left)
    assert len(set(ids)) == 1000


def test_ids_made_by_eight_threads_at_once_are_all_different():
    make = random_message_ids("acme.example")
    made: list[list[str]] = [[] for _ in range(8)]

    def run(n: int) -> None:
        made[n].extend(make() for _ in range(5000))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for ids in made for i in ids]
    assert len(every) == 40_000 and len(set(every)) == 40_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_makes_an_id_its_parent_makes():
    make = random_message_ids("acme.example")
    make()  # the parent holds a block of ids not yet used
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write, "\n".join(make() for _ in range(300)).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split("\n"))
    parent = {make() for _ in range(300)}
    assert len(child) == 300 and not child & parent
