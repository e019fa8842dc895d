"""The I/O code's threads (batchlib.io.threads)."""

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from batchlib.io.threads import BEHIND_NICENESS, run_behind, thread_map

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own niceness is Linux's")


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_thread_map_keeps_the_order():
    assert thread_map(lambda x: x * x, range(20), threads=4) == [x * x for x in range(20)]


@linux_only
def test_run_behind_lowers_only_the_calling_thread():
    before = _niceness()
    with ThreadPoolExecutor(1, initializer=run_behind) as pool:
        behind = pool.submit(_niceness).result()
    with ThreadPoolExecutor(1) as pool:
        usual = pool.submit(_niceness).result()
    assert behind == min(19, before + BEHIND_NICENESS)
    assert usual == before == _niceness()  # neither the process nor later threads changed
