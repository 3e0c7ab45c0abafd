"""New row ids: 64 random bits in hex, drawn from the operating system in blocks; never
repeated, not across threads nor in a forked child."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

from slicelab.services.ids import new_id


def test_an_id_is_its_prefix_and_sixteen_hex_digits() -> None:
    assert re.fullmatch(r"s-[0-9a-f]{16}", new_id("s-"))
    assert re.fullmatch(r"x[0-9a-f]{4}", new_id("x", 2))


def test_ids_do_not_repeat_across_blocks_and_threads() -> None:
    with ThreadPoolExecutor(8) as pool:
        ids = [i for chunk in pool.map(lambda _: [new_id("L-") for _ in range(2000)], range(8))
               for i in chunk]
    assert len(set(ids)) == len(ids) == 16_000


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_id("s-")  # a block is drawn and partly used
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, " ".join(new_id("s-") for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        theirs = set(pipe.read().split())
    os.waitpid(pid, 0)
    ours = {new_id("s-") for _ in range(50)}
    assert len(theirs) == 50 and not theirs & ours
