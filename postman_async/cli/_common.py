"""What the commands share: the client from the environment, reading IDs, rendering rows."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import socket
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, BinaryIO, NoReturn

from yarl import URL

from .._console import Output
from .._files import open_private
from .._redact import redact_url
from .._state_file import load_attempt_cap, save_attempt_cap
from ..client import PostmanClient
from ..errors import ValidationError
from ..models import Message
from ._exit import EXIT_NETWORK, CliError

MESSAGE_COLUMNS = ["id", "recipient", "status", "attempts", "last error", "created"]


def output(args: argparse.Namespace) -> Output:
    return Output(fmt="json" if getattr(args, "json", False) else getattr(args, "format", "table"))


#: An API key file larger than this is not a key file (the key is about 50 bytes).
MAX_KEY_FILE_BYTES = 4096
#: An IDs file's line longer than this is refused (an ID is at most 200 characters).
MAX_LINE_BYTES = 4096
#: IDs are read this many bytes at a time.
READ_CHUNK = 1 << 16


def api_key(args: argparse.Namespace) -> str:
    """The key from ``--api-key-file`` / ``POSTMAN_API_KEY_FILE``, else ``POSTMAN_API_KEY``."""
    path = getattr(args, "api_key_file", None)
    if path:
        key = read_key_file(path)
        if not key:
            raise CliError(f"the API key file {path} is empty")
        return key
    from_env = os.environ.get("POSTMAN_API_KEY")
    if not from_env:
        raise CliError("set POSTMAN_API_KEY, or give --api-key-file, for the campaign's API key")
    return from_env


def read_key_file(path: str) -> str:
    """A key file's text, stripped: a regular file or a pipe, at most ``MAX_KEY_FILE_BYTES``,
    UTF-8. Its content is never echoed in an error."""
    check_readable(path, "the API key file")
    try:
        with open(path, "rb") as handle:
            check_opened(handle.fileno(), path, "the API key file")
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise CliError(f"cannot read the API key file {path}: {exc.strerror}") from exc
    if len(data) > MAX_KEY_FILE_BYTES:
        raise CliError(
            f"the API key file {path} is larger than {MAX_KEY_FILE_BYTES} bytes: not a key file"
        )
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CliError(f"the API key file {path} is not UTF-8 text") from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_readable(path: str, what: str) -> bool:
    """Refuse (``CliError``, exit 2) a path that is not a regular file or a pipe (FIFO), before
    it is opened: a directory, a device such as ``/dev/zero``, a socket. True for a regular
    file, False for a pipe."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise CliError(f"cannot read {what} {path}: {_kind(mode)}, not a file")
    return stat.S_ISREG(mode)


def spool_if_piped(path: str) -> str | None:
    """Read IDs from stdin (``-``) or a pipe to their end into a private temporary file, and
    return its path (None for a regular file, read as it is). So the command that writes them
    (``list ... -q |``) has finished spending the campaign's budget before the first retry
    call: two processes at 10/s each would meet a 429. Bad lines stop it here (exit 2)."""
    if path != "-" and check_readable(path, "the IDs file"):
        return None
    reader = LineReader.open(path)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept past this function
        "w", encoding="utf-8", prefix="postman-async-ids-", suffix=".txt", delete=False
    )
    try:
        with handle:
            while batch := reader.next_batch():
                handle.writelines(f"{line}\n" for line in batch)
    except BaseException:
        os.remove(handle.name)
        raise
    finally:
        reader.close()
    return handle.name


def check_opened(fd: int, path: str, what: str) -> None:
    """The same check on the opened file (the path may have changed since it was checked)."""
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise CliError(f"cannot read {what} {path}: {_kind(mode)}, not a file")


def client(args: argparse.Namespace) -> CampaignClient:
    """The campaign's client, for ``async with``: checked (the key, the campaign, the
    environment) before anything is sent, with the attempt cap learned in earlier runs."""
    key = api_key(args)
    if not args.campaign:
        raise CliError("give --campaign or set POSTMAN_CAMPAIGN_ID")
    if args.base_url and not args.base_url.rstrip("/").endswith("/api/v2"):
        args.suspect_base_url = True  # a 404 then says "bad input" (exit 2), not "not found"
        print(
            f"postman-async: hint: the API's base URL ends in /api/v2; "
            f"{redact_url(args.base_url)} does not, so every call may answer 404",
            file=sys.stderr,
        )
    return CampaignClient(
        PostmanClient(
            api_key=key,
            campaign_id=args.campaign,
            base_url=args.base_url,
            rate_limit=args.rate_limit,
            timeout=args.timeout,
            max_retries=args.max_retries,
            environment=getattr(args, "environment", None),
        )
    )


#: Resolver answers that another try will not change: the name does not exist.
_NO_SUCH_NAME = {
    getattr(socket, name)
    for name in ("EAI_NONAME", "EAI_NODATA", "EAI_FAIL")
    if hasattr(socket, name)
}


class CampaignClient:
    """``async with client(args) as api``: on entry, the host's name must resolve (a name
    that does not exist is told at once, exit 8, not after a round of retries) and the
    attempt cap learned in earlier runs is loaded; on exit, what was learned is kept
    (``_state_file``) and the client is closed."""

    def __init__(self, api: PostmanClient) -> None:
        self.api = api

    async def __aenter__(self) -> PostmanClient:
        await resolvable(self.api.base_url)
        known = await asyncio.to_thread(load_attempt_cap, self.api.campaign_id, self.api.base_url)
        self.api.attempt_cap.lower, self.api.attempt_cap.upper = known.lower, known.upper
        self._loaded = (known.lower, known.upper)
        return self.api

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            cap = self.api.attempt_cap
            if (cap.lower, cap.upper) != self._loaded:
                await asyncio.to_thread(
                    save_attempt_cap, self.api.campaign_id, self.api.base_url, cap
                )
        finally:
            await self.api.aclose()


async def resolvable(base_url: str) -> None:
    """Raise ``CliError`` (exit 8) if the base URL's host name does not resolve."""
    host = URL(base_url).raw_host or ""
    try:
        ipaddress.ip_address(host)
        return  # an address: nothing to resolve
    except ValueError:
        pass
    try:
        await asyncio.get_running_loop().getaddrinfo(host, None)
    except socket.gaierror as exc:
        if exc.errno in _NO_SUCH_NAME:
            raise CliError(
                f"cannot resolve host {host}: {exc.strerror} (check --base-url or "
                "POSTMAN_BASE_URL)",
                EXIT_NETWORK,
            ) from None


async def ids(args: argparse.Namespace) -> AsyncIterator[str]:
    """The IDs given as arguments, then those of ``--ids-file`` (or stdin), streamed."""
    for message_id in args.message_ids:
        yield message_id
    if args.ids_file:
        async for line in lines_of(args.ids_file):
            yield line


async def lines_of(path: str) -> AsyncIterator[str]:
    """A file's (or stdin's, for ``-``) non-empty lines that are not ``#`` comments,
    stripped and streamed (never the whole file in memory).

    Only a regular file or a pipe is read (``CliError``, exit 2, for a directory or a device),
    in chunks of ``READ_CHUNK`` bytes. A line longer than ``MAX_LINE_BYTES`` or not UTF-8
    raises :class:`ValidationError` naming its line number, having read at most one chunk
    past it."""
    reader = await asyncio.to_thread(LineReader.open, path)
    try:
        while batch := await asyncio.to_thread(reader.next_batch):
            for text in batch:
                yield text
    finally:
        reader.close()


class LineReader:
    """The IDs of a file or stdin, read in bounded chunks (see :func:`lines_of`)."""

    def __init__(self, handle: BinaryIO, name: str, *, regular: bool, owned: bool) -> None:
        self._handle = handle
        self.name = name
        #: a regular file (it can be read again); False for a pipe or stdin
        self.regular = regular
        self._owned = owned
        self._rest = b""
        self._line = 0  # lines split off so far
        self._done = False

    @classmethod
    def open(cls, path: str) -> LineReader:
        """A reader of ``path`` (``-``: stdin). Raises ``CliError`` (exit 2) for a path that
        cannot be read or is not a regular file or a pipe."""
        if path == "-":
            stdin: Any = getattr(sys.stdin, "buffer", None)
            if stdin is None:
                raise CliError("cannot read the IDs from stdin: it is not a byte stream")
            return cls(stdin, "stdin", regular=False, owned=False)
        regular = check_readable(path, "the IDs file")
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise CliError(f"cannot read the IDs file {path}: {exc.strerror}") from exc
        try:
            check_opened(handle.fileno(), path, "the IDs file")
        except BaseException:
            handle.close()
            raise
        return cls(handle, path, regular=regular, owned=True)

    def close(self) -> None:
        if self._owned:
            self._handle.close()

    def _read(self) -> bytes:
        read1 = getattr(self._handle, "read1", None)  # what a pipe has now, up to a chunk
        try:
            data = read1(READ_CHUNK) if read1 is not None else self._handle.read(READ_CHUNK)
        except OSError as exc:
            raise CliError(f"cannot read the IDs file {self.name}: {exc.strerror}") from exc
        return bytes(data)

    def next_batch(self) -> list[str]:
        """The next IDs (lines stripped, blank lines and ``#`` comments left out); ``[]`` at
        the end of the input."""
        while not self._done:
            chunk = self._read()
            if chunk:
                *lines, rest = (self._rest + chunk).split(b"\n")
            else:
                self._done = True
                lines, rest = ([self._rest] if self._rest else []), b""
            batch = [text for raw in lines if (text := self._decode(raw))]
            if len(rest) > MAX_LINE_BYTES:  # no end of line in sight: read no further
                self._too_long(self._line + 1)
            self._rest = rest
            if batch:
                return batch
        return []

    def _decode(self, raw: bytes) -> str:
        self._line += 1
        if len(raw) > MAX_LINE_BYTES:
            self._too_long(self._line)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(
                "ids_file",
                f"{self.name}: line {self._line} is not UTF-8 text "
                f"(byte {exc.start + 1} of the line)",
            ) from None
        if self._line == 1:
            text = text.removeprefix("\ufeff")  # a byte order mark
        text = text.strip()
        return "" if text.startswith("#") else text

    def _too_long(self, line: int) -> NoReturn:
        raise ValidationError(
            "ids_file",
            f"{self.name}: line {line} is longer than {MAX_LINE_BYTES} bytes (one ID per line)",
        )


def write_lines(path: str, lines: Sequence[str]) -> None:
    """Write ``lines`` to ``path``, private to its owner (mode 0600)."""
    with open_private(path) as handle:
        handle.writelines(f"{line}\n" for line in lines)


def when(moment: datetime | None) -> str:
    """A short local timestamp."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def message_row(m: Message) -> list[Any]:
    return [
        m.id,
        m.recipient or "",
        m.latest_status or "",
        m.attempt_count if m.attempt_count is not None else "",
        last_error(m),
        when(m.created_at),
    ]


def last_error(m: Message) -> str:
    attempt = m.latest_attempt
    if attempt is not None and attempt.error_code:
        return (
            f"{attempt.error_type}/{attempt.error_code}"
            if attempt.error_type
            else attempt.error_code
        )
    if m.error:
        return m.error
    return "(not given in this listing)" if m.latest_status == "failure" else ""


def counts_text(counts: dict[str, int]) -> str:
    """``{"a": 1, "b": 2}`` as ``a 1, b 2`` (never a Python repr)."""
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "none"
