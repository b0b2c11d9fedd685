"""The simulator's domain state: campaigns, messages, attempts and batches.

A message's status is never advanced by a background task: each attempt carries its start time
and its outcome, and its status at any moment is computed from the simulator clock. That keeps
the simulator deterministic, cheap with 100,000 messages, and free of tasks to clean up.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

import attrs

from . import server_rules as rules

SINGAPORE = timezone(timedelta(hours=8), "SGT")

#: The documented test-environment numbers and the delivery error each simulates.
TEST_NUMBERS: Mapping[str, tuple[str, str]] = {
    "6511111111": ("delivery_error", "recipient_invalid"),
    "6511112222": ("delivery_error", "recipient_unavailable"),
    "6511113333": ("delivery_error", "content_invalid"),
    "6511114444": ("delivery_error", "routing_error"),
    "6511115555": ("delivery_error", "message_expired"),
    "6511119999": ("delivery_error", "delivery_unknown_error"),
    "6522222222": ("server_error", "server_unknown_error"),
}
#: Delivery errors drawn for the seeded random failure rate (all worth retrying).
RANDOM_FAILURES: tuple[tuple[str, str], ...] = (
    ("delivery_error", "recipient_unavailable"),
    ("delivery_error", "delivery_unknown_error"),
    ("server_error", "server_unknown_error"),
)
DEFAULT_FOOTERS: Mapping[str, str] = {
    "english": "This is an automated SMS from the Singapore Government. Please do not reply.",
    "chinese": "这是新加坡政府发送的自动短信。请勿回复。",
    "malay": "Ini ialah SMS automatik daripada Kerajaan Singapura. Sila jangan balas.",
    "tamil": "இது சிங்கப்பூர் அரசாங்கத்தின் தானியங்கி குறுஞ்செய்தி. பதிலளிக்க வேண்டாம்.",
}
TEST_PREFIX = "This is a test message used for training purposes.\n\n"
_VARIABLE = re.compile(r"{{\s*([A-Za-z0-9_]+)\s*}}")

#: Sim-seconds spent in each status before the next: created, enqueued, sending, sent, telco.
DEFAULT_STEP_DELAYS = (1.0, 0.5, 0.5, 1.0, 2.0)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, SINGAPORE).isoformat(timespec="milliseconds")


@attrs.define
class Campaign:
    """A simulated campaign. ``templates`` maps language -> template body with ``{{vars}}``."""

    id: str
    api_keys: tuple[str, ...]
    templates: Mapping[str, str] = attrs.field(factory=lambda: {"english": "{{body}}"})
    header: str = "Open Government Products"
    footers: Mapping[str, str] = DEFAULT_FOOTERS
    allowed_ips: tuple[str, ...] | None = None
    #: The test environment (reference §1, §2.3): the test prefix on every message, and at
    #: most 20 rows per batch file.
    test_environment: bool = False
    #: Legacy NRIC recipients (reference §6.7): NRIC -> phone number; None: not enabled.
    nric_phones: Mapping[str, str] | None = None
    creator_id: str = "user_00000000-0000-4000-8000-000000000001"

    def __attrs_post_init__(self) -> None:
        if not 1 <= len(self.api_keys) <= 3:
            raise ValueError("a campaign has 1 to 3 API keys")

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.templates)

    def variables(self, language: str) -> frozenset[str]:
        return frozenset(_VARIABLE.findall(self.templates[language]))

    @property
    def creator_email(self) -> str:
        return f"{self.id}@postman.gov.sg"

    def template_body_id(self, language: str) -> str:
        return f"templatebody_{self.id.removeprefix('campaign_')}_{language}"

    def body(self, language: str, values: Mapping[str, str]) -> str:
        return _VARIABLE.sub(lambda m: values.get(m.group(1), ""), self.templates[language])

    def render(self, language: str, values: Mapping[str, str]) -> str:
        body = self.body(language, values)
        footer = self.footers.get(language, DEFAULT_FOOTERS["english"])
        text = f"{self.header}\n\n---\n\n{body}\n\n---\n\n{footer}"
        return TEST_PREFIX + text if self.test_environment else text


@attrs.define
class Attempt:
    """One attempt: when it started (sim epoch seconds) and how it will end."""

    id: str
    started: float
    outcome: str  # SUCCESS, FAILURE, SENT_TO_TELCO (foreign) or SENDING (load test)
    error_type: str | None = None
    error_code: str | None = None

    def timeline(self, delays: tuple[float, ...]) -> list[tuple[str, float]]:
        """(status, since) pairs this attempt passes through, in order."""
        steps = [
            rules.CREATED,
            rules.ENQUEUED,
            rules.SENDING,
            rules.SENT,
            rules.SENT_TO_TELCO,
        ]
        if self.outcome == rules.FAILURE and self.error_type == "server_error":
            steps = steps[:3]  # a server error fails it while sending
        if self.outcome == rules.SENDING:
            steps = steps[:3]  # load test: it stops at the aggregator, pending for good
        out = []
        at = self.started
        for index, status in enumerate(steps):
            out.append((status, at))
            at += delays[index]
        if self.outcome not in (rules.SENT_TO_TELCO, rules.SENDING):
            out.append((self.outcome, at))
        return out

    def status_at(self, now: float, delays: tuple[float, ...]) -> tuple[str, float]:
        current = (rules.CREATED, self.started)
        for status, since in self.timeline(delays):
            if since > now:
                break
            current = (status, since)
        return current

    def reached(self, status: str, now: float, delays: tuple[float, ...]) -> float | None:
        for step, since in self.timeline(delays):
            if step == status and since <= now:
                return since
        return None


@attrs.define
class SimMessage:
    id: str
    campaign_id: str
    recipient: str
    language: str
    values: dict[str, str]
    full_message: str
    created: float
    attempts: list[Attempt] = attrs.field(factory=list)  # oldest first
    batch_id: str | None = None
    join_id: int = 0
    #: how each attempt ends, in order (the last one repeats); empty: drawn per attempt
    planned: list[tuple[str, str | None, str | None]] = attrs.field(factory=list)

    @property
    def sort_key(self) -> tuple[str, str]:
        return (iso(self.created), self.id)


@attrs.define
class SimBatch:
    id: str
    campaign_id: str
    original_file_name: str
    created: float
    enqueued_at: float
    message_ids: list[str] = attrs.field(factory=list)
    forced_status: str | None = None  # set by a failed retry or by a test
    updated: float = 0.0

    def status_at(self, now: float) -> str:
        if self.forced_status is not None:
            return self.forced_status
        if now < self.enqueued_at:
            return rules.BATCH_ENQUEUING
        return rules.BATCH_ENQUEUED


def draw_outcome(
    recipient: str, rng: random.Random, failure_rate: float
) -> tuple[str, str | None, str | None]:
    """How an attempt ends: documented test numbers fail with their error; otherwise a seeded
    random failure; otherwise foreign numbers stop at sent_to_telco and the rest succeed."""
    if recipient in TEST_NUMBERS:
        error_type, code = TEST_NUMBERS[recipient]
        return rules.FAILURE, error_type, code
    if failure_rate > 0 and rng.random() < failure_rate:
        error_type, code = rng.choice(RANDOM_FAILURES)
        return rules.FAILURE, error_type, code
    if rules.is_foreign(recipient):
        return rules.SENT_TO_TELCO, None, None
    return rules.SUCCESS, None, None


#: How every attempt ends in load-test mode: at the aggregator, ``sending`` for good.
PARKED: tuple[str, str | None, str | None] = (rules.SENDING, None, None)


def next_attempt(
    message: SimMessage,
    started: float,
    outcome: tuple[str, str | None, str | None] | None = None,
    *,
    retry: bool,
    seed: int,
    failure_rate: float,
    retry_failure_rate: float | None,
    load_test: bool = False,
) -> Attempt:
    """The message's next attempt, started at ``started``: ``outcome`` if given, else the
    message's planned one, else drawn (seeded per message and attempt). A retry of a failure
    fails again with ``retry_failure_rate``. In load-test mode an attempt with no outcome
    given stops at the aggregator (:data:`PARKED`)."""
    index = len(message.attempts)
    rng = random.Random(f"{seed}:{message.id}:{index}")
    if outcome is None and message.planned:
        outcome = message.planned[min(index, len(message.planned) - 1)]
    if outcome is None and load_test:
        outcome = PARKED
    if outcome is None and retry and retry_failure_rate is not None:
        previous = message.attempts[-1]
        if rng.random() < retry_failure_rate and previous.error_code is not None:
            outcome = (rules.FAILURE, previous.error_type, previous.error_code)
        elif message.recipient not in TEST_NUMBERS:
            outcome = draw_outcome(message.recipient, rng, 0.0)
    status, error_type, code = outcome or draw_outcome(message.recipient, rng, failure_rate)
    return Attempt(
        id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        started=started,
        outcome=status,
        error_type=error_type,
        error_code=code,
    )
