"""The simulator's record of every POST it processed, whatever it answered.

Safety checks assert on these records, keyed by the action the caller intended, so that a
broken client shows up: a send POSTed twice is two sends of the same (recipient, values), not
two messages with one send each; a retry POSTed twice is counted even when the second one was
refused. "Processed" means the POST got past authentication and the rate limiter and reached
its handler; a 429 or a connection dropped before processing is not counted (nothing was done).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

SendKey = tuple[str, str]
BatchKey = str


def send_key(recipient: str, values: Mapping[str, Any]) -> SendKey:
    """The intended action of a send: the recipient and its values (canonical JSON)."""
    return recipient, json.dumps(dict(values), sort_keys=True, ensure_ascii=False)


def batch_key(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> BatchKey:
    """The intended action of a batch upload: its rows' (recipient, values), in file order."""
    content = [[recipient, dict(values)] for recipient, values in rows]
    return json.dumps(content, sort_keys=True, ensure_ascii=False)


@attrs.define
class PostLedger:
    """Counters of processed POSTs per intended action (all answers, and the accepted ones)."""

    #: send POSTs (single sends and batch rows) per (recipient, values)
    sends: Counter[SendKey] = attrs.field(factory=Counter)
    #: single-retry POSTs per message id, whatever the answer (201 or 400)
    retries: Counter[str] = attrs.field(factory=Counter)
    #: single-retry POSTs that were accepted (201)
    accepted_retries: Counter[str] = attrs.field(factory=Counter)
    #: batch-retry POSTs per batch id, whatever the answer
    batch_retries: Counter[str] = attrs.field(factory=Counter)
    #: batch-retry POSTs that were accepted (201)
    accepted_batch_retries: Counter[str] = attrs.field(factory=Counter)
    #: attempts added to each message by accepted batch retries
    batch_retried_messages: Counter[str] = attrs.field(factory=Counter)
    #: batches flipped to ``messages_enqueuing_failed`` by a batch retry that found a message
    #: still ``created`` (``unresolved_batch_messages``)
    flipped_batches: Counter[str] = attrs.field(factory=Counter)
    #: batch-upload POSTs that created a batch, per file content (:func:`batch_key`)
    batch_uploads: Counter[BatchKey] = attrs.field(factory=Counter)

    def record_send(self, recipient: str, values: Mapping[str, Any]) -> None:
        self.sends[send_key(recipient, values)] += 1

    def record_batch_upload(self, rows: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        self.batch_uploads[batch_key(rows)] += 1

    def record_retry(self, message_id: str, accepted: bool) -> None:
        self.retries[message_id] += 1
        if accepted:
            self.accepted_retries[message_id] += 1

    def record_batch_retry(self, batch_id: str, code: str) -> None:
        self.batch_retries[batch_id] += 1
        if code == "ok":
            self.accepted_batch_retries[batch_id] += 1
        elif code == "unresolved_batch_messages":
            self.flipped_batches[batch_id] += 1

    def to_dict(self) -> dict[str, Any]:
        """JSON form, for ``/__simulator__/stats?posts=1``."""
        return {
            "sends": [
                {"recipient": r, "values": json.loads(v), "posts": n}
                for (r, v), n in self.sends.items()
            ],
            "retries": dict(self.retries),
            "acceptedRetries": dict(self.accepted_retries),
            "batchRetries": dict(self.batch_retries),
            "acceptedBatchRetries": dict(self.accepted_batch_retries),
            "batchRetriedMessages": dict(self.batch_retried_messages),
            "flippedBatches": dict(self.flipped_batches),
            "batchUploads": [
                {"rows": json.loads(key), "posts": n} for key, n in self.batch_uploads.items()
            ],
        }
