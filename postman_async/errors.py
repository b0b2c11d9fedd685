"""The exception tree: every error the SDK raises is a :class:`PostmanError`.

- :class:`ValidationError`: bad input, caught before any request is sent.
- :class:`APIError`: the server answered with an error status; one subclass per documented code.
- :class:`TransportError`: no usable answer (connection, timeout, malformed or oversized body).
- :class:`OutcomeUnknownError`: a POST may or may not have been applied; it was not re-sent.
  A send or batch upload that lost its answer is read back first: :class:`NotSentError`
  (not found by then) and :class:`AmbiguousSendError` (several candidates) say what was found.
- :class:`RetryBudgetExhaustedError`: the campaign's HTTP retry budget is spent (an outage).
- :class:`DuplicateUploadError`: a batch upload whose file already exists on the server (the
  opt-in guard); :class:`PartialUploadError`: a split upload that stopped after some parts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class PostmanError(Exception):
    """Root of every error raised by postman_async."""


class ValidationError(PostmanError, ValueError):
    """Input rejected on the client before any request was sent."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"invalid {field}: {reason}")


class APIError(PostmanError):
    """The API answered with an error status.

    ``status`` is the HTTP status; ``code``, ``message``, ``type`` and ``error_id`` come from
    the ``{"error": {...}}`` envelope (or the bare ``{"message", "statusCode"}`` body).
    """

    def __init__(
        self,
        status: int,
        code: str | None = None,
        message: str | None = None,
        type: str | None = None,
        error_id: str | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.type = type
        self.error_id = error_id
        self.method = method
        self.path = path
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [f"HTTP {self.status}"]
        if self.code:
            parts.append(self.code)
        text = ": ".join(parts)
        if self.message:
            text += f" - {self.message}"
        if self.method and self.path:
            text += f" ({self.method} {self.path})"
        if self.error_id:
            text += f" [error id {self.error_id}]"
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_api_error,
            (type(self), self.status, self.code, self.message, self.type, self.error_id),
        )


def _rebuild_api_error(cls: type[APIError], *args: Any) -> APIError:
    return cls(*args)


class BadRequestError(APIError):
    """HTTP 400 without a more specific documented code."""


class ParameterInvalidError(BadRequestError):
    """``parameter_invalid``: the server rejected a parameter (recipient, language, values, CSV)."""


class MessageNotRetryableError(BadRequestError):
    """``message_not_found_or_retry_message_not_in_failure_status``: no such message, or it is
    not in ``failure`` (also raised when its batch's status does not allow a retry)."""


class TooManyAttemptsError(BadRequestError):
    """``too_many_message_attempts_error``: the message has used all its attempts."""


class BatchNotRetryableError(BadRequestError):
    """``batch_not_found_or_is_not_retryable``: no such batch, or its status forbids a retry."""


class UnresolvedBatchMessagesError(BadRequestError):
    """``unresolved_batch_messages``: a batch message is still ``created``. The server has now
    set the batch to ``messages_enqueuing_failed``."""


class NoFailedBatchMessagesError(BadRequestError):
    """``no_failed_batch_messages_to_retry``: nothing in the batch is failed with attempts left."""


class IpNotAllowedError(APIError):
    """``invalid_ip_address_used`` / ``invalid_ip_address_error``: caller IP not whitelisted."""


class AuthenticationError(APIError):
    """HTTP 401: no key, or a key that is not valid for this campaign."""


class InvalidApiKeyError(AuthenticationError):
    """``invalid_api_key_provided``: the key is wrong, deleted, or for another campaign."""


class PermissionDeniedError(APIError):
    """HTTP 403 (e.g. an edge block, "error code 1010")."""


class NotFoundError(APIError):
    """HTTP 404 (unknown message, campaign or route)."""


class TooManyRequestsError(APIError):
    """HTTP 429 ``too_many_requests``: the campaign's rate limit was exceeded; the call was
    dropped. ``retry_after`` is the server's hint in seconds, when it sent one."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(*args, **kwargs)


class ServerError(APIError):
    """HTTP 5xx."""


class TransportError(PostmanError):
    """No usable HTTP answer."""


class PostmanConnectionError(TransportError):
    """The connection failed or was reset."""


class PostmanTimeoutError(TransportError):
    """The request timed out."""


class MalformedResponseError(TransportError):
    """The body could not be decoded into the documented shape (or was too large)."""


class OutcomeUnknownError(PostmanError):
    """A POST may have been applied, but no answer proves it either way. It was NOT re-sent,
    because Postman has no idempotency key and a re-send could deliver a second SMS.

    ``cause`` is the underlying failure; ``observed`` is the message as read while
    reconciling, when the read succeeded; ``applied`` is what that read proves: ``True`` (it
    was applied), ``False`` (it was not, as of the read) or ``None`` (unknown). ``sent_at`` is
    the session clock's time when the ambiguous attempt was sent.
    """

    def __init__(
        self,
        description: str,
        *,
        cause: BaseException | None = None,
        observed: Any = None,
        applied: bool | None = None,
        sent_at: float | None = None,
    ) -> None:
        self.cause = cause
        self.observed = observed
        self.applied = applied
        self.sent_at = sent_at
        super().__init__(description)


class AmbiguousSendError(OutcomeUnknownError):
    """A send or batch upload lost its answer, and reading back found more than one message
    (or batch) that could be it, or one that could not be placed in time. Nothing was
    re-sent. ``candidates``: the messages (:class:`~postman_async.models.Message`) or batches
    (:class:`~postman_async.models.BatchSendResult`) found, newest first; ``applied`` is
    ``None``. Check them (and your own other sends) before sending again."""

    def __init__(
        self,
        description: str,
        *,
        candidates: tuple[Any, ...] = (),
        cause: BaseException | None = None,
        sent_at: float | None = None,
    ) -> None:
        super().__init__(
            description, cause=cause, observed=candidates, applied=None, sent_at=sent_at
        )
        self.candidates = tuple(candidates)


class NotSentError(OutcomeUnknownError):
    """A send or batch upload lost its answer, and reading back did not find it: *not found
    by then*, never *certainly not sent* (a request still in flight at the server could
    create it later). It was not re-sent, unless ``resend_if_not_found`` asked for one
    re-send. ``applied`` is ``False`` (as of the last read).

    ``recipient``: the recipient searched, masked but for its last 4 digits;
    ``searched_from``: the earliest creation time searched (the POST's time on the server's
    clock, less the skew allowance); ``searched_at``: the server's time of the last read;
    ``reads``: the listing reads made; ``resent``: whether this was the one opted-in re-send.
    """

    def __init__(
        self,
        description: str,
        *,
        recipient: str | None = None,
        searched_from: datetime | None = None,
        searched_at: datetime | None = None,
        reads: int = 0,
        resent: bool = False,
        cause: BaseException | None = None,
        sent_at: float | None = None,
    ) -> None:
        super().__init__(description, cause=cause, applied=False, sent_at=sent_at)
        self.recipient = recipient
        self.searched_from = searched_from
        self.searched_at = searched_at
        self.reads = reads
        self.resent = resent


class DuplicateUploadError(PostmanError):
    """A batch upload refused by the duplicate-upload guard (``guard_window``): the file (or
    part ``part`` of a split upload) already exists on the server as batch ``batch_id``,
    created at ``created_at``, within the window. Nothing of this part was sent.

    ``batch_id`` is ``None`` when the guard could not rule an earlier upload out (the probe
    recipient has too many messages in the window, or too many batches could be it:
    ``candidates``). Send anyway with ``guard_window=None`` (``--again`` on the command line).
    """

    def __init__(
        self,
        description: str,
        *,
        batch_id: str | None,
        created_at: datetime | None = None,
        part: int = 1,
        candidates: tuple[str, ...] = (),
    ) -> None:
        super().__init__(description)
        self.batch_id = batch_id
        self.created_at = created_at
        self.part = part
        self.candidates = tuple(candidates)


class PartialUploadError(PostmanError):
    """A split batch upload stopped at part ``part`` of ``parts``: the parts before it were
    sent (``sent``: :class:`~postman_async.models.BatchPart`, each with its batch id and
    rows) and ``error`` stopped the rest. Part ``part`` (rows ``first_row`` on) may exist
    when ``error`` is an :class:`OutcomeUnknownError` other than :class:`NotSentError`; the
    parts after it were not sent."""

    def __init__(
        self,
        description: str,
        *,
        sent: tuple[Any, ...],
        part: int,
        parts: int,
        first_row: int,
        error: PostmanError,
    ) -> None:
        super().__init__(description)
        self.sent = tuple(sent)
        self.part = part
        self.parts = parts
        self.first_row = first_row
        self.error = error


class RetryBudgetExhaustedError(PostmanError):
    """The campaign's HTTP retry budget is spent: retrying now would only multiply traffic."""

    def __init__(self, description: str, *, cause: BaseException | None = None) -> None:
        self.cause = cause
        super().__init__(description)


class RateLimiterUnavailableError(PostmanError):
    """The shared rate limiter (Redis) cannot be reached and no fallback is configured: the
    call was not sent, so the campaign's budget is never exceeded silently."""


_ERRORS_BY_CODE: dict[str, type[APIError]] = {
    "parameter_invalid": ParameterInvalidError,
    "message_not_found_or_retry_message_not_in_failure_status": MessageNotRetryableError,
    "too_many_message_attempts_error": TooManyAttemptsError,
    "batch_not_found_or_is_not_retryable": BatchNotRetryableError,
    "unresolved_batch_messages": UnresolvedBatchMessagesError,
    "no_failed_batch_messages_to_retry": NoFailedBatchMessagesError,
    "invalid_ip_address_used": IpNotAllowedError,
    "invalid_ip_address_error": IpNotAllowedError,
    "invalid_api_key_provided": InvalidApiKeyError,
    "authentication_required": AuthenticationError,
    "too_many_requests": TooManyRequestsError,
    "invalid_path": NotFoundError,
    "not_found": NotFoundError,
}

_ERRORS_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: TooManyRequestsError,
}


def error_class_for(status: int, code: str | None) -> type[APIError]:
    """The most specific class for an error answer: by documented code, else by status."""
    if code and code in _ERRORS_BY_CODE:
        return _ERRORS_BY_CODE[code]
    if status in _ERRORS_BY_STATUS:
        return _ERRORS_BY_STATUS[status]
    if status >= 500:
        return ServerError
    return APIError
