"""A FastAPI service on one Postman campaign.

- One ``PostmanClient`` for the whole app, created in the lifespan (so its aiohttp session
  lives in the server's event loop and is closed on shutdown).
- ``POST /otp`` sends an OTP from the request handler in the HIGH lane: it goes ahead of any
  bulk work on the same campaign, so it waits at most about one token interval.
- ``POST /retry-jobs`` starts a background retry job (the orchestrator uses the BULK lane);
  ``GET /retry-jobs/{id}`` shows its progress and result. Jobs are cancelled on shutdown.

Run: ``POSTMAN_API_KEY=... POSTMAN_CAMPAIGN_ID=... uvicorn examples.fastapi_app.app:app``
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from postman_async import (
    OutcomeUnknownError,
    PostmanClient,
    PostmanError,
    Priority,
    RetryOrchestrator,
    RetryReport,
    TooManyRequestsError,
    ValidationError,
)


class OtpRequest(BaseModel):
    phone: str


class RetryJobRequest(BaseModel):
    message_ids: list[str]


class Job:
    def __init__(self, orchestrator: RetryOrchestrator, task: asyncio.Task[RetryReport]) -> None:
        self.orchestrator = orchestrator
        self.task = task

    def view(self) -> dict[str, Any]:
        report = self.orchestrator.report
        state = "running" if not self.task.done() else "done"
        if self.task.done() and (self.task.cancelled() or self.task.exception()):
            state = "failed"
        return {
            "state": state,
            "progress": report.summary() if report else "starting",
            "result": report.to_dict()["summary"] if report and report.finished else None,
        }


def create_app(
    api_key: str, campaign_id: str, *, base_url: str | None = None, rate_limit: float = 10.0
) -> FastAPI:
    jobs: dict[str, Job] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with PostmanClient(
            api_key=api_key, campaign_id=campaign_id, base_url=base_url, rate_limit=rate_limit
        ) as client:
            app.state.postman = client
            yield
            for job in jobs.values():
                job.task.cancel()
            await asyncio.gather(*(job.task for job in jobs.values()), return_exceptions=True)

    app = FastAPI(lifespan=lifespan)

    @app.post("/otp", status_code=201)
    async def send_otp(request: OtpRequest) -> dict[str, str]:
        client: PostmanClient = app.state.postman
        code = f"{secrets.randbelow(10**6):06d}"
        try:
            message = await client.send_message(
                request.phone,
                "english",
                {"body": f"Your one-time password is {code}."},
                priority=Priority.HIGH,
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
    async def start_retry_job(request: RetryJobRequest) -> dict[str, str]:
        orchestrator = RetryOrchestrator(app.state.postman)  # BULK lane by default
        task = asyncio.create_task(orchestrator.retry_messages(request.message_ids))
        job_id = uuid.uuid4().hex
        jobs[job_id] = Job(orchestrator, task)
        return {"job_id": job_id}

    @app.get("/retry-jobs/{job_id}")
    async def retry_job(job_id: str) -> dict[str, Any]:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, "no such job")
        return job.view()

    return app


def _app_from_env() -> FastAPI | None:
    key, campaign = os.environ.get("POSTMAN_API_KEY"), os.environ.get("POSTMAN_CAMPAIGN_ID")
    if key and campaign:
        return create_app(key, campaign, base_url=os.environ.get("POSTMAN_BASE_URL"))
    return None


app = _app_from_env()
