"""The simulator's JSON shapes of messages and batches, per endpoint (reference §2, §3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import server_rules as rules
from .state import SimBatch, SimMessage, iso

if TYPE_CHECKING:
    from .simulator import PostmanSimulator


def message_base(sim: PostmanSimulator, message: SimMessage) -> dict[str, Any]:
    campaign = sim.campaigns[message.campaign_id]
    status, since = sim._status(message)
    return {
        "createdAt": iso(message.created),
        "updatedAt": iso(since),
        "id": message.id,
        "recipient": message.recipient,
        "values": message.values,
        "fullMessage": message.full_message,
        "latestStatus": status,
        "templateBodyId": campaign.template_body_id(message.language),
        "campaignId": message.campaign_id,
        "language": message.language,
        "creatorId": campaign.creator_id,
    }


def template_body(sim: PostmanSimulator, message: SimMessage) -> dict[str, Any]:
    campaign = sim.campaigns[message.campaign_id]
    return {
        "createdAt": iso(sim._epoch0),
        "updatedAt": iso(sim._epoch0),
        "id": campaign.template_body_id(message.language),
        "templateId": f"template_{campaign.id.removeprefix('campaign_')}",
        "language": message.language,
        "body": campaign.templates[message.language],
        "creatorId": campaign.creator_id,
    }


def batch_json(sim: PostmanSimulator, batch: SimBatch, message: SimMessage) -> dict[str, Any]:
    campaign = sim.campaigns[batch.campaign_id]
    return {
        "createdAt": iso(batch.created),
        "updatedAt": iso(max(batch.updated, batch.created)),
        "id": batch.id,
        "originalFileName": batch.original_file_name,
        "status": batch.status_at(sim.now()),
        "campaignId": batch.campaign_id,
        "creatorId": campaign.creator_id,
        "totalMessages": len(batch.message_ids),
        "BatchMessage": {
            "createdAt": iso(message.created),
            "updatedAt": iso(message.created),
            "id": str(message.join_id),
            "batchId": batch.id,
            "messageId": message.id,
        },
    }


def batches(sim: PostmanSimulator, message: SimMessage) -> list[dict[str, Any]]:
    if not message.batch_id:
        return []
    return [batch_json(sim, sim.batches[message.batch_id], message)]


def message_get(sim: PostmanSimulator, message: SimMessage) -> dict[str, Any]:
    now = sim.now()
    attempts = []
    for attempt in reversed(message.attempts):  # newest first
        status, _ = attempt.status_at(now, sim.lifecycle_delays)
        item: dict[str, Any] = {"status": status, "createdAt": iso(attempt.started)}
        sent = attempt.reached(rules.SENT, now, sim.lifecycle_delays)
        if sent is not None:
            item["sentAt"] = iso(sent)
            delivered = attempt.reached(rules.SUCCESS, now, sim.lifecycle_delays)
            item["deliveredAt"] = iso(delivered) if delivered is not None else None
        if status == rules.FAILURE:
            item["error"] = {"type": attempt.error_type, "code": attempt.error_code}
        attempts.append(item)
    campaign = sim.campaigns[message.campaign_id]
    return {
        **message_base(sim, message),
        "templateBody": template_body(sim, message),
        "batches": batches(sim, message),
        "creatorEmail": campaign.creator_email,
        "attempts": attempts,
    }


def message_batch_item(sim: PostmanSimulator, message: SimMessage) -> dict[str, Any]:
    now = sim.now()
    campaign = sim.campaigns[message.campaign_id]
    flat = []
    for attempt in reversed(message.attempts):
        status, since = attempt.status_at(now, sim.lifecycle_delays)
        sent = attempt.reached(rules.SENT, now, sim.lifecycle_delays)
        delivered = attempt.reached(rules.SUCCESS, now, sim.lifecycle_delays)
        failed = status == rules.FAILURE
        flat.append(
            {
                "id": attempt.id,
                "messageId": message.id,
                "status": status,
                "errorType": attempt.error_type if failed else None,
                "errorCode": attempt.error_code if failed else None,
                "sentAt": iso(sent) if sent is not None else None,
                "deliveredAt": iso(delivered) if delivered is not None else None,
                "createdAt": iso(attempt.started),
                "updatedAt": iso(since),
                "externalAttemptId": "",
                "metadata": {},
                "creatorId": campaign.creator_id,
                "creator": {"email": campaign.creator_email},
            }
        )
    return {
        **message_base(sim, message),
        "templateBody": template_body(sim, message),
        "creatorEmail": campaign.creator_email,
        "numAttempts": len(message.attempts),
        "messageAttempts": flat,
    }


def message_campaign_item(sim: PostmanSimulator, message: SimMessage) -> dict[str, Any]:
    item = {
        **message_base(sim, message),
        "templateBody": template_body(sim, message),
        "batches": batches(sim, message),
    }
    if message.batch_id:
        item["batchId"] = message.batch_id
    return item
