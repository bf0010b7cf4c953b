"""OpenWebText (Gokaslan & Cohen, 2019): web documents, unlabeled.

The corpus is distributed as nested archives, all read here as streams:

* a **chunk** ``urlsf_subsetNN-K_data.xz`` -- an xz-compressed tar of
  documents named ``NNNNNNN-<md5 hex>.txt``;
* an **outer tar** ``urlsf_subsetNN.tar`` (HF) or ``openwebtext.tar.xz``
  (Zenodo) whose members are chunks (``openwebtext/urlsf_subsetNN-K_data.xz``);
* a **directory** holding chunks, outer tars, or plain ``.txt`` documents
  (as HF's dummy data does), walked in sorted order.

One record per document: id ``openwebtext:<split>:<file stem>``, one turn
(speaker ``document``) holding the text exactly as the file has it (UTF-8,
a leading byte-order mark dropped as ``utf-8-sig`` does; blank-line runs are
a cleaning step's business, not ingestion's),
``context["subset"]`` = the chunk's name. Provenance ``file`` is the member
path through the archives (``outer.tar!openwebtext/x.xz!0000005-….txt``) and
``offset`` the byte offset of the member's first header in the decompressed
tar stream (what :attr:`tarfile.TarInfo.offset` reports).

OpenWebText has no splits. :func:`hash_split` assigns one from the document
stem (first 8 bytes of its SHA-256, big-endian, mod 1000: < 980 train,
< 990 validation, else test) and ``context["split_assigned"] = "hash"``.
Ids are not checked for duplicates across a read: that would keep a set of
8M ids; duplicates are the dedup step's job.

**Streaming.** Nothing is unpacked to disk and memory does not grow with the
input: :func:`iter_tar` is a small ustar/GNU/pax reader over decompressed
chunks (``lzma.LZMADecompressor`` with bounded output, 1 MiB a call), which
holds one member at a time and keeps no member list; :func:`prefetch` runs
the decompression in a thread (``lzma`` releases the GIL) at most 4 chunks
ahead. Chunks inside an outer tar are decompressed while the outer tar
streams past. ``tarfile`` in stream mode is not used: on archives of many
small files it is 2-3x slower and keeps every ``TarInfo``. Piping through an
``xz -dc`` subprocess was measured too and is no faster than in-process
``lzma`` (and needs the binary), so it is not used.
``bench/owt_tar_speed.py`` measures all of these side by side against
``xz -dc``; on 60k documents of ~1.1 KB this module reaches ~70 % of
``xz -dc`` building full records, ~77 % for the tar reader alone.

**Damage.** A document that is not UTF-8 is a :class:`Rejected` naming its
member. A truncated or corrupt archive (xz data that fails to decompress or
its check, a tar header with a bad checksum or size) yields the documents
before the damage, then a :class:`Rejected` naming the archive, the byte
offset and what was expected. An archive counts as xz, and its errors as
damage, once its 12-byte xz stream header is intact; input that is not an
xz/tar archive of documents at all (a zip, an xz of plain text, a ``.xz``
that is not xz) raises :class:`InputError` at once. In a folder, a document
or archive name that is a symbolic link which cannot be followed (a loop, a
missing target) is a :class:`Rejected` naming the link, counted as
``unreadable_files``, like any entry that should be read and cannot; links to
folders are not followed (``os.walk``), so a link to ``.`` is harmless.
"""

from __future__ import annotations

import lzma
import os
import queue
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from curation.adapters.base import (
    BOM,
    Adapter,
    Rejected,
    check_not_empty,
    display_path,
    hash_split,
    register,
    require_paths,
    unfollowable_link,
)
from curation.errors import InputError, SchemaError
from curation.record import Record, make_id, provenance, turn

XZ_MAGIC = b"\xfd7zXZ\x00"

#: Compressed bytes read per call, and the most decompressed bytes produced per call
#: (bounds memory even for highly compressible input).
READ_SIZE = 1 << 20
OUTPUT_SIZE = 1 << 20

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_REGULAR = (b"0", b"\x00", b"7")
_ARCHIVE_SUFFIXES = (".xz", ".tar")


HASH_SPLIT_RATIOS = (0.98, 0.01, 0.01)


def document_split(doc_stem: str) -> str:
    """The split of a document: :func:`~curation.adapters.base.hash_split` of its name, 98/1/1."""
    return hash_split(doc_stem, HASH_SPLIT_RATIOS)


# ------------------------------------------------------------ stream reader


class ArchiveDamaged(Exception):
    """The archive stops or breaks at ``offset`` (decompressed tar bytes)."""

    def __init__(self, reason: str, *, offset: int, member: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset
        self.member = member


class NotATar(Exception):
    """The first header is not a tar header: the input is some other format."""


class _Readable(Protocol):
    def read(self, n: int, /) -> bytes: ...


def xz_chunks(raw: _Readable) -> Iterator[bytes]:
    """Decompressed chunks of an xz stream (concatenated streams and padding allowed).

    Raises :class:`ArchiveDamaged` (offset = decompressed bytes so far) when
    the data ends early or fails its check, and :class:`NotATar` when the
    very first bytes are not xz.
    """
    decompressor = lzma.LZMADecompressor(lzma.FORMAT_XZ)
    stream_started = False
    is_xz: bool | None = None  # whether the first stream header is intact: then errors are damage
    compressed = 0
    produced = 0
    data = b""
    while True:
        if decompressor.eof:
            data = decompressor.unused_data
            decompressor = lzma.LZMADecompressor(lzma.FORMAT_XZ)
            stream_started = False
        if not stream_started:
            data = data.lstrip(b"\x00")  # stream padding between concatenated streams
        if not data and decompressor.needs_input:
            data = raw.read(READ_SIZE)
            compressed += len(data)
            if is_xz is None:
                is_xz = _xz_stream_header_ok(data)
            if not data:
                if not stream_started:
                    return
                raise ArchiveDamaged(
                    f"archive truncated: expected more xz-compressed data after byte {compressed} of the archive",
                    offset=produced,
                )
            if not stream_started:
                continue
        stream_started = True
        try:
            out = decompressor.decompress(data, max_length=OUTPUT_SIZE)
        except lzma.LZMAError as exc:
            if not is_xz:
                raise NotATar(f"not xz-compressed data ({exc})") from None
            raise ArchiveDamaged(
                f"corrupt xz data at or before compressed byte {compressed} ({exc}); expected a valid xz stream",
                offset=produced,
            ) from None
        data = b""
        if out:
            produced += len(out)
            yield out


def _xz_stream_header_ok(data: bytes) -> bool:
    """The 12-byte xz stream header: magic, flags (zero byte, check type 0-15), CRC-32 of the flags."""
    return (
        len(data) >= 12
        and data[:6] == XZ_MAGIC
        and data[6] == 0
        and data[7] < 0x10
        and zlib.crc32(data[6:8]) == int.from_bytes(data[8:12], "little")
    )


def prefetch(chunks: Iterator[bytes], *, depth: int = 4) -> Iterator[bytes]:
    """``chunks``, produced by a background thread up to ``depth`` ahead.

    ``lzma`` releases the GIL while it decompresses, so decompression runs
    beside the tar parsing and record building instead of before them: on two
    cores the reader then goes about as fast as decompression alone. Memory
    stays bounded by ``depth`` chunks. Errors raised by the producer are
    re-raised here; closing this generator stops the thread.
    """
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(exc)

    thread = threading.Thread(target=produce, name="openwebtext-decompress", daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


_END = object()


def file_chunks(raw: BinaryIO) -> Iterator[bytes]:
    while chunk := raw.read(READ_SIZE):
        yield chunk


class _ByteStream:
    """Exact-size reads over an iterator of byte chunks, tracking the offset."""

    __slots__ = ("_buf", "_chunks", "_done", "_pos")

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._pos = 0
        self._done = 0  # bytes of the stream before ``_buf``

    @property
    def offset(self) -> int:
        return self._done + self._pos

    def read(self, n: int) -> bytes:
        """``n`` bytes, or fewer at the end of the stream."""
        buf, pos = self._buf, self._pos
        end = pos + n
        if end <= len(buf):
            self._pos = end
            return buf[pos:end]
        parts = [buf[pos:]]
        have = len(buf) - pos
        self._done += len(buf)
        self._buf, self._pos = b"", 0
        for chunk in self._chunks:
            need = n - have
            if len(chunk) <= need:
                parts.append(chunk)
                have += len(chunk)
                self._done += len(chunk)
                if have == n:
                    break
            else:
                parts.append(chunk[:need])
                self._buf, self._pos = chunk, need
                break
        return b"".join(parts)

    def skip(self, n: int) -> int:
        """Drop ``n`` bytes; returns how many there were."""
        left = len(self._buf) - self._pos
        if n <= left:
            self._pos += n
            return n
        skipped = left
        self._done += len(self._buf)
        self._buf, self._pos = b"", 0
        for chunk in self._chunks:
            need = n - skipped
            if len(chunk) <= need:
                skipped += len(chunk)
                self._done += len(chunk)
                if skipped == n:
                    break
            else:
                self._buf, self._pos = chunk, need
                skipped = n
                break
        return skipped


class _Bounded:
    """A member's data as a readable stream, for a chunk nested in an outer tar."""

    __slots__ = ("_left", "_stream")

    def __init__(self, stream: _ByteStream, size: int) -> None:
        self._stream = stream
        self._left = size

    def read(self, n: int) -> bytes:
        data = self._stream.read(min(n, self._left))
        self._left -= len(data)
        return data


def iter_tar(
    chunks: Iterator[bytes], *, stream_member: Callable[[str], bool] | None = None, verify_checksums: bool = True
) -> Iterator[tuple[str, int, bytes | _Bounded]]:
    """Yield ``(name, header_offset, data)`` for each regular file of a tar stream.

    Understands ustar (with the ``prefix`` field), GNU (long names ``L``,
    base-256 sizes) and pax (``x`` headers: ``path``, ``size``). Holds one
    member at a time. For members where ``stream_member(name)`` is true,
    ``data`` is a reader over the member (to be consumed before the next
    item; what is left unread is skipped) instead of bytes.

    With ``verify_checksums=False`` (for tar streams inside xz, whose own
    integrity check covers every byte) a header with the ustar/GNU magic is
    trusted without summing its 512 bytes -- a third of the parsing time
    for small documents; the first header and any header without the magic
    are still verified.
    """
    s = _ByteStream(chunks)
    reading: list[str] = []  # the member whose data is being read, to name it if the stream breaks
    try:
        yield from _iter_tar(s, stream_member, verify_checksums, reading)
    except ArchiveDamaged as exc:
        if exc.member is None and reading:
            exc.member = reading[0]
        raise


def _iter_tar(
    s: _ByteStream, stream_member: Callable[[str], bool] | None, verify_checksums: bool, reading: list[str]
) -> Iterator[tuple[str, int, bytes | _Bounded]]:
    first = True
    long_name: str | None = None
    pax: dict[str, str] = {}
    member_offset: int | None = None
    while True:
        offset = s.offset
        header = s.read(_BLOCK)
        if len(header) < _BLOCK:
            if not header and not first and member_offset is None:
                return  # ended on a member boundary without the end-of-archive blocks; tar accepts that
            if first:
                raise NotATar("no tar header (the data is shorter than 512 bytes)")
            raise ArchiveDamaged(
                f"archive truncated: expected a 512-byte tar header at byte {offset}, got {len(header)} bytes",
                offset=offset,
            )
        if header == _ZERO_BLOCK:
            return
        size = _header_size(header)
        if (verify_checksums or first or header[257:262] != b"ustar" or size < 0) and not _checksum_ok(header):
            if first:
                raise NotATar("the first 512 bytes are not a tar header (checksum does not match)")
            raise ArchiveDamaged(
                f"corrupt tar header at byte {offset}: checksum does not match (expected a ustar/GNU/pax header)",
                offset=offset,
            )
        if size < 0:
            raise ArchiveDamaged(f"corrupt tar header at byte {offset}: unreadable size field", offset=offset)
        first = False
        if member_offset is None:
            member_offset = offset
        typeflag = header[156:157]
        if typeflag in (b"L", b"x", b"X", b"g"):
            data = s.read(size)
            if len(data) < size:
                raise ArchiveDamaged(
                    f"archive truncated: expected {size} bytes of extended header at byte {offset + _BLOCK}",
                    offset=offset,
                )
            s.skip(-size % _BLOCK)
            if typeflag == b"L":
                long_name = data.rstrip(b"\x00").decode("utf-8", "surrogateescape")
            elif typeflag != b"g":
                pax = _parse_pax(data)
            else:
                member_offset = None  # global headers belong to no member
            continue
        name = long_name or pax.get("path") or _header_name(header)
        if "size" in pax:
            if not (pax["size"].isascii() and pax["size"].isdigit()):
                raise ArchiveDamaged(
                    f"corrupt pax header at byte {member_offset}: size {pax['size']!r} is not a byte count",
                    offset=member_offset,
                )
            size = int(pax["size"])
        start, long_name, pax, member_offset = member_offset, None, {}, None
        reading[:] = [name]
        padding = -size % _BLOCK
        if typeflag not in _REGULAR:  # directories, links, devices: nothing to read
            if s.skip(size + padding) < size:
                raise _truncated_member(name, start, size)
            reading.clear()
            continue
        if stream_member is not None and stream_member(name):
            reader = _Bounded(s, size)
            end = s.offset + size
            yield name, start, reader
            left = end - s.offset
            if s.skip(left + padding) < left:
                raise _truncated_member(name, start, size)
            reading.clear()
            continue
        data = s.read(size)
        if len(data) < size:
            raise _truncated_member(name, start, size)
        if padding:
            s.skip(padding)
        reading.clear()
        yield name, start, data


def _truncated_member(name: str, offset: int, size: int) -> ArchiveDamaged:
    return ArchiveDamaged(
        f"archive truncated: expected {size} bytes of member {name!r} (header at byte {offset})",
        offset=offset,
        member=name,
    )


def _checksum_ok(header: bytes) -> bool:
    field = header[148:156]
    try:
        stored = int(field.strip(b" \x00") or b"0", 8)
    except ValueError:
        return False
    # the checksum counts its own field as 8 spaces
    return sum(header) - sum(field) + 256 == stored


def _header_size(header: bytes) -> int:
    """The size field (octal, or GNU base-256); -1 when it is not a number."""
    field = header[124:136]
    if field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.strip(b" \x00") or b"0", 8)
    except ValueError:
        return -1


def _header_name(header: bytes) -> str:
    name = header[:100].split(b"\x00", 1)[0]
    if header[257:263] == b"ustar\x00":  # POSIX ustar: a prefix may hold the leading directories
        prefix = header[345:500].split(b"\x00", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def _parse_pax(data: bytes) -> dict[str, str]:
    """Records ``"<len> <key>=<value>\\n"`` of a pax extended header."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            break
        record = data[space + 1 : pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


# ------------------------------------------------------------------ adapter


@register
class OpenWebTextAdapter(Adapter):
    name = "openwebtext"
    version = "1"
    description = "OpenWebText web documents: xz tar chunks, outer tars, or folders of .txt files (streamed)."

    def read(self, paths: Sequence[Path]) -> Iterator[Record | Rejected]:
        for path in require_paths(paths):
            if path.is_dir():
                yield from self._read_dir(path)
            else:
                display = display_path(path)
                check_not_empty(path, display)
                if path.suffix == ".txt":
                    yield from self._read_txt(path, display, subset=path.parent.name or path.stem)
                else:
                    yield from self._read_archive(path, display)

    def _read_dir(self, root: Path) -> Iterator[Record | Rejected]:
        found = 0
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for file_name in sorted(files):
                path = Path(folder) / file_name
                display = display_path(path, root)
                if file_name.endswith((".txt", *_ARCHIVE_SUFFIXES)) and (problem := unfollowable_link(path)):
                    found += 1
                    self.stats["unreadable_files"] += 1
                    yield Rejected(file=display, reason=problem)
                elif file_name.endswith(".txt"):
                    found += 1
                    yield from self._read_txt(path, display, subset=Path(folder).name)
                elif file_name.endswith(_ARCHIVE_SUFFIXES):
                    found += 1
                    check_not_empty(path, display)
                    yield from self._read_archive(path, display)
                else:
                    self.stats["ignored_files"] += 1
        if not found:
            raise InputError(
                "no OpenWebText documents in this directory "
                "(expected .txt documents, urlsf_subsetNN-K_data.xz chunks or .tar archives)",
                file=str(root),
            )

    def _read_txt(self, path: Path, display: str, *, subset: str) -> Iterator[Record | Rejected]:
        self.stats["files"] += 1
        data = path.read_bytes()
        item = self._document(data, path.stem, display, offset=None, subset=subset)
        if not isinstance(item, Rejected):
            self.stats["documents"] += 1
            self.stats["document_bytes"] += len(data)
        yield item

    def _read_archive(self, path: Path, display: str) -> Iterator[Record | Rejected]:
        self.stats["archives"] += 1
        with path.open("rb") as raw:
            magic = raw.read(len(XZ_MAGIC))
            raw.seek(0)
            chunks = prefetch(xz_chunks(raw)) if magic == XZ_MAGIC else file_chunks(raw)
            members = iter_tar(chunks, stream_member=_is_chunk, verify_checksums=magic != XZ_MAGIC)
            try:
                yield from self._read_members(members, display, subset=_archive_stem(path.name))
            except NotATar as exc:
                raise InputError(
                    f"not an OpenWebText archive: {exc}; expected an xz-compressed tar of NNNNNNN-<md5>.txt "
                    "documents (urlsf_subsetNN-K_data.xz) or a tar of such chunks",
                    file=display,
                ) from None
            except ArchiveDamaged as exc:
                yield _damage(exc, display)
            finally:  # stop the decompression thread before the file closes, even if the reader stopped early
                members.close()
                chunks.close()

    def _read_members(
        self, members: Iterator[tuple[str, int, bytes | _Bounded]], archive: str, *, subset: str
    ) -> Iterator[Record | Rejected]:
        documents = document_bytes = 0  # plain ints in the loop, added to the stats at the end
        try:
            for name, offset, data in members:
                where = f"{archive}!{name}"
                base = name.rsplit("/", 1)[-1]
                if isinstance(data, _Bounded):  # a chunk inside an outer tar
                    self.stats["archives"] += 1
                    nested_chunks = prefetch(xz_chunks(data))
                    nested = iter_tar(nested_chunks, verify_checksums=False)
                    try:
                        yield from self._read_members(nested, where, subset=_archive_stem(base))
                    except NotATar as exc:
                        yield Rejected(file=where, record=name, reason=f"not an xz-compressed tar of documents ({exc})")
                    except ArchiveDamaged as exc:
                        yield _damage(exc, where)
                    finally:
                        nested.close()
                        nested_chunks.close()
                elif base.endswith(".txt"):
                    item = self._document(data, base[:-4], where, offset=offset, subset=subset)
                    if not isinstance(item, Rejected):
                        documents += 1
                        document_bytes += len(data)
                    yield item
                else:
                    self.stats["ignored_members"] += 1
        finally:
            self.stats["documents"] += documents
            self.stats["document_bytes"] += document_bytes

    def _document(self, data: bytes, stem: str, where: str, *, offset: int | None, subset: str) -> Record | Rejected:
        try:
            text = data.decode("utf-8").removeprefix(BOM)
        except UnicodeDecodeError as exc:
            return Rejected(
                file=where,
                record=stem,
                reason=f"invalid UTF-8 at byte {exc.start} of the document (expected UTF-8 text)",
                raw=data[:200].decode("utf-8", "replace"),
            )
        split = document_split(stem)
        try:
            record_id = make_id(self.name, split, stem)
        except SchemaError as exc:
            return Rejected(file=where, record=stem, reason=f"bad document name: {exc}")
        return {
            "id": record_id,
            "source": self.name,
            "split": split,
            "context": {"subset": subset, "split_assigned": "hash"},
            "turns": [turn("document", text)],
            "labels": [],
            "provenance": provenance(where, adapter=self.name, adapter_version=self.version, offset=offset),
        }


def _is_chunk(name: str) -> bool:
    return name.endswith(".xz")


def _archive_stem(name: str) -> str:
    for suffix in (".tar.xz", ".xz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _damage(exc: ArchiveDamaged, archive: str) -> Rejected:
    where = f" in member {exc.member!r}" if exc.member else ""
    return Rejected(
        file=archive,
        record=exc.member,
        reason=f"{exc.reason} (stream broken at byte {exc.offset} of the decompressed tar{where})",
    )
