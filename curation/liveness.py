"""Is the process that left something behind still running? (stale temporaries, cache claims, servers)."""

from __future__ import annotations

import contextlib
import os
import socket


def process_alive(pid: int, host: str | None = None) -> bool:
    """True unless ``pid`` is known to be gone: no such process, or a zombie (killed, not yet reaped).

    ``host``: the machine that recorded the pid; another machine's process cannot be checked, so it
    counts as alive (a lease or an age must decide for it). Our own pid is always alive.
    """
    if host is not None and host != socket.gethostname():
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    with contextlib.suppress(OSError, IndexError), open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    return True
