"""A FastAPI service on one Postman campaign, with crash-safe retry jobs in Redis.

- One ``PostmanClient`` for the whole app, created in the lifespan (so its aiohttp session
  lives in the server's event loop and is closed on shutdown). Its limiter is the campaign's
  ``RedisRateLimiter``, shared with the job workers: one 10/s budget for everything.
- ``POST /otp`` sends an OTP from the request handler through ``client.with_options(timeout=2,
  max_retries=1, priority=HIGH)``: it fails fast, and it goes ahead of the job workers' BULK
  calls on the same campaign, so it waits at most about two intervals.
- ``POST /retry-jobs`` submits a retry job to Redis and returns its id; worker processes
  (``postman-async job worker``) run it and survive this app's redeploys. ``GET
  /retry-jobs/{id}`` reads its progress from Redis (any replica can answer), ``GET
  /retry-jobs/{id}/results`` streams its results as NDJSON, ``DELETE /retry-jobs/{id}``
  cancels it.

Run: ``POSTMAN_API_KEY=... POSTMAN_CAMPAIGN_ID=... POSTMAN_ASYNC_REDIS_URL=redis://...
uvicorn examples.fastapi_app.app:app`` next to one or more ``postman-async job worker``.
``POSTMAN_EXAMPLE_TRACES=console`` prints the SDK's spans (one per API call) to stdout.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from postman_async import (
    OutcomeUnknownError,
    PostmanClient,
    PostmanError,
    Priority,
    TooManyRequestsError,
    ValidationError,
)
from postman_async.jobs import JobError, JobSettings, JobStore, submit_job, taskiq_app
from postman_async.ratelimit_redis import RedisRateLimiter


class OtpRequest(BaseModel):
    phone: str


class RetryJobRequest(BaseModel):
    message_ids: list[str]
    #: the share of the campaign's rate the job may use, leaving room for OTPs
    budget_share: float = 1.0


def create_app(
    api_key: str,
    campaign_id: str,
    *,
    redis_url: str,
    base_url: str | None = None,
    rate_limit: float = 10.0,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        taskiq_app.configure(redis_url)
        redis = aioredis.Redis.from_url(redis_url)
        limiter = RedisRateLimiter(redis, campaign_id=campaign_id, rate=rate_limit)
        async with PostmanClient(
            api_key=api_key,
            campaign_id=campaign_id,
            base_url=base_url,
            rate_limit=rate_limit,
            limiter=limiter,
        ) as client:
            app.state.postman, app.state.redis = client, redis
            yield
        await redis.aclose()
        await taskiq_app.broker.connection_pool.disconnect()

    app = FastAPI(lifespan=lifespan)

    @app.post("/otp", status_code=201)
    async def send_otp(request: OtpRequest) -> dict[str, str]:
        # Fail fast for a person waiting on a page: 2 s, one retry, the HIGH lane. The view
        # shares the app client's session, limiter and budget.
        otp: PostmanClient = app.state.postman.with_options(
            timeout=2, max_retries=1, priority=Priority.HIGH
        )
        code = f"{secrets.randbelow(10**6):06d}"
        try:
            message = await otp.send_message(
                request.phone, "english", {"body": f"Your one-time password is {code}."}
            )
        except ValidationError as exc:
            raise HTTPException(422, str(exc)) from exc
        except OutcomeUnknownError as exc:
            # Never re-send an OTP blindly: the user asks for a new one if it does not arrive.
            raise HTTPException(502, "the SMS may or may not have been sent") from exc
        except TooManyRequestsError as exc:
            raise HTTPException(503, "SMS rate limit reached, try again shortly") from exc
        except PostmanError as exc:
            raise HTTPException(502, "the SMS service failed") from exc
        return {"message_id": message.id, "status": str(message.latest_status)}

    @app.post("/retry-jobs", status_code=202)
    async def start_retry_job(request: RetryJobRequest) -> dict[str, Any]:
        client: PostmanClient = app.state.postman
        job_id = uuid.uuid4().hex
        settings = JobSettings(
            campaign_id=campaign_id,
            base_url=client.base_url,
            rate=rate_limit,
            budget_share=request.budget_share,
        )
        progress = await submit_job(app.state.redis, job_id, request.message_ids, settings)
        return {"job_id": job_id, **progress.to_dict()}

    def store(job_id: str) -> JobStore:
        try:
            return JobStore(app.state.redis, job_id)
        except ValidationError as exc:
            raise HTTPException(404, "no such job") from exc

    @app.get("/retry-jobs/{job_id}")
    async def retry_job(job_id: str) -> dict[str, Any]:
        try:
            return (await store(job_id).progress()).to_dict()
        except JobError as exc:
            raise HTTPException(404, "no such job") from exc

    @app.delete("/retry-jobs/{job_id}")
    async def cancel_retry_job(job_id: str) -> dict[str, Any]:
        job = store(job_id)
        try:
            await job.require_settings()
        except JobError as exc:
            raise HTTPException(404, "no such job") from exc
        await job.cancel()
        return (await job.progress()).to_dict()

    @app.get("/retry-jobs/{job_id}/results")
    async def retry_job_results(job_id: str) -> StreamingResponse:
        job = store(job_id)
        try:
            await job.require_settings()
        except JobError as exc:
            raise HTTPException(404, "no such job") from exc

        async def lines() -> AsyncIterator[str]:
            async for result in job.results():
                yield json.dumps(result) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return app


def enable_console_traces() -> None:
    """Print every span to stdout (the application configures OpenTelemetry's SDK; the
    library only uses the API). Needs ``pip install opentelemetry-sdk``."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


def _app_from_env() -> FastAPI | None:
    key, campaign = os.environ.get("POSTMAN_API_KEY"), os.environ.get("POSTMAN_CAMPAIGN_ID")
    if os.environ.get("POSTMAN_EXAMPLE_TRACES") == "console":
        enable_console_traces()
    if key and campaign:
        return create_app(
            key,
            campaign,
            redis_url=os.environ.get("POSTMAN_ASYNC_REDIS_URL", "redis://127.0.0.1:6379/0"),
            base_url=os.environ.get("POSTMAN_BASE_URL"),
        )
    return None


app = _app_from_env()
