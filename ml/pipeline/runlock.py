"""One run at a time per home.

Two runs in one home rebuild the same warehouse under each other and publish a mix of both
(one run's lists with the other's items). Every command that builds in a home holds an
exclusive ``flock`` on ``<home>/.run.lock`` for its whole length. The kernel drops the lock
when the process ends, however it ends (a SIGKILLed run leaves no stale lock); the file only
tells a refused command who holds it: pid and start time.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

LOCK_NAME = ".run.lock"

_guard = threading.Lock()
_held: dict[Path, tuple[int, int]] = {}  # home -> (fd, depth): the locks this process holds


class HomeBusy(RuntimeError):
    """Another process is running in this home."""


def lock_path(home: Path) -> Path:
    return Path(home) / LOCK_NAME


@contextmanager
def hold(home: Path, *, wait: bool = False, on_wait: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the run lock of ``home`` for the block.

    Busy: raise :class:`HomeBusy` naming the holder, or with ``wait`` say whom we wait for and
    block until it is free. Re-entrant within a process: ``recsys run`` takes it before it
    starts anything, and the flow it calls (which a deployment also starts on its own) takes
    it again.
    """
    home = Path(home).resolve()
    with _guard:
        if home in _held:
            fd, depth = _held[home]
            _held[home] = (fd, depth + 1)
        else:
            fd = _acquire(home, wait, on_wait)
            _held[home] = (fd, 1)
    try:
        yield
    finally:
        with _guard:
            fd, depth = _held.pop(home)
            if depth > 1:
                _held[home] = (fd, depth - 1)
            else:
                os.ftruncate(fd, 0)
                os.close(fd)  # closing the only descriptor releases the flock


def _acquire(home: Path, wait: bool, on_wait: Callable[[str], None]) -> int:
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(home), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise HomeBusy(
                    f"home {home} is busy: {holder(home)} holds its run lock; try again later, or pass --wait"
                ) from None
            on_wait(f"waiting for {holder(home)} to release the run lock of {home}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "started_at": started}).encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def holder(home: Path) -> str:
    """Who holds the lock, as the file says. The holder writes it right after taking the lock,
    so an empty file is retried for a moment."""
    for _ in range(20):
        try:
            info = json.loads(lock_path(home).read_text() or "null")
        except (OSError, ValueError):
            info = None
        if info:
            return f"pid {info['pid']} (started {info['started_at']})"
        time.sleep(0.05)
    return "another process"
