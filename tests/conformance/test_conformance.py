"""Conformance: one row per rule sentence of the reference (section cited), run against the
simulator over HTTP (the server's reading, ``testing/server_rules.py``) and against the SDK's
rule table (``postman_async.rules`` and the planner). The two readings are written apart and
import nothing of each other: a row where they disagree is a misreading on one side.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp
import attrs
import pytest

from postman_async import BatchStatus, MessageStatus, planner, rules
from postman_async.reports import MessageState
from postman_async.rules import AttemptCap
from postman_async.testing import PostmanSimulator
from postman_async.testing.state import Attempt, SimBatch, SimMessage

# Seconds into an attempt at which the default lifecycle (1, .5, .5, 1, 2 s) shows a status.
AGE = {"created": 0.5, "enqueued": 1.2, "sending": 1.7, "sent": 2.5, "sent_to_telco": 4.0}
ERROR = ("delivery_error", "recipient_unavailable")


@attrs.frozen
class Msg:
    """A message as a row sets it up: its status now, its attempts, and its recipient."""

    status: str
    attempts: int = 1
    recipient: str = "6591234567"


@attrs.frozen
class MessageRow:
    section: str
    rule: str
    message: Msg | None  # None: no such message
    expected: str | None  # the error code, or None for 201
    batch_status: str | None = None  # the message belongs to a batch in this status
    cap: int = 3


@attrs.frozen
class BatchRow:
    section: str
    rule: str
    messages: Sequence[Msg] | None  # None: no such batch
    expected: str | None
    batch_status: str = "messages_enqueued"
    cap: int = 3


NOT_IN_FAILURE = "message_not_found_or_retry_message_not_in_failure_status"
TOO_MANY = "too_many_message_attempts_error"
NOT_RETRYABLE = "batch_not_found_or_is_not_retryable"
UNRESOLVED = "unresolved_batch_messages"
NOTHING = "no_failed_batch_messages_to_retry"

MESSAGE_ROWS = [
    MessageRow("§5 single", "allowed when latestStatus == failure", Msg("failure"), None),
    MessageRow("§5 single", "not allowed from success", Msg("success"), NOT_IN_FAILURE),
    MessageRow("§5 single", "not allowed while created", Msg("created"), NOT_IN_FAILURE),
    MessageRow("§5 single", "not allowed while sending", Msg("sending"), NOT_IN_FAILURE),
    MessageRow(
        "§3.3", "sent_to_telco (foreign, final) is not failure",
        Msg("sent_to_telco", recipient="447911123456"), NOT_IN_FAILURE,
    ),
    MessageRow("§4.3", "not found is 400 with the not-in-failure code", None, NOT_IN_FAILURE),
    MessageRow("§5, §6.1", "cap 3: a third attempt is allowed", Msg("failure", 2), None),
    MessageRow("§5, §6.1", "cap 3: no fourth attempt", Msg("failure", 3), TOO_MANY),
    MessageRow("§5, §6.1", "cap 4: a fourth attempt is allowed", Msg("failure", 3), None, cap=4),
    MessageRow("§5, §6.1", "cap 4: no fifth attempt", Msg("failure", 4), TOO_MANY, cap=4),
    MessageRow(
        "§5 single", "a batch message while the batch is messages_enqueued",
        Msg("failure"), None, batch_status="messages_enqueued",
    ),
    MessageRow(
        "§5 single", "a batch message while the batch is messages_enqueuing_failed",
        Msg("failure"), None, batch_status="messages_enqueuing_failed",
    ),
    MessageRow(
        "§5 single, §6.5", "a batch message while the batch is still messages_enqueuing",
        Msg("failure"), NOT_IN_FAILURE, batch_status="messages_enqueuing",
    ),
]  # fmt: skip

RESOLVED_MIX = [Msg("sending"), Msg("sent"), Msg("sent_to_telco"), Msg("success"), Msg("failure")]
BATCH_ROWS = [
    BatchRow("§5 batch", "retries the failed messages", [Msg("success"), Msg("failure")], None),
    BatchRow(
        "§5 batch", "sending, sent, sent_to_telco are resolved (only created is not)",
        RESOLVED_MIX, None,
    ),
    BatchRow(
        "§5 batch", "a message still created fails it (and flips the batch)",
        [Msg("created"), Msg("failure")], UNRESOLVED,
    ),
    BatchRow(
        "§5 batch", "allowed from messages_enqueuing_failed",
        [Msg("failure")], None, batch_status="messages_enqueuing_failed",
    ),
    BatchRow(
        "§5 batch, §6.5", "not while the batch is still messages_enqueuing",
        [Msg("failure")], NOT_RETRYABLE, batch_status="messages_enqueuing",
    ),
    BatchRow("§4.3", "a batch that does not exist", None, NOT_RETRYABLE),
    BatchRow("§5 batch", "fails when all messages succeeded", [Msg("success")] * 2, NOTHING),
    BatchRow(
        "§5 batch, §6.1", "cap 3: fails when every failure used its 3 attempts",
        [Msg("failure", 3), Msg("success")], NOTHING,
    ),
    BatchRow(
        "§5 batch, §6.1", "cap 4: a failure at 3 attempts is retried",
        [Msg("failure", 3), Msg("success")], None, cap=4,
    ),
    BatchRow(
        "§5 batch, §6.1", "cap 4: fails when every failure used its 4 attempts",
        [Msg("failure", 4)], NOTHING, cap=4,
    ),
]  # fmt: skip


def _place(sim: PostmanSimulator, message: SimMessage, spec: Msg) -> None:
    """Give a simulated message ``spec``'s status and attempt count."""
    final = spec.status in ("success", "failure")
    age = 100.0 if final else AGE[spec.status]
    outcome = ("failure", *ERROR) if spec.status == "failure" else ("success", None, None)
    now = sim.now()
    message.attempts = [
        Attempt(f"attempt_{i}", now - age - (spec.attempts - 1 - i) * 100, *outcome)
        for i in range(spec.attempts)
    ]
    if spec.recipient != message.recipient:
        message.recipient = spec.recipient
        if spec.status == "sent_to_telco":  # foreign: it stops there
            message.attempts[-1] = attrs.evolve(message.attempts[-1], outcome="sent_to_telco")


def _batch(sim: PostmanSimulator, specs: Sequence[Msg], status: str) -> str:
    messages = [sim.create_message(spec.recipient) for spec in specs]
    batch_id = f"batch_{len(sim.batches)}"
    batch = SimBatch(batch_id, sim.campaign_id, "rows.csv", sim.now(), sim.now())
    sim.batches[batch_id] = batch
    for message, spec in zip(messages, specs, strict=True):
        message.batch_id = batch_id
        batch.message_ids.append(message.id)
        _place(sim, message, spec)
    sim.set_batch_status(batch_id, status)
    return batch_id


async def _post(sim: PostmanSimulator, path: str) -> str | None:
    url = f"{sim.base_url}/campaigns/{sim.campaign_id}{path}"
    headers = {"Authorization": f"Bearer {sim.api_key}"}
    async with aiohttp.ClientSession() as http, http.post(url, headers=headers) as resp:
        if resp.status == 201:
            return None
        assert resp.status == 400, resp.status
        code: str = (await resp.json())["error"]["code"]
        return code


def _state(spec: Msg, message_id: str = "m") -> MessageState:
    return MessageState(message_id, MessageStatus(spec.status), spec.attempts, None, spec.recipient)


@pytest.mark.parametrize("row", MESSAGE_ROWS, ids=lambda r: f"{r.section}: {r.rule}")
async def test_single_retry_rule(make_sim, row: MessageRow) -> None:
    sim: PostmanSimulator = await make_sim(max_attempts=row.cap)
    message_id = "message_missing"
    if row.message is not None:
        if row.batch_status is not None:
            batch_id = _batch(sim, [row.message], row.batch_status)
            message_id = sim.batches[batch_id].message_ids[0]
        else:
            message = sim.create_message(row.message.recipient)
            _place(sim, message, row.message)
            message_id = message.id
    server = await _post(sim, f"/messages/{message_id}/retry")
    spec = row.message
    sdk = rules.message_retry_verdict(
        MessageStatus(spec.status) if spec else None,
        spec.attempts if spec else 0,
        in_batch=row.batch_status is not None,
        batch_status=BatchStatus(row.batch_status) if row.batch_status else None,
        cap=AttemptCap.known(row.cap),
    ).error_code
    assert (server, sdk) == (row.expected, row.expected)


@pytest.mark.parametrize("row", BATCH_ROWS, ids=lambda r: f"{r.section}: {r.rule}")
async def test_batch_retry_rule(make_sim, row: BatchRow) -> None:
    sim: PostmanSimulator = await make_sim(max_attempts=row.cap)
    batch_id = "batch_missing"
    if row.messages is not None:
        batch_id = _batch(sim, row.messages, row.batch_status)
    server = await _post(sim, f"/batch/{batch_id}/retry")
    states = [_state(m, f"m{i}") for i, m in enumerate(row.messages or ())]
    plan = planner.plan_batch_retry(
        batch_id, states, AttemptCap.known(row.cap), BatchStatus(row.batch_status)
    )
    sdk = plan.verdict.error_code
    assert (server, sdk) == (row.expected, row.expected)
    # The SDK fires only where the server answers 201: never into a flip.
    assert plan.fire is (row.expected is None)
    if row.expected == UNRESOLVED:
        assert sim.batch_status(batch_id) == "messages_enqueuing_failed"
        assert sim.posts.flipped_batches[batch_id] == 1


@pytest.mark.parametrize(
    ("section", "recipient", "final_status"),
    [
        ("§3.3: success is final for a local number", "6591234567", "success"),
        ("§3.3: sent_to_telco is the final status for a foreign number", "447911123456", None),
        ("§3.3, §4.4: failure is final", "6511112222", "failure"),
    ],
)
async def test_final_statuses(make_sim, section: str, recipient: str, final_status: str) -> None:
    sim: PostmanSimulator = await make_sim()
    message = sim.create_message(recipient, age=0.0)
    sim.advance(4.0)  # every number is at sent_to_telco or beyond now
    at_telco = sim.message_status(message.id)
    sim.advance(3600.0)
    last = sim.message_status(message.id)
    # The simulator's lifecycle and the SDK's "final" predicate agree.
    assert rules.is_final(MessageStatus(last), recipient)
    if final_status is None:  # foreign: it stays at sent_to_telco, and the SDK stops there
        assert at_telco == last == "sent_to_telco"
    else:
        assert last == final_status
        assert not rules.is_final(MessageStatus.SENT_TO_TELCO, recipient)


@pytest.mark.parametrize(
    ("number", "worth"),
    [
        ("6511111111", False),  # recipient_invalid: No
        ("6511112222", True),  # recipient_unavailable: Yes
        ("6511113333", False),  # content_invalid: No (an older page said Yes)
        ("6511114444", True),  # routing_error: Maybe
        ("6511115555", True),  # message_expired: Maybe
        ("6511119999", True),  # delivery_unknown_error: Maybe
        ("6522222222", True),  # server_unknown_error: Maybe
    ],
)
async def test_delivery_errors_worth_retrying(make_sim, number: str, worth: bool) -> None:
    """§4.4: the test numbers fail with their documented error; the SDK retries the ones a
    retry may fix."""
    sim: PostmanSimulator = await make_sim()
    message = sim.create_message(number)
    code = message.attempts[-1].error_code
    assert sim.message_status(message.id) == "failure"
    assert rules.worth_retrying(code) is worth
