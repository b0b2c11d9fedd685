"""Security: secrets never leak, TLS is verified, hostile servers cannot exhaust memory,
header and path injection is refused before anything is sent."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest
import trustme
from aiohttp import web

import postman_async as pa
from postman_async.testing import Faults, PostmanSimulator

from ..helpers import client_for, no_sleep

FAIL = (pa.MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")


async def test_api_key_never_in_logs_errors_reprs_or_reports(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level, aiohttp's included
    sim = PostmanSimulator(
        rate_limit=500.0,
        time_scale=100.0,
        seed=2,
        faults=Faults(
            server_error_rate=0.2,
            reset_after_rate=0.1,
            malformed_json_rate=0.1,
            competing_share=0.3,
        ),
    )
    ids = [sim.create_message(outcome=FAIL).id for _ in range(30)] + ["bad id"]
    key = sim.api_key
    texts: list[str] = []
    async with (
        sim,
        client_for(sim, sleep=no_sleep) as client,
    ):
        texts += [repr(client), str(client), repr(client._session())]
        report = await pa.RetryOrchestrator(client).retry_messages(ids)
        texts.append(json.dumps(report.to_dict()))
        texts += [f"{r.error!s} {r.error!r} {r.detail}" for r in report]
        for call in (
            client.get_message("message_missing"),
            client.retry_batch("b_x"),
            client.send_message("6591234567", "english", {"nope": "x"}),
        ):
            try:
                await call
            except pa.PostmanError as exc:
                texts.append(f"{exc!s} {exc!r} {exc.__cause__!r}")
        async with pa.PostmanClient(
            api_key=key + "x", campaign_id=sim.campaign_id, base_url=sim.base_url
        ) as wrong:
            texts.append(repr(wrong))
            try:
                await wrong.get_message(ids[0])
            except pa.InvalidApiKeyError as exc:
                texts.append(f"{exc!s} {exc!r}")
    with pytest.raises(pa.ValidationError) as bad_key:
        pa.PostmanClient(api_key=key + "\r\nX-Injected: 1", campaign_id=sim.campaign_id)
    texts.append(str(bad_key.value))
    texts.append(caplog.text)
    assert any("POST" in t for t in texts) and len(caplog.records) > 30
    for text in texts:
        assert key not in text
        assert key[len("key_test_") :] not in text


async def test_tls_is_verified_by_default(tmp_path) -> None:
    ca = trustme.CA()
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ssl)
    hits = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.json_response({"id": "message_1"})

    app = web.Application()
    app.router.add_get("/api/v2/campaigns/c1/messages/message_1", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"https://127.0.0.1:{port}/api/v2"
    try:
        async with pa.PostmanClient(
            api_key="key_test_k", campaign_id="c1", base_url=base, sleep=no_sleep
        ) as client:
            with pytest.raises(pa.PostmanConnectionError, match="TLS"):
                await client.get_message("message_1")
        assert hits == 0  # refused before any request, and not retried
        client_ssl = ssl.create_default_context()
        ca.configure_trust(client_ssl)
        connector = aiohttp.TCPConnector(ssl=client_ssl)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            pa.PostmanClient(
                api_key="key_test_k", campaign_id="c1", base_url=base, session=session
            ) as trusting,
        ):
            assert (await trusting.get_message("message_1")).id == "message_1"
    finally:
        await runner.cleanup()


async def _endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        for _ in range(2000):  # bounded: 128 MB at most, the client stops long before
            await response.write(b"[" * 65536)
    except (ConnectionResetError, RuntimeError):
        pass
    return response


async def _oversized(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * 3_000_000, content_type="application/json")


@pytest.fixture
async def hostile() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/api/v2/campaigns/c1/messages/message_1", _endless)
    app.router.add_get("/api/v2/campaigns/c1/messages", _oversized)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/api/v2"
    await runner.cleanup()


async def test_hostile_server_cannot_exhaust_memory(hostile: str) -> None:
    async with pa.PostmanClient(
        api_key="key_test_k",
        campaign_id="c1",
        base_url=hostile,
        max_response_bytes=1_000_000,
        max_retries=0,
    ) as client:
        with pytest.raises(pa.MalformedResponseError, match="refused"):
            await client.get_message("message_1")  # streamed, no Content-Length
        with pytest.raises(pa.MalformedResponseError, match="refused"):
            await client.list_messages().fetch()  # declared Content-Length


@pytest.mark.parametrize(
    "bad",
    [
        "message_1\r\nX-Injected: 1",
        "message_1\n",
        "a\x00b",
        "../../admin",
        "a b",
        "a/b",
        "",
        "a\u2028b",
        "message_1%0d%0a",
    ],
)
async def test_control_characters_and_path_tricks_rejected_before_sending(bad: str) -> None:
    async with pa.PostmanClient(
        api_key="key_test_k", campaign_id="c1", base_url="http://127.0.0.1:9/api/v2"
    ) as client:
        for call in (client.get_message, client.retry_message, client.retry_batch):
            with pytest.raises(pa.ValidationError):
                await call(bad)
        assert client.calls == 0


def test_plain_http_only_to_loopback() -> None:
    for url in ("http://postman.gov.sg/api/v2", "http://10.0.0.8/api", "http://example.test"):
        with pytest.raises(pa.ValidationError, match="loopback"):
            pa.PostmanClient(api_key="key_test_k", campaign_id="c1", base_url=url)
    assert pa.PostmanClient(
        api_key="key_test_k", campaign_id="c1", base_url="http://127.0.0.1:8080/api/v2"
    ).base_url
