"""JSON lines: every record appended to a file, one ``msgspec.json.encode(LLMRecord)`` per line.

For shipping with any log agent (Vector, Fluent Bit, Filebeat, the OpenTelemetry Collector's
``filelog`` receiver). Each batch is encoded into one reused ``bytearray`` with
``Encoder.encode_into`` and written with a single ``write`` in the sink's own thread, so neither the
event loop nor its default executor waits on the disk. Rotation is by size, as
``logging.handlers.RotatingFileHandler`` does: before a batch would take the file past
``max_bytes``, ``path`` becomes ``path.1`` (``path.1`` becomes ``path.2``..., at most
``backup_count`` kept) and a new file is started, so a line is never split across files.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

import msgspec

from llm_obs_middleware.errors import PermanentExportError
from llm_obs_middleware.exporters.pipeline.sink_thread import SinkThread

if TYPE_CHECKING:
    from llm_obs_middleware.config.settings import JSONLConfig
    from llm_obs_middleware.records.schema import LLMRecord

__all__ = ["JSONLSink"]

_NEWLINE: Final = b"\n"
_INITIAL_BUFFER: Final = 64 * 1024


class JSONLSink:
    """Appends records to a JSON-lines file with size-based rotation; implements :class:`~.base.Sink`.

    Args:
        config: the path, the rotation size and how many rotated files to keep.
    """

    name = "jsonl"

    def __init__(self, config: JSONLConfig) -> None:
        self.path = Path(config.path)
        self.max_bytes = config.max_bytes
        self.backup_count = config.backup_count
        self._encoder = msgspec.json.Encoder()
        self._buffer = bytearray(_INITIAL_BUFFER)
        self._file: IO[bytes] | None = None
        self._size = 0
        self._lock = threading.Lock()
        self._thread = SinkThread("llm-obs-jsonl")

    async def start(self) -> None:
        """Open (or create) the file, off the event loop."""
        await self._thread.run(self._open_locked)

    async def export(self, records: Sequence[LLMRecord]) -> None:
        """Append ``records`` (in the sink's own thread).

        Raises:
            PermanentExportError: a record cannot be encoded (nothing of the batch was written).
            OSError: the file cannot be written (the disk is full...): the pipeline retries.
        """
        if not records:
            return
        try:
            await self._thread.run(self.write, records)
        except (msgspec.EncodeError, UnicodeError) as exc:
            raise PermanentExportError(f"encoding a record failed: {type(exc).__name__}") from exc

    async def close(self) -> None:
        try:
            await self._thread.run(self.close_sync)
        finally:
            self._thread.stop()

    def write(self, records: Sequence[LLMRecord]) -> None:
        """Encode ``records`` into the reused buffer and append them with one write (blocking)."""
        with self._lock:
            buffer, encode_into = self._buffer, self._encoder.encode_into
            end = 0
            for record in records:
                encode_into(record, buffer, end)  # writes at `end`, leaves the buffer that long
                buffer.extend(_NEWLINE)
                end = len(buffer)
            file = self._open_locked()
            if self._size and self._size + end > self.max_bytes:
                self._rotate()
                file = self._open_locked()
            file.write(memoryview(buffer)[:end])
            file.flush()
            self._size += end

    def close_sync(self) -> None:
        """Flush the file to disk and close it (a later write reopens it)."""
        with self._lock:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None

    def _open_locked(self) -> IO[bytes]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")  # kept open across batches, closed in close_sync
            self._size = self._file.tell()
        return self._file

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        if self.backup_count == 0:
            self.path.write_bytes(b"")
            return
        for index in range(self.backup_count - 1, 0, -1):
            older = self._backup(index)
            if older.exists():
                older.replace(self._backup(index + 1))
        self.path.replace(self._backup(1))

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")
