"""A retry job's records: its settings, its progress and the errors of the job API."""

from __future__ import annotations

from typing import Any

import attrs

from ..errors import ValidationError
from ..validation import validate_id


class JobError(Exception):
    """A job cannot be created, fed or read as asked (unknown job, settings that differ from
    the stored ones, input after sealing, two producers at once)."""


#: What the operator is told of a job whose data Redis lost.
LOST_MESSAGE = "lost: Redis lost this job's data (check persistence: AOF, noeviction)"


class JobLostError(JobError):
    """Redis lost some or all of this job's keys: its results cannot be trusted to be
    complete. Submit it again: the new job reads each ID before any POST, so nothing retried
    before the loss is retried twice."""

    def __init__(self, job_id: str, detail: str = "") -> None:
        self.job_id = job_id
        self.detail = detail
        super().__init__(f"job {job_id}: {LOST_MESSAGE}" + (f"; {detail}" if detail else ""))


class JobCorruptError(JobError):
    """The job's settings in Redis do not parse (edited by hand, or written by something
    else): no worker runs it, and each records a refusal. ``job cancel`` still stops it."""

    def __init__(self, job_id: str, detail: str) -> None:
        self.job_id = job_id
        self.detail = detail
        super().__init__(
            f"job {job_id}: its record in Redis is corrupt ({detail}); no worker will run it:"
            f" cancel it (postman-async job cancel {job_id}) and submit it again"
        )


@attrs.frozen
class JobSettings:
    """What every worker needs to run a job's chunks; stored in the job's ``meta``.

    ``campaign_id`` names the campaign; each worker sends with its *own* key and base URL for
    it (:class:`~postman_async.jobs.config.WorkerConfig`). ``base_url``, if given, only pins
    the job: a worker configured with another base URL refuses it; it never chooses where a
    request goes. ``window``: a POST goes out within this many seconds of its intent, or not
    at all. ``http_timeout``: the client's request timeout; a crashed holder's POST is
    settled after ``window + http_timeout``. ``lease_ttl``: how long a silent holder keeps a
    chunk. ``read_first_ms``: set on a job submitted again after Redis lost it: each ID is
    read before any POST, and an attempt created since then (Redis time, ms) counts as
    retried earlier."""

    campaign_id: str
    base_url: str | None = None
    chunks: int = 64
    rate: float = 10.0
    budget_share: float = 1.0
    window: float = 2.0
    http_timeout: float = 30.0
    lease_ttl: float = 15.0
    read_first_ms: int | None = None

    def __attrs_post_init__(self) -> None:
        validate_id("campaign_id", self.campaign_id)
        if not 1 <= self.chunks <= 4096:
            raise ValidationError("chunks", "must be between 1 and 4096")
        if not self.rate > 0 or not 0 < self.budget_share <= 1:
            raise ValidationError("rate", "rate must be > 0 and budget_share in (0, 1]")
        if not (self.window > 0 and self.http_timeout > 0 and self.lease_ttl > self.window):
            raise ValidationError("lease_ttl", "need window, http_timeout > 0, lease_ttl > window")


@attrs.frozen
class JobProgress:
    """A job's progress, read in O(1) of its size."""

    job_id: str
    distinct: int
    done: int
    duplicates: int
    submitted: int
    calls: int
    counts: dict[str, int]
    chunks: int
    chunks_done: int
    chunks_leased: int
    sealed: bool
    cancelled: bool
    finished: bool
    rate: float
    budget_share: float
    #: seconds from creation to the end (or to now, while it runs)
    elapsed: float = 0.0
    #: worker -> why it refused the job (a campaign or base URL it is not configured for)
    refusals: dict[str, str] = attrs.field(factory=dict)

    @property
    def pending(self) -> int:
        """Distinct IDs without a result yet."""
        return self.distinct - self.done

    @property
    def chunks_pending(self) -> int:
        """Chunks neither done nor held by a worker now."""
        return self.chunks - self.chunks_done - self.chunks_leased

    @property
    def eta_seconds(self) -> float | None:
        """At the campaign's rate times the job's budget share, and the calls per ID so far
        (1 until some are done); None once finished, while cancelling or refused."""
        if self.state in ("finished", "cancelled", "cancelling", "refused"):
            return None
        per_id = self.calls / self.done if self.done and self.calls else 1.0
        return self.pending * per_id / (self.rate * self.budget_share)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready progress (camelCase keys), as ``job status --format json`` prints it."""
        return {
            "jobId": self.job_id,
            "state": self.state,
            "distinct": self.distinct,
            "done": self.done,
            "pending": self.pending,
            "submitted": self.submitted,
            "duplicates": self.duplicates,
            "calls": self.calls,
            "counts": self.counts,
            "chunks": {
                "total": self.chunks,
                "done": self.chunks_done,
                "leased": self.chunks_leased,
                "pending": self.chunks_pending,
            },
            "elapsedSeconds": round(self.elapsed, 1),
            "etaSeconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
            "refusals": self.refusals,
        }

    @property
    def state(self) -> str:
        """``submitting``, ``running``, ``cancelling``, ``finished``, ``cancelled`` or
        ``refused`` (refused by a worker and not worked on by any)."""
        if self.finished:
            return "cancelled" if self.cancelled else "finished"
        if self.cancelled:
            return "cancelling"
        if self.refusals and not self.chunks_leased and not self.calls:
            return "refused"
        return "running" if self.sealed else "submitting"
