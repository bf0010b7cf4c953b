"""The error types of the workbench.

Every known failure is a :class:`WorkbenchError`; the CLI prints it as one line
(no traceback unless ``--debug``) and exits non-zero. Bad input raises
:class:`InputError`, which always names the file, the line or record, and what
was expected.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """A failure the user can act on; printed by the CLI as one line."""


class InputError(WorkbenchError):
    """Malformed or unexpected input, located to a file and a line or record.

    ``file`` is the path as given (or the member path inside an archive),
    ``line`` a 1-based line number where one exists, ``record`` a record
    identifier (a conversation id, a document name) where lines do not apply.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        record: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.record = record
        self.reason = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.record is not None:
            where.append(f"record {self.record}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason


class SchemaError(WorkbenchError):
    """A record that does not fit the canonical schema; names the field."""

    def __init__(self, message: str, *, field: str, record_id: str | None = None) -> None:
        self.field = field
        self.record_id = record_id
        prefix = f"record {record_id}: " if record_id else ""
        super().__init__(f"{prefix}field {field!r}: {message}")


class UnknownLabelError(WorkbenchError):
    """A label that is not in its vocabulary (and has no alias there)."""

    def __init__(self, vocabulary: str, label: object, known: list[str] | tuple[str, ...]) -> None:
        self.vocabulary = vocabulary
        self.label = label
        shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        super().__init__(f"{label!r} is not a label of vocabulary {vocabulary!r} (expected one of: {shown})")


class StoreError(WorkbenchError):
    """A snapshot store problem: unknown ref, corrupt manifest, refusal to overwrite."""
