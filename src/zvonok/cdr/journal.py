"""The CDR writer's journal: its work on local disk before the database sees it.

How it works: every batch the writer is about to commit is first appended to ``<data_dir>/cdr-journal.jsonl``
(one JSON line per item, with a sequence number) and fsync'd once per batch — not per record: the
writer's whole cost per CDR is a fraction of a millisecond, a disk flush per call would dwarf it. Once
the database has committed everything journaled, the file is truncated. While the database is
unreachable the batches pile up here (and in memory) and are written when it is back; after a crash,
:meth:`CdrJournal.read` gives what a restart must replay. Replay is idempotent: ``cdrs.call_id`` is
unique and the writer skips a call that already has its CDR.

A torn last line (the crash came in the middle of a write, before its fsync returned) is skipped: that
batch was never acknowledged to anyone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILE_NAME = "cdr-journal.jsonl"


class CdrJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # 0600: CDRs name who called whom
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "ab")
        records = self.read()
        self.seq = records[-1]["seq"] if records else 0

    def read(self) -> list[dict[str, Any]]:
        """The journaled items, oldest first."""
        records: list[dict[str, Any]] = []
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    record = json.loads(line)
                except ValueError:
                    log.warning("CDR journal %s: line %d unreadable (torn by a crash?), skipped", self.path, number)
                    continue
                if isinstance(record, dict) and isinstance(record.get("seq"), int):
                    records.append(record)
        return records

    @property
    def empty(self) -> bool:
        return os.fstat(self._file.fileno()).st_size == 0

    async def append(self, records: list[dict[str, Any]]) -> None:
        """Append ``records`` (each gets the next ``seq``) and wait until they are on disk."""
        lines = []
        for record in records:
            self.seq += 1
            lines.append(json.dumps({"seq": self.seq, **record}, separators=(",", ":"), check_circular=False).encode())
        self._file.write(b"\n".join(lines) + b"\n")
        self._file.flush()
        # the fsync off the event loop: a slow disk must not stall SIP
        await asyncio.get_running_loop().run_in_executor(None, os.fsync, self._file.fileno())

    def clear(self) -> None:
        """Everything journaled is committed to the database: start the file afresh."""
        self._file.truncate(0)

    def close(self) -> None:
        self._file.close()
