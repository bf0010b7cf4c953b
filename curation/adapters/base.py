"""What every ingestion adapter shares.

An adapter reads the raw files of one source and yields canonical records
(:mod:`curation.record`) or :class:`Rejected` items -- a raw row that could not
become a record, located to its file and line, with the reason. The ingest
driver decides what a rejection means: by default the first one stops the
ingest with an :class:`~curation.errors.InputError`; with ``on_error="skip"``
the good records are written and the rejected rows go to a quarantine file.

Errors that make the whole input unreadable (a path that does not exist, an
empty file, the wrong format for the named source) are raised at once as
:class:`~curation.errors.InputError`.

Text is UTF-8; a byte-order mark at the start of a file is dropped by every
reader (:data:`BOM`), as ``utf-8-sig`` decoding does, so it never reaches a
record and never moves a line number.

Adapters stream: they hold one raw record (one conversation, one document) at
a time, except where a format forces grouping (documented in the adapter).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from curation.errors import InputError
from curation.record import Record


@dataclass(frozen=True)
class Rejected:
    """A raw row that could not become a record."""

    file: str
    reason: str
    line: int | None = None
    record: str | None = None
    raw: str | None = None

    def error(self) -> InputError:
        return InputError(self.reason, file=self.file, line=self.line, record=self.record)

    def to_json(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "record": self.record, "reason": self.reason, "raw": self.raw}


class Adapter:
    """Base class: subclasses set ``name``/``version`` and implement :meth:`read`.

    ``stats`` counts what the adapter read (files, lines, raw rows, ...) beyond
    the kept/rejected counts the driver keeps itself.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()

    def read(self, paths: Sequence[Path]) -> Iterator[Record | Rejected]:
        raise NotImplementedError


def collect(adapter: Adapter, paths: Sequence[Path]) -> tuple[list[Record], list[Rejected]]:
    """Read everything into memory: validated records and rejected rows (for tests and small inputs)."""
    from curation.record import validate_record

    records: list[Record] = []
    rejected: list[Rejected] = []
    for item in adapter.read([Path(p) for p in paths]):
        if isinstance(item, Rejected):
            rejected.append(item)
        else:
            validate_record(item)
            records.append(item)
    return records, rejected


_REGISTRY: dict[str, type[Adapter]] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: make an adapter available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Adapter]]:
    # Import for the side effect of registration; each module registers itself.
    from curation.adapters import (  # noqa: F401
        dailydialog,
        empatheticdialogues,
        esconv,
        goemotions,
        openwebtext,
    )

    return dict(_REGISTRY)


def get_adapter(name: str) -> Adapter:
    adapters = registry()
    if name not in adapters:
        raise InputError(f"unknown source {name!r}; expected one of: {', '.join(sorted(adapters))}")
    return adapters[name]()


# ------------------------------------------------------------ file helpers


def require_paths(paths: Sequence[Path]) -> list[Path]:
    """Every given path must exist; raises naming the first that does not."""
    if not paths:
        raise InputError("no input path given")
    out = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InputError(unfollowable_link(p) or "path does not exist", file=str(p))
        out.append(p)
    return out


def unfollowable_link(path: Path) -> str | None:
    """Why ``path`` is a symbolic link that cannot be followed (a loop, a missing target); None otherwise."""
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except OSError as exc:
        expected = "expected a file or a link to one"
        if exc.errno == errno.ELOOP:
            return f"symbolic link loop (its target {os.readlink(path)!r} never reaches a file); {expected}"
        return f"broken symbolic link to {os.readlink(path)!r} ({exc.strerror}); {expected}"
    return None


def display_path(path: Path | str, root: Path | None = None) -> str:
    """A path as recorded in provenance: relative to the input root when inside it.

    Relative paths keep snapshot ids independent of where the data lies.
    """
    p = Path(path)
    if root is not None:
        try:
            rel = _resolve(p).relative_to(root.resolve())
            return str(Path(root.name) / rel) if str(rel) != "." else root.name
        except ValueError:
            pass
    return p.name


def _resolve(p: Path) -> Path:
    """``p.resolve()``, except that a link which cannot be followed (a loop, a missing target) names itself."""
    if p.is_symlink() and not p.exists():
        return p.parent.resolve() / p.name
    return p.resolve()


#: A UTF-8 byte-order mark, decoded: an encoding signature some editors put at the start of a file, never text.
BOM = "\ufeff"


def iter_text_lines(stream: io.BufferedIOBase | io.RawIOBase, file: str) -> Iterator[tuple[int, str | Rejected]]:
    """Yield ``(line_no, text)`` for each line of a binary stream decoded as UTF-8.

    A line with bytes that are not UTF-8 yields a :class:`Rejected` naming the
    line and byte column instead of text; the rest of the file is still read.
    Line endings (LF or CRLF) are stripped, and so is a byte-order mark at the
    start of the file (as ``utf-8-sig`` decoding does).
    """
    for n, raw in enumerate(stream, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield (
                n,
                Rejected(
                    file=file,
                    line=n,
                    reason=f"invalid UTF-8 at byte {exc.start} of the line (expected UTF-8 text)",
                    raw=raw.decode("utf-8", errors="replace"),
                ),
            )
            continue
        if n == 1:
            text = text.removeprefix(BOM)
        if text.endswith("\n"):
            text = text[:-1]
            if text.endswith("\r"):
                text = text[:-1]
        yield n, text


# ------------------------------------------------------------ splits

_SPLIT_WORDS = (("train", "train"), ("valid", "validation"), ("dev", "validation"), ("test", "test"))


def split_from_name(path: Path) -> str | None:
    """The split a file name names (``train``, ``valid``/``dev`` -> validation, ``test``), or None.

    None also when the name matches more than one split (``train_test.csv``).
    """
    stem = Path(path).stem.lower()
    found = {split for word, split in _SPLIT_WORDS if word in stem}
    return found.pop() if len(found) == 1 else None


def hash_split(key: str, ratios: tuple[float, float, float]) -> str:
    """A deterministic split for data whose split is ours to set.

    The first 8 bytes of ``sha256(key)`` as a big-endian integer, mod 10,000,
    against the cumulative ``(train, validation, test)`` ratios. Records with the
    same key always land in the same split, whatever order they come in, so a
    key such as the dialogue text keeps identical items out of two splits.
    """
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 10_000
    train, validation, _ = ratios
    if bucket < round(train * 10_000):
        return "train"
    return "validation" if bucket < round((train + validation) * 10_000) else "test"


def check_not_empty(path: Path, display: str) -> None:
    if path.is_file() and path.stat().st_size == 0:
        raise InputError("file is empty", file=display)
