"""The disk spool: where a sink that stays down parks its records until it takes them again.

One append-only JSON-lines file per sink (``<spool_dir>/<sink>.jsonl``) plus the byte offset up to
which its records were exported (``<sink>.offset``, written after each exported batch). Appends go
to the end while replay reads from the offset, so the file is both queue and log; once everything
is exported it is emptied. The bytes not yet exported are bounded (``max_bytes``): what does not fit
is refused and the caller counts it as dropped. Records spooled before a restart are replayed by the
next process. A replay cut short (a crash between export and offset write) sends at most one batch
again; the log stores upsert and OTLP spans keep their ids, so that batch is not stored twice.

A batch a sink is still exporting after ``queue.spool_after_s`` is copied to ``<sink>.held.jsonl``
(:meth:`Spool.hold`) and that file removed once the export ended (:meth:`Spool.release`): after a
crash, the next process moves what it finds there to the spool, so a slow sink loses nothing to
``kill -9`` either (at worst that one batch is exported twice).

Every method blocks on the disk: the pipeline calls them in a worker thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import msgspec

from llm_obs_middleware.records.schema import LLMRecord

__all__ = ["Spool"]

logger = logging.getLogger("llm_obs_middleware.export")

_decode = msgspec.json.Decoder(LLMRecord).decode


class Spool:
    """A bounded on-disk FIFO of one sink's records.

    Args:
        directory: where the files live (created when needed).
        name: the sink's name (the file's stem).
        max_bytes: most bytes of unexported records kept.
    """

    def __init__(self, directory: str | os.PathLike[str], name: str, max_bytes: int) -> None:
        self.path = Path(directory) / f"{name}.jsonl"
        self._offset_path = self.path.with_suffix(".offset")
        self._held_path = self.path.with_suffix(".held.jsonl")
        self.max_bytes = max_bytes
        self._encoder = msgspec.json.Encoder()
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._offset = 0
        self._pending_offset = 0
        self._size = 0
        self._loaded = False

    @property
    def pending_bytes(self) -> int:
        """Bytes of records not yet exported (0: nothing to replay)."""
        with self._lock:
            self._load()
            return self._size - self._offset

    def append(self, records: Sequence[LLMRecord]) -> int:
        """Append as many of ``records`` as fit; return how many did not (the caller drops them)."""
        with self._lock:
            self._load()
            end, kept = self._encode(records, self.max_bytes - (self._size - self._offset))
            self._append_locked(memoryview(self._buffer)[:end])
            return len(records) - kept

    def hold(self, records: Sequence[LLMRecord]) -> None:
        """Keep a copy of a batch being exported until :meth:`release`; a crash meanwhile spools it."""
        with self._lock:
            self._load()  # first: a copy a crashed process left must reach the spool before this one replaces it
            end, _ = self._encode(records, self.max_bytes)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._held_path.with_suffix(".tmp")
            with open(tmp, "wb") as file:
                file.write(memoryview(self._buffer)[:end])
                file.flush()
                os.fsync(file.fileno())
            tmp.replace(self._held_path)

    def release(self) -> None:
        """The batch of the last :meth:`hold` is exported (or spooled): forget the copy."""
        with self._lock:
            self._held_path.unlink(missing_ok=True)

    def _encode(self, records: Sequence[LLMRecord], room: int) -> tuple[int, int]:
        """JSON lines of ``records`` into the reused buffer, as many as fit in ``room`` bytes: (bytes, records)."""
        buffer, encode_into = self._buffer, self._encoder.encode_into
        end, kept = 0, 0
        for record in records:
            encode_into(record, buffer, end)
            buffer.extend(b"\n")
            if len(buffer) > room:
                del buffer[end:]
                break
            end, kept = len(buffer), kept + 1
        return end, kept

    def _append_locked(self, data: bytes | memoryview) -> None:
        if not data:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        self._size += len(data)

    def peek(self, count: int) -> list[LLMRecord]:
        """The next ``count`` records at most, from the oldest; :meth:`commit` once they are exported."""
        with self._lock:
            self._load()
            if self._size <= self._offset:
                return []
            records: list[LLMRecord] = []
            with open(self.path, "rb") as file:
                file.seek(self._offset)
                position = self._offset
                for line in file:
                    position += len(line)
                    try:
                        records.append(_decode(line))
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        logger.error("spool %s: skipping an unreadable record at byte %d", self.path, position)
                    if len(records) >= count:
                        break
            self._pending_offset = position
            return records

    def commit(self) -> None:
        """Mark the records of the last :meth:`peek` as exported."""
        with self._lock:
            self._offset = max(self._offset, self._pending_offset)
            if self._offset >= self._size:
                # All exported: start both files again so the spool never grows without bound.
                self.path.unlink(missing_ok=True)
                self._offset_path.unlink(missing_ok=True)
                self._offset = self._pending_offset = self._size = 0
            else:
                tmp = self._offset_path.with_suffix(".offset.tmp")
                tmp.write_text(str(self._offset))
                tmp.replace(self._offset_path)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        try:
            with open(self.path, "r+b") as file:
                data_end = file.seek(0, os.SEEK_END)
                # A crash mid-append can leave a torn last line: cut it so later appends start clean.
                tail = 0
                while data_end > 0:
                    file.seek(max(0, data_end - 4096))
                    chunk = file.read(data_end - file.tell())
                    newline = chunk.rfind(b"\n")
                    if newline >= 0:
                        tail = data_end - len(chunk) + newline + 1
                        break
                    data_end -= len(chunk)
                if tail != file.seek(0, os.SEEK_END):
                    logger.error("spool %s: dropping a torn last record", self.path)
                    file.truncate(tail)
                self._size = tail
        except FileNotFoundError:
            self._size = 0
        try:
            self._offset = min(int(self._offset_path.read_text() or 0), self._size)
        except (FileNotFoundError, ValueError):
            self._offset = 0
        self._pending_offset = self._offset
        try:
            held = self._held_path.read_bytes()
        except FileNotFoundError:
            return
        # The previous process died while exporting this batch: it may not have been written.
        held = held[: held.rfind(b"\n") + 1]
        logger.warning("spool %s: re-queueing %d records whose export was cut short", self.path, held.count(b"\n"))
        self._append_locked(held)
        self._held_path.unlink()
