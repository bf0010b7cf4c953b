"""Process-wide CLI options (set once by the top-level callback) and consoles."""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from curation.store import SnapshotStore

STORE_URL: str | None = None
DEBUG = False


def store() -> SnapshotStore:
    from curation.store import SnapshotStore

    return SnapshotStore(STORE_URL)


@cache
def console() -> Console:
    from rich.console import Console

    con = Console(emoji=False, highlight=False)
    if not con.is_terminal and "COLUMNS" not in os.environ:
        con.width = 160  # piped or logged output: do not squeeze tables to 80 columns
    return con


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, emoji=False, highlight=False)
