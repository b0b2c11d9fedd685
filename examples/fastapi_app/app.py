"""A FastAPI service on one Postman campaign, with crash-safe retry jobs in Redis.

- One ``PostmanClient`` for the whole app, created in the lifespan (so its aiohttp session
  lives in the server's event loop and is closed on shutdown). Its limiter is the campaign's
  ``RedisRateLimiter``, shared with the job workers: one 10/s budget for everything.
- ``POST /otp`` sends an OTP from the request handler through ``client.with_options(timeout=2,
  max_retries=1, priority=HIGH)``: it fails fast, and it goes ahead of the job workers' BULK
  calls on the same campaign, so it waits at most about two intervals.
- ``POST /retry-jobs`` submits a retry job to Redis and returns its id; worker processes
  (``postman-async job worker``, configured with the campaign's key themselves) run it and
  survive this app's redeploys. ``GET /retry-jobs/{id}`` reads its progress from Redis (any
  replica can answer), ``GET /retry-jobs/{id}/results`` streams its results as NDJSON,
  ``DELETE /retry-jobs/{id}`` cancels it.

Guards (README, "FastAPI and workers"): a bearer token on every endpoint, each caller sees
only its own jobs, bounded request bodies and ID lists, validation errors as 422, OTPs
limited per caller. Missing configuration stops the start-up with a message naming it.

Run (the README has the whole recipe)::

    POSTMAN_API_KEY=... POSTMAN_CAMPAIGN_ID=... POSTMAN_ASYNC_REDIS_URL=redis://127.0.0.1:6379/0 \\
    POSTMAN_EXAMPLE_TOKENS="alice:$ALICE_TOKEN" \\
    uvicorn examples.fastapi_app.app:app --host 127.0.0.1 --port 8000

``POSTMAN_EXAMPLE_TRACES=console`` prints the SDK's spans (one per API call) to stdout.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations, and some
# of them (the caller dependency, the request model) are local to ``create_app``.
import json
import math
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send
from yarl import URL

from postman_async import (
    OutcomeUnknownError,
    PostmanClient,
    PostmanError,
    Priority,
    TooManyRequestsError,
    ValidationError,
)
from postman_async.jobs import (
    LOST_MESSAGE,
    JobError,
    JobLostError,
    JobSettings,
    JobStore,
    submit_job,
    taskiq_app,
)
from postman_async.ratelimit_redis import RedisRateLimiter
from postman_async.validation import normalize_recipient, validate_id

from .security import BodySizeLimit, ConfigError, OtpRateLimit, Tokens, bearer_token

#: Defaults of the limits (each configurable, see ``create_app`` and ``app_from_env``).
MAX_BODY_BYTES = 1 << 20
MAX_IDS = 10_000
OTP_PER_MINUTE = 30
#: A job's name as the API shows it; in Redis it is ``api.<caller>.<name>``.
JOB_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: A 422 lists at most this many errors (a list of 10,000 bad IDs is not echoed back).
MAX_ERRORS_SHOWN = 20


def redis_job_id(caller: str, name: str) -> str:
    """The Redis id of ``caller``'s job ``name``: the caller is part of it, so no caller can
    name another's job, nor a job created elsewhere (by the CLI, say)."""
    return f"api.{caller}.{name}"


class _CamelModel(BaseModel):
    # One key convention, as the CLI's --format json: camelCase. Unknown keys are a 422, so a
    # snake_case (or misspelt) key is never silently ignored.
    model_config = ConfigDict(alias_generator=to_camel, extra="forbid")


def _recipient(value: str) -> str:
    return normalize_recipient(value)  # the SDK's ValidationError is a ValueError: a 422


def _message_id(value: str) -> str:
    try:
        return validate_id("message_id", value)
    except ValidationError as exc:
        raise ValueError(f"message ID {value[:80]!r} is invalid: {exc.reason}") from None


class OtpRequest(_CamelModel):
    phone: Annotated[str, Field(max_length=64), AfterValidator(_recipient)]


def retry_job_request(max_ids: int) -> type[BaseModel]:
    """The body of ``POST /retry-jobs``, at most ``max_ids`` IDs."""

    class RetryJobRequest(_CamelModel):
        message_ids: Annotated[
            list[Annotated[str, AfterValidator(_message_id)]],
            Field(min_length=1, max_length=max_ids),
        ]
        #: the share of the campaign's rate the job may use, leaving room for OTPs
        budget_share: float = Field(default=1.0, gt=0, le=1, allow_inf_nan=False)
        #: a name of the caller's choosing: submitting the same name again continues that
        #: job, and after Redis lost it, starts it anew reading each ID before any POST
        job_id: str | None = Field(default=None, pattern=f"^{JOB_NAME.pattern}$")

    return RetryJobRequest


def create_app(
    api_key: str,
    campaign_id: str,
    *,
    redis_url: str,
    tokens: Tokens | Mapping[str, str],
    base_url: str | None = None,
    rate_limit: float = 10.0,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_ids: int = MAX_IDS,
    otp_per_minute: int = OTP_PER_MINUTE,
    job_http_timeout: float = 30.0,
) -> FastAPI:
    """The service. ``tokens``: caller name -> bearer token. ``job_http_timeout``: the HTTP
    timeout of the retry jobs' calls (a job submitted again after Redis lost it waits about
    that long before its first read). Raises :class:`RuntimeError` (a :class:`ConfigError`)
    naming what is missing or wrong."""
    callers = tokens if isinstance(tokens, Tokens) else Tokens(tokens)
    if not api_key:
        raise ConfigError("no API key: set POSTMAN_API_KEY (or POSTMAN_API_KEY_FILE)")
    if not campaign_id:
        raise ConfigError("no campaign: set POSTMAN_CAMPAIGN_ID")
    try:
        validate_id("campaign_id", campaign_id)
    except ValidationError as exc:
        raise ConfigError(f"POSTMAN_CAMPAIGN_ID: {exc}") from exc
    if not redis_url:
        raise ConfigError("no Redis: set POSTMAN_ASYNC_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
    for name, value in [
        ("max_body_bytes", max_body_bytes),
        ("max_ids", max_ids),
        ("otp_per_minute", otp_per_minute),
    ]:
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, not {value}")
    RetryJobRequest = retry_job_request(max_ids)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = aioredis.Redis.from_url(redis_url)
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            await redis.aclose()
            raise ConfigError(
                f"cannot reach Redis at POSTMAN_ASYNC_REDIS_URL={_redact(redis_url)}: {exc}"
            ) from exc
        taskiq_app.configure(redis_url)
        limiter = RedisRateLimiter(redis, campaign_id=campaign_id, rate=rate_limit)
        try:
            async with PostmanClient(
                api_key=api_key,
                campaign_id=campaign_id,
                base_url=base_url,
                rate_limit=rate_limit,
                limiter=limiter,
            ) as client:
                app.state.postman, app.state.redis = client, redis
                app.state.otp_limit = OtpRateLimit(redis, campaign_id, otp_per_minute)
                yield
        finally:
            await redis.aclose()
            await taskiq_app.broker.connection_pool.disconnect()

    # No /docs or /openapi.json: every route needs a token, and so would they.
    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)

    def unauthorized(request: Request) -> HTTPException | None:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            return HTTPException(
                401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        caller = callers.caller(token)
        if caller is None:
            return HTTPException(
                401,
                "invalid bearer token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        request.state.caller = caller
        return None

    async def authenticate(request: Request) -> str:
        """The caller's name, from ``Authorization: Bearer <token>``; else a 401."""
        error = unauthorized(request)
        if error is not None:
            raise error
        caller: str = request.state.caller
        return caller

    Caller = Annotated[str, Depends(authenticate)]

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI reads the body before the dependencies run: authenticate first here too,
        # so that a request without a valid token learns nothing from its body's errors.
        error = unauthorized(request)
        if error is not None:
            return JSONResponse({"detail": error.detail}, 401, headers=error.headers)
        errors = exc.errors()
        body: dict[str, Any] = {"detail": [_brief(e) for e in errors[:MAX_ERRORS_SHOWN]]}
        if len(errors) > MAX_ERRORS_SHOWN:
            body["omittedErrors"] = len(errors) - MAX_ERRORS_SHOWN
        return JSONResponse(body, 422)

    @app.post("/otp", status_code=201)
    async def send_otp(request: OtpRequest, caller: Caller) -> dict[str, str]:
        wait = await app.state.otp_limit.retry_after(caller)
        if wait is not None:
            raise HTTPException(
                429,
                f"at most {otp_per_minute} OTPs a minute per caller",
                headers={"Retry-After": str(wait)},
            )
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
        return {"messageId": message.id, "status": str(message.latest_status)}

    @app.post("/retry-jobs", status_code=202)
    async def start_retry_job(
        request: RetryJobRequest,  # type: ignore[valid-type]
        caller: Caller,
    ) -> dict[str, Any]:
        name = request.job_id or uuid.uuid4().hex  # type: ignore[attr-defined]
        # The job names the campaign only: each worker sends with its own key and base URL.
        settings = JobSettings(
            campaign_id=campaign_id,
            rate=rate_limit,
            http_timeout=job_http_timeout,
            budget_share=request.budget_share,  # type: ignore[attr-defined]
        )
        try:
            progress = await submit_job(
                app.state.redis,
                redis_job_id(caller, name),
                request.message_ids,  # type: ignore[attr-defined]
                settings,
            )
        except JobError as exc:
            raise HTTPException(409, "could not create the job, try again") from exc
        return {**progress.to_dict(), "jobId": name}

    async def own_job(caller: str, job_id: str) -> JobStore:
        """The caller's job ``job_id``; any other (another caller's, the CLI's, none) is a
        404, the same 404 whether or not it exists."""
        if not JOB_NAME.fullmatch(job_id):
            raise HTTPException(404, "no such job")
        job = JobStore(app.state.redis, redis_job_id(caller, job_id))
        try:
            await job.require_settings()
        except JobLostError as exc:  # the caller's own job: say what happened to it
            raise HTTPException(
                410, LOST_MESSAGE + "; POST /retry-jobs again with the same jobId"
            ) from exc
        except JobError as exc:
            raise HTTPException(404, "no such job") from exc
        return job

    async def view(job: JobStore, name: str) -> dict[str, Any]:
        try:
            progress = await job.progress()
        except JobError as exc:
            raise HTTPException(404, "no such job") from exc
        return {**progress.to_dict(), "jobId": name}

    @app.get("/retry-jobs/{job_id}")
    async def retry_job(job_id: str, caller: Caller) -> dict[str, Any]:
        return await view(await own_job(caller, job_id), job_id)

    @app.delete("/retry-jobs/{job_id}")
    async def cancel_retry_job(job_id: str, caller: Caller) -> dict[str, Any]:
        job = await own_job(caller, job_id)
        if not (await job.progress()).finished:  # a finished job stays as it ended
            await job.cancel()
        return await view(job, job_id)

    @app.get("/retry-jobs/{job_id}/results")
    async def retry_job_results(job_id: str, caller: Caller) -> StreamingResponse:
        job = await own_job(caller, job_id)

        async def lines() -> AsyncIterator[str]:
            async for result in job.results():
                yield json.dumps(result) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return app


def _brief(error: Any) -> dict[str, Any]:
    """A validation error without its context, and with its input only when short."""
    out = {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
    value = error.get("input")
    short = isinstance(value, str) and len(value) <= 100
    number = isinstance(value, (bool, int)) or (
        isinstance(value, float) and math.isfinite(value)  # no NaN: it is not JSON
    )
    if short or number or value is None:
        out["input"] = value
    return out


def _redact(url: str) -> str:
    try:
        return str(URL(url).with_password("***")) if URL(url).password else url
    except (ValueError, TypeError):
        return "(unparseable URL)"


# -- configuration from the environment ----------------------------------------------------


def app_from_env(environ: Mapping[str, str] | None = None) -> FastAPI:
    """The service configured by the environment (README, "FastAPI and workers"). Raises
    :class:`RuntimeError` naming every missing or malformed variable."""
    env = os.environ if environ is None else environ
    missing = []
    api_key = env.get("POSTMAN_API_KEY", "")
    key_file = env.get("POSTMAN_API_KEY_FILE")
    if key_file:
        try:
            with open(key_file, encoding="utf-8") as handle:
                api_key = handle.read(4096).strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"POSTMAN_API_KEY_FILE: cannot read {key_file!r}") from exc
    if not api_key:
        missing.append("POSTMAN_API_KEY (or POSTMAN_API_KEY_FILE)")
    campaign_id = env.get("POSTMAN_CAMPAIGN_ID", "")
    if not campaign_id:
        missing.append("POSTMAN_CAMPAIGN_ID")
    redis_url = env.get("POSTMAN_ASYNC_REDIS_URL", "")
    if not redis_url:
        missing.append("POSTMAN_ASYNC_REDIS_URL")
    tokens_file, tokens_text = (
        env.get("POSTMAN_EXAMPLE_TOKENS_FILE"),
        env.get("POSTMAN_EXAMPLE_TOKENS"),
    )
    if not tokens_file and not tokens_text:
        missing.append("POSTMAN_EXAMPLE_TOKENS (or POSTMAN_EXAMPLE_TOKENS_FILE)")
    if missing:
        raise ConfigError(
            "the service cannot start; set " + ", ".join(missing) + " (README: FastAPI and workers)"
        )
    if tokens_file and tokens_text:
        raise ConfigError("set POSTMAN_EXAMPLE_TOKENS or POSTMAN_EXAMPLE_TOKENS_FILE, not both")
    tokens = (
        Tokens.from_file(tokens_file)
        if tokens_file
        else Tokens.parse(tokens_text or "", "POSTMAN_EXAMPLE_TOKENS")
    )
    if env.get("POSTMAN_EXAMPLE_TRACES") == "console":
        enable_console_traces()
    return create_app(
        api_key,
        campaign_id,
        redis_url=redis_url,
        tokens=tokens,
        base_url=env.get("POSTMAN_BASE_URL") or None,
        rate_limit=_number(env, "POSTMAN_EXAMPLE_RATE_LIMIT", 10.0, float),
        max_body_bytes=_number(env, "POSTMAN_EXAMPLE_MAX_BODY_BYTES", MAX_BODY_BYTES, int),
        max_ids=_number(env, "POSTMAN_EXAMPLE_MAX_IDS", MAX_IDS, int),
        otp_per_minute=_number(env, "POSTMAN_EXAMPLE_OTP_PER_MINUTE", OTP_PER_MINUTE, int),
    )


def _number(env: Mapping[str, str], name: str, default: Any, kind: type) -> Any:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r:.40}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number above 0, not {raw!r:.40}")
    return value


def enable_console_traces() -> None:
    """Print every span to stdout (the application configures OpenTelemetry's SDK; the
    library only uses the API). Needs ``pip install opentelemetry-sdk``."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


class _FromEnvironment:
    """``app``, what ``uvicorn examples.fastapi_app.app:app`` runs: the service of
    :func:`app_from_env`, built at the server's start-up (the ASGI lifespan). Missing
    configuration fails the start-up with a message naming it, so the server exits rather
    than answering every request with a 500; importing this module needs no configuration."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            if scope["type"] != "lifespan":
                raise RuntimeError("run the app under an ASGI server with lifespan on")
            try:
                self.app = app_from_env()
            except RuntimeError as exc:
                await receive()  # lifespan.startup
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
        await self.app(scope, receive, send)


app = _FromEnvironment()
