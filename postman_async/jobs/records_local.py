"""What a host remembers of the jobs it submitted or ran, outside Redis.

A Redis that loses everything (a restart without AOF, a ``FLUSHALL``) also loses the job's
tombstone and remnants: nothing in Redis can then tell a lost job from one never created.
So ``job submit`` and every worker keep a small record per unfinished job on their own disk
(``<cache>/postman-async/jobs/<redis host:port/db>/<job id>.json``: the job's marker and
creation time, nothing else; folder 0700, files 0600), and delete it when the job finishes.
A job that Redis does not know but a record names was lost: ``job status`` says so, a
restarted worker reports it, and submitting it again reads each ID before any POST. A
record that cannot be read or written is ignored (logged), never fatal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import attrs

from .._files import open_private
from .._state_file import state_dir

logger = logging.getLogger("postman_async")


@attrs.frozen
class JobRecord:
    """A job this host submitted or ran: its marker and creation time (Redis ms)."""

    job_id: str
    marker: str
    created_ms: int


class LocalJobRecords:
    """The records of one Redis (by host, port and database; never its password)."""

    def __init__(self, redis: Any, root: Path | None = None) -> None:
        kwargs = getattr(getattr(redis, "connection_pool", None), "connection_kwargs", {})
        where = f"{kwargs.get('host', 'redis')}_{kwargs.get('port', 6379)}_{kwargs.get('db', 0)}"
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in where)
        self.folder = (root or state_dir() / "jobs") / safe

    def _path(self, job_id: str) -> Path:
        return self.folder / (job_id.replace("/", "_") + ".json")

    def remember(self, job_id: str, marker: str, created_ms: int) -> None:
        """Record an unfinished job (idempotent)."""
        if not marker or self.get(job_id) == JobRecord(job_id, marker, created_ms):
            return
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open_private(self._path(job_id)) as handle:
                json.dump({"marker": marker, "created_ms": created_ms}, handle)
        except OSError as exc:
            logger.warning("cannot record job %s locally (%s)", job_id, exc.strerror)

    def forget(self, job_id: str) -> None:
        """The job finished (or was submitted anew): drop its record."""
        with contextlib.suppress(OSError):
            os.unlink(self._path(job_id))

    def get(self, job_id: str) -> JobRecord | None:
        """The record of ``job_id``, if this host has one."""
        try:
            data = json.loads(self._path(job_id).read_text(encoding="utf-8"))
            return JobRecord(job_id, str(data["marker"]), int(data["created_ms"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def all(self) -> list[JobRecord]:
        """Every record of this Redis on this host."""
        try:
            names = sorted(p.stem for p in self.folder.glob("*.json"))
        except OSError:
            return []
        return [r for r in map(self.get, names) if r is not None]
