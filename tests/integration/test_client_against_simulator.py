"""Every PostmanClient method against the simulator over loopback HTTP."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

import postman_async as pa
from postman_async.testing import Campaign, PostmanSimulator, send_key

from ..helpers import client_for


async def test_plugin_fixtures_send_and_read(
    postman_client: pa.PostmanClient, postman_simulator: PostmanSimulator
) -> None:
    sent = await postman_client.send_message("+65 9123 4567", "english", {"body": "Hello"})
    assert sent.latest_status is pa.MessageStatus.CREATED
    assert sent.template_body is None and sent.attempts is None  # send shape
    assert sent.full_message == (
        "Open Government Products\n\n---\n\nHello\n\n---\n\n"
        "This is an automated SMS from the Singapore Government. Please do not reply."
    )
    postman_simulator.advance(10)  # past every lifecycle step
    got = await postman_client.get_message(sent.id)
    assert got.latest_status is pa.MessageStatus.SUCCESS
    assert got.template_body is not None and got.batches == ()
    assert got.attempts is not None and len(got.attempts) == 1
    assert got.attempts[0].delivered_at is not None
    assert postman_simulator.posts.sends[send_key("6591234567", {"body": "Hello"})] == 1


async def test_message_lifecycle_and_foreign_numbers(make_sim) -> None:
    sim = await make_sim(step_delays=(1.0, 1.0, 1.0, 1.0, 1.0))
    async with client_for(sim) as client:
        local = await client.send_message("6591234567", "english", {"body": "x"})
        foreign = await client.send_message("447911123456", "english", {"body": "x"})
        seen = []
        for _ in range(6):
            seen.append((await client.get_message(local.id)).latest_status)
            sim.advance(1.0)
        assert seen == ["created", "enqueued", "sending", "sent", "sent_to_telco", "success"]
        assert (await client.get_message(foreign.id)).latest_status is (
            pa.MessageStatus.SENT_TO_TELCO
        )


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("6511111111", "recipient_invalid"),
        ("6511112222", "recipient_unavailable"),
        ("6511113333", "content_invalid"),
        ("6511114444", "routing_error"),
        ("6511115555", "message_expired"),
        ("6511119999", "delivery_unknown_error"),
        ("6522222222", "server_unknown_error"),
    ],
)
async def test_documented_test_numbers_fail(
    postman_client: pa.PostmanClient, postman_simulator: PostmanSimulator, number: str, code: str
) -> None:
    sent = await postman_client.send_message(number, "english", {"body": "x"})
    postman_simulator.advance(10)
    got = await postman_client.get_message(sent.id)
    assert got.latest_status is pa.MessageStatus.FAILURE
    assert got.latest_error_code == code


async def test_single_retry_rules(make_sim) -> None:
    sim = await make_sim()
    async with client_for(sim) as client:
        ok = sim.create_message("6591234567")
        with pytest.raises(pa.MessageNotRetryableError):
            await client.retry_message(ok.id)  # success, not failure
        with pytest.raises(pa.MessageNotRetryableError):
            await client.retry_message("message_does_not_exist")  # 400, not 404
        failed = sim.create_message("6511112222")
        first = await client.retry_message(failed.id)
        assert first.id == failed.id and first.latest_status is pa.MessageStatus.CREATED
        with pytest.raises(pa.MessageNotRetryableError):
            await client.retry_message(failed.id)  # now created, not failure
        sim.advance(10)
        await client.retry_message(failed.id)  # third attempt
        sim.advance(10)
        with pytest.raises(pa.TooManyAttemptsError) as info:
            await client.retry_message(failed.id)
        assert "maximum number of attempts of 3" in str(info.value)
        got = await client.get_message(failed.id)
        assert got.attempt_count == 3 and got.attempts is not None
        assert got.attempts[0].created_at >= got.attempts[-1].created_at  # newest first
        # every processed POST is counted, whatever its answer: 2 accepted, 2 refused
        assert sim.posts.retries[failed.id] == 4
        assert sim.posts.accepted_retries[failed.id] == 2


async def test_max_attempts_is_a_setting(make_sim) -> None:
    sim = await make_sim(max_attempts=4)
    async with client_for(sim) as client:
        failed = sim.create_message("6511112222", attempts=3)
        await client.retry_message(failed.id)
        assert len(sim.messages[failed.id].attempts) == 4


async def _batch(client: pa.PostmanClient, recipients: list[str]) -> str:
    rows = [
        {"recipient": r, "language": "english", "body": f"hi {i}"} for i, r in enumerate(recipients)
    ]
    return (await client.send_batch(rows)).batch_id


async def test_batch_retry_preconditions(make_sim) -> None:
    sim = await make_sim(batch_enqueue_delay=5.0)
    async with client_for(sim) as client:
        batch_id = await _batch(client, ["6591234567", "6511112222", "6511111111"])
        with pytest.raises(pa.BatchNotRetryableError):
            await client.retry_batch(batch_id)  # still enqueuing
        with pytest.raises(pa.BatchNotRetryableError):
            await client.retry_batch("batch_unknown")
        sim.advance(6)
        assert sim.batch_status(batch_id) == pa.BatchStatus.MESSAGES_ENQUEUED
        sim.messages[sim.batches[batch_id].message_ids[0]].attempts[-1].started = sim.now()
        with pytest.raises(pa.UnresolvedBatchMessagesError):
            await client.retry_batch(batch_id)
        assert sim.batch_status(batch_id) == pa.BatchStatus.MESSAGES_ENQUEUING_FAILED
        assert sim.posts.flipped_batches[batch_id] == 1
        sim.advance(10)
        await client.retry_batch(batch_id)  # allowed from messages_enqueuing_failed
        retried = {m for m, n in sim.posts.batch_retried_messages.items() if n}
        failed = set(sim.batches[batch_id].message_ids[1:])
        assert retried == failed
        sim.advance(10)
        await client.retry_batch(batch_id)
        sim.advance(10)
        with pytest.raises(pa.NoFailedBatchMessagesError):
            await client.retry_batch(batch_id)  # every failure has used 3 attempts


async def test_batch_retry_with_all_successful(make_sim) -> None:
    sim = await make_sim()
    async with client_for(sim) as client:
        batch_id = await _batch(client, ["6591234567", "6598765432"])
        sim.advance(10)
        with pytest.raises(pa.NoFailedBatchMessagesError):
            await client.retry_batch(batch_id)


async def test_single_retry_blocked_by_batch_status(make_sim) -> None:
    sim = await make_sim()
    async with client_for(sim) as client:
        batch_id = await _batch(client, ["6511112222"])
        sim.advance(10)
        sim.set_batch_status(batch_id, pa.BatchStatus.MESSAGES_ENQUEUING)
        (message_id,) = sim.batches[batch_id].message_ids
        with pytest.raises(pa.MessageNotRetryableError):
            await client.retry_message(message_id)
        sim.set_batch_status(batch_id, None)
        assert (await client.retry_message(message_id)).id == message_id


async def test_batch_of_1000_rows_and_listing_shapes(make_sim) -> None:
    sim = await make_sim()
    async with client_for(sim) as client:
        recipients = [f"6591{i:06d}" for i in range(1200)]
        batch_id = await _batch(client, recipients)
        sim.advance(10)
        pages = [p async for p in client.list_batch_messages(batch_id).pages()]
        assert [len(p.data) for p in pages] == [1000, 200]
        messages = [m for p in pages for m in p.data]
        assert sorted(m.recipient for m in messages) == recipients
        assert len({m.id for m in messages}) == 1200
        sample = messages[0]
        assert sample.num_attempts == 1 and sample.message_attempts is not None
        assert sample.message_attempts[0].message_id == sample.id
        campaign = [m async for m in client.list_messages(page_size=500)]
        assert len(campaign) == 1200 and campaign[0].batch_id == batch_id
        assert campaign[0].batch is not None
        assert campaign[0].batch.status is pa.BatchStatus.MESSAGES_ENQUEUED
        assert campaign[0].batch.total_messages == 1200


async def test_pagination_newest_first_cursors_and_search(make_sim) -> None:
    sim = await make_sim()
    async with client_for(sim) as client:
        ids = []
        for i in range(7):
            ids.append((await client.send_message(f"659100{i:04d}", "english", {"body": "x"})).id)
            sim.advance(0.002)  # distinct createdAt ms: ties are ordered by id
        listing = client.list_messages(page_size=3)
        first = await listing.fetch()
        assert [m.id for m in first.data] == ids[::-1][:3]
        assert first.page_data.has_next_page and not first.page_data.has_previous_page
        second = await listing.fetch(after=first.page_data.end_cursor)
        assert [m.id for m in second.data] == ids[::-1][3:6]
        assert second.page_data.has_previous_page
        back = await listing.fetch(before=second.page_data.start_cursor)
        assert [m.id for m in back.data] == [m.id for m in first.data]
        assert [m.id async for m in listing] == ids[::-1]
        found = [m.recipient async for m in client.list_messages(search="0003")]
        assert found == ["6591000003"]
        assert [m async for m in client.list_messages(search="777777")] == []


async def test_server_side_validation_errors(make_sim) -> None:
    campaign = Campaign(
        id="campaign_tpl",
        api_keys=("key_test_tpl",),
        templates={"english": "Dear {{name}}, {{body}}", "malay": "{{body}}"},
    )
    sim = await make_sim(campaigns=[campaign], max_batch_rows=20)
    async with client_for(sim) as client:
        for values in ({"body": "x"}, {"name": "a", "body": "b", "extra": "c"}):
            with pytest.raises(pa.ParameterInvalidError):
                await client.send_message("6591234567", "english", values)
        with pytest.raises(pa.ParameterInvalidError, match="not supported"):
            await client.send_message("6591234567", "tamil", {"body": "x"})
        rows = [{"recipient": f"6591{i:06d}", "language": "malay", "body": "x"} for i in range(21)]
        with pytest.raises(pa.ParameterInvalidError, match="at most 20"):
            await client.send_batch(rows)
        with pytest.raises(pa.ParameterInvalidError):
            await client.send_batch(
                [{"recipient": "6591234567", "language": "english", "body": "x"}]
            )  # english needs {{name}}
        assert sim.batches == {} and sim.messages == {}  # all-or-nothing
        ok = await client.send_message("6591234567", "english", {"name": "Tan", "body": "hi"})
        assert "Dear Tan, hi" in (ok.full_message or "")


async def test_auth_and_ip_errors(make_sim) -> None:
    other = Campaign(id="campaign_other", api_keys=("key_test_other",))
    walled = Campaign(
        id="campaign_walled", api_keys=("key_test_walled",), allowed_ips=("203.0.113.9",)
    )
    sim = await make_sim()
    sim.add_campaign(other)
    sim.add_campaign(walled)
    async with client_for(sim, api_key="key_test_wrong") as client:
        with pytest.raises(pa.InvalidApiKeyError) as info:
            await client.get_message("message_1")
        assert info.value.status == 401 and "key_test_wrong" not in str(info.value)
    async with client_for(sim, api_key="key_test_other") as client:
        with pytest.raises(pa.InvalidApiKeyError):  # a key of another campaign
            await client.list_messages().fetch()
    async with client_for(sim, api_key="key_test_walled", campaign_id="campaign_walled") as c:
        with pytest.raises(pa.IpNotAllowedError) as ip_info:
            await c.list_messages().fetch()
        assert ip_info.value.status == 400
    async with aiohttp.ClientSession() as raw:
        async with raw.get(f"{sim.base_url}/campaigns/{sim.campaign_id}/messages") as resp:
            assert resp.status == 401
            assert await resp.json() == {"message": "Unauthorized", "statusCode": 401}
        headers = {"Authorization": f"Bearer {sim.api_key}"}
        async with raw.get(f"{sim.base_url}/nowhere", headers=headers) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "invalid_path"
        async with raw.get(
            f"{sim.base_url}/campaigns/{sim.campaign_id}/messages/missing", headers=headers
        ) as resp:
            assert resp.status == 404
        async with raw.post(
            f"{sim.base_url}/campaigns/{sim.campaign_id}/batch/b/retry", headers=headers
        ) as resp:
            assert resp.status == 400


async def test_listing_parameter_errors_from_server(make_sim) -> None:
    sim = await make_sim()
    headers = {"Authorization": f"Bearer {sim.api_key}"}
    url = f"{sim.base_url}/campaigns/{sim.campaign_id}/messages"
    async with aiohttp.ClientSession() as raw:
        for query in (
            "limit=0",
            "limit=1001",
            "limit=x",
            "after=%%%",
            "after=YQ==&before=YQ==",
            "after=WzFd",
        ):
            async with raw.get(f"{url}?{query}", headers=headers) as resp:
                assert resp.status == 400, query
                assert (await resp.json())["error"]["code"] == "parameter_invalid"
        async with raw.get(url, headers=headers) as resp:
            body = await resp.json()
        assert body == {
            "data": [],
            "pageData": {
                "hasNextPage": False,
                "hasPreviousPage": False,
                "startCursor": None,
                "endCursor": None,
            },
        }


async def test_rate_limit_429_shape_and_retry_after_switch(make_sim) -> None:
    for header in (True, False):
        sim = await make_sim(rate_limit=2.0, retry_after_header=header)
        headers = {"Authorization": f"Bearer {sim.api_key}"}
        url = f"{sim.base_url}/campaigns/{sim.campaign_id}/messages"
        async with aiohttp.ClientSession() as raw:
            statuses = []
            for _ in range(4):
                async with raw.get(url, headers=headers) as resp:
                    statuses.append(resp.status)
                    if resp.status == 429:
                        body = await resp.json()
                        assert body["error"]["code"] == "too_many_requests"
                        assert ("Retry-After" in resp.headers) is header
        assert statuses == [200, 200, 429, 429]
        assert sim.stats().throttled == 2


async def test_fixed_and_token_bucket_modes(make_sim) -> None:
    for mode in ("fixed", "token_bucket"):
        sim = await make_sim(rate_limit=10.0, rate_limit_mode=mode)
        async with client_for(sim, max_retries=0) as client:
            results = await asyncio.gather(
                *(client.list_messages().fetch() for _ in range(12)), return_exceptions=True
            )
        # The client paces itself at 10/s, so even these modes see no 429.
        assert not [r for r in results if isinstance(r, BaseException)]
        assert sim.stats().throttled == 0


async def test_client_at_full_speed_gets_no_429(make_sim) -> None:
    """Driven as hard as possible against the strict sliding window at an accelerated rate.
    (The achieved rate is a timing figure: ``benchmarks/rate_fidelity.py`` measures it.)"""
    sim = await make_sim(rate_limit=100.0)
    async with client_for(sim) as client:
        stop = asyncio.get_running_loop().time() + 2.5

        async def hammer() -> None:
            while asyncio.get_running_loop().time() < stop:
                await client.list_messages(page_size=1).fetch()

        await asyncio.gather(*(hammer() for _ in range(30)))
    stats = sim.stats()
    assert stats.throttled == 0
    assert stats.max_per_second <= 100


async def test_body_limits_strict_characters_and_nric(make_sim) -> None:
    nric = Campaign(
        id="campaign_nric", api_keys=("key_test_nric",), nric_phones={"S1234567D": "6591234567"}
    )
    sim = await make_sim(campaigns=[nric], strict_characters=True)
    async with client_for(sim) as client:
        with pytest.raises(pa.ParameterInvalidError, match="limit is 1000"):
            await client.send_message("6591234567", "english", {"body": "x" * 1001})
        with pytest.raises(pa.ParameterInvalidError, match="Unsupported"):
            await client.send_message("6591234567", "english", {"body": "hi 😀 [x]"})
        assert (await client.send_message("6591234567", "english", {"body": "x" * 1000})).id
    headers = {"Authorization": "Bearer key_test_nric"}
    url = f"{sim.base_url}/campaigns/campaign_nric/messages"
    async with aiohttp.ClientSession(headers=headers) as raw:
        body = {"language": "english", "values": {"body": "hi"}}
        async with raw.post(url, json={**body, "recipient": "S1234567D"}) as resp:
            assert resp.status == 201 and (await resp.json())["recipient"] == "6591234567"
        async with raw.post(url, json={**body, "recipient": "T7654321A"}) as resp:
            assert resp.status == 400
    lenient = await make_sim()
    async with client_for(lenient) as client:
        assert (await client.send_message("6591234567", "english", {"body": "hi 😀 [x]"})).id
