"""Exit codes a script can trust, and the one-line message for each error."""

from __future__ import annotations

from .. import errors
from .._redact import redact_text

EXIT_OK = 0
EXIT_OTHER = 1  # another API error (5xx, an answer that could not be read)
EXIT_INPUT = 2  # bad input: arguments, IDs, values, or the server's 400 for the request
EXIT_AUTH = 3  # the key, the campaign, the IP or the permission was refused
EXIT_BUDGET = 4  # rate limit (429) or the retry budget spent
EXIT_NOT_FIRED = 5  # retry-batch did not fire
EXIT_NOT_FOUND = 6  # nothing asked for exists
EXIT_PARTIAL = 7  # some of what was asked was done, some not (see the report)
EXIT_NETWORK = 8  # the server could not be reached (connection, DNS, timeout)
EXIT_LOST = 9  # a job's data was lost by Redis (check persistence: AOF, noeviction)
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM, after printing (and saving) what was done

EXIT_CODES_HELP = """exit codes:
  0    everything asked for was done
  1    another API error (the server failed: 5xx, or an answer that could not be read)
  2    bad input (arguments, IDs, values, a base URL with no such route), also when the
       server answers 400 (as when it refuses every retry asked for)
  3    authentication: the key or campaign was refused, IP not allowed, no permission
  4    rate limit (429) or retry budget exhausted
  5    retry-batch did not fire
  6    nothing found: no message or batch asked for exists
  7    partial: some of it was done, some not (the summary and --report say which)
  8    network: the server could not be reached (connection refused, a host name that
       does not resolve, timeout)
  9    job lost: Redis lost the job's data (check AOF and noeviction; submit it again)
  130  interrupted (Ctrl-C or SIGTERM), after printing what was done"""


class CliError(Exception):
    """A command cannot run as asked; ``code`` is its exit code."""

    def __init__(self, message: str, code: int = EXIT_INPUT) -> None:
        super().__init__(message)
        self.code = code


def exit_code(exc: BaseException) -> int:
    """The documented exit code for an error that stopped a command."""
    code = getattr(exc, "code", None)
    if isinstance(exc, CliError) or (
        isinstance(code, int) and not isinstance(exc, errors.APIError)
    ):
        return int(code) if isinstance(code, int) else EXIT_INPUT
    if isinstance(
        exc, (errors.AuthenticationError, errors.IpNotAllowedError, errors.PermissionDeniedError)
    ):
        return EXIT_AUTH
    if isinstance(exc, (errors.TooManyRequestsError, errors.RetryBudgetExhaustedError)):
        return EXIT_BUDGET
    if isinstance(exc, errors.NotFoundError):
        # invalid_path: no such route, so the base URL is wrong (bad input), not the IDs
        return EXIT_INPUT if exc.code == "invalid_path" else EXIT_NOT_FOUND
    if isinstance(exc, (errors.ValidationError, errors.BadRequestError)):
        return EXIT_INPUT
    if isinstance(exc, errors.TransportError) and not isinstance(
        exc, errors.MalformedResponseError
    ):
        return EXIT_NETWORK
    if isinstance(exc, errors.RateLimiterUnavailableError):
        return EXIT_NETWORK
    return EXIT_OTHER


def describe(exc: BaseException) -> str:
    """The error's message, with a hint where the answer allows one, and any URL credential
    in it masked (``redis://:***@host``)."""
    text = redact_text(str(exc))
    if isinstance(exc, errors.AuthenticationError):
        text += (
            " (check POSTMAN_API_KEY; if the key is right, check that --campaign is the campaign "
            "this key belongs to)"
        )
    elif isinstance(exc, errors.PermissionDeniedError):
        text += " (the key is valid but not for this campaign: check --campaign)"
    elif isinstance(exc, errors.NotFoundError) and exc.code == "invalid_path":
        text += " (no such route: the base URL must end in /api/v2)"
    return text
