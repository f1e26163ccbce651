"""Child processes that never outlive the run that started them.

A SIGKILLed parent runs no cleanup, and its children (dbt, the temporary Prefect server) would
go on holding the build database or a port for as long as they like. On Linux the kernel can
signal a child when its parent dies: ``prctl(PR_SET_PDEATHSIG)``, set in the child between
fork and exec (it survives the exec).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def dies_with_us() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets SIGTERM when this process dies.

    The kernel watches the *thread* that starts the child, so start long-lived children from a
    thread that lives as long as they should (the main thread). ``None`` off Linux.
    """
    if _prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above: no signal will come
            os._exit(1)

    return preexec
