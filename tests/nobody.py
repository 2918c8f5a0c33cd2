"""Run a function as the `nobody` account: how the tests show another local user is kept out.

A forked child drops root for good and reports through a pipe, so no file of the tree is read after
the fork (this works wherever the checkout and .venv live). A child that hangs (a lock held by
another thread at the fork) is killed and fails the test after 120 s.
"""

from __future__ import annotations

import json
import os
import select
import signal
from collections.abc import Callable

import pytest

NOBODY = 65534
SILENCE_S = 120


def run_as_nobody(fn: Callable[[], object]) -> object:
    """`fn()` in a forked child that became `nobody` (root only); its JSON-able result returned."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root for good, run, report through the pipe
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write, json.dumps({"result": fn()}).encode())
        except BaseException as exc:
            os.write(write, json.dumps({"error": repr(exc)}).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        if not select.select([fh], [], [], SILENCE_S)[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child running as nobody said nothing in {SILENCE_S} s; killed it")
        data = json.loads(fh.read())
    os.waitpid(pid, 0)
    if "error" in data:
        pytest.fail(f"the child running as nobody raised {data['error']}")
    return data["result"]
