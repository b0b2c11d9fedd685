"""The simulator's endpoints (reference §2): validation, sends, reads, retries, listings."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import server_rules as rules
from . import shapes
from .gateway import error as _error
from .gateway import invalid as _invalid
from .pagination import CursorError, decode_cursor, paginate
from .state import Campaign, SimBatch, SimMessage

if TYPE_CHECKING:
    from .simulator import PostmanSimulator

MAX_BODY_CHARS = 1000  # excluding header and footer (reference §6.8)
TEST_ENVIRONMENT_ROWS = 20  # rows per batch file in the test environment (reference §2.3)
MAX_FULL_MESSAGE_CHARS = 1530
_NRIC = re.compile(r"[STFGM][0-9]{7}[A-Z]")
# Not rejected by the real API as far as documented; rejected in strict mode (§6.8).
_UNSUPPORTED = re.compile(r"[|^€{}\[~\]\\]|[\U0001F000-\U0001FAFF\u2600-\u27BF]")
_RECIPIENT = re.compile(r"[1-9][0-9]{7,14}")
Shape = Callable[["PostmanSimulator", SimMessage], dict[str, Any]]


class Endpoints:
    """The seven endpoints' handlers, over one simulator's state."""

    def __init__(self, sim: PostmanSimulator) -> None:
        self.sim = sim

    def _campaign(self, request: web.Request) -> Campaign:
        return self.sim.campaigns[request.match_info["campaign_id"]]

    # -- validation ------------------------------------------------------------------------

    def _check_message(
        self, campaign: Campaign, recipient: object, language: object, values: object
    ) -> tuple[str, str, dict[str, str]] | str:
        """(recipient, language, values), or the reason they are invalid."""
        if isinstance(recipient, str) and campaign.nric_phones is not None:
            nric = recipient.strip().upper()
            if _NRIC.fullmatch(nric):
                if nric not in campaign.nric_phones:
                    return "No phone number is registered for this NRIC."
                recipient = campaign.nric_phones[nric]
        if not isinstance(recipient, str) or not _valid_recipient(recipient.strip()):
            return "Invalid recipient, ensure it is a valid normalized phone number, eg 6591112222."
        if not isinstance(language, str) or language.lower() not in campaign.languages:
            return (
                f"{language} is not supported. available language(s) for this campaign: "
                f"{', '.join(campaign.languages)}"
            )
        lang = language.lower()
        if not isinstance(values, dict):
            return "Validation failed (expected type is object)"
        expected = campaign.variables(lang)
        missing = sorted(expected - set(values))
        extra = sorted(set(values) - expected)
        if missing:
            return f"Missing template variable(s): {', '.join(missing)}"
        if extra:
            return f"Unknown template variable(s): {', '.join(extra)}"
        for key, value in values.items():
            if not isinstance(value, str) or not value.strip():
                return f"Template variable {key} must be a non-empty string"
        body = campaign.body(lang, values)
        if len(body) > MAX_BODY_CHARS:
            return f"Message body is {len(body)} characters; the limit is {MAX_BODY_CHARS}"
        if len(campaign.render(lang, values)) > MAX_FULL_MESSAGE_CHARS:
            return f"The full message exceeds {MAX_FULL_MESSAGE_CHARS} characters"
        if self.sim.strict_characters and (bad := _UNSUPPORTED.findall(body)):
            return f"Unsupported character(s): {' '.join(sorted(set(bad)))}"
        return recipient.strip(), lang, dict(values)

    # -- endpoints -------------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        campaign = self._campaign(request)
        try:
            body = await request.json()
        except ValueError:
            return _invalid(self.sim, "Request body must be a JSON object")
        if not isinstance(body, dict):
            return _invalid(self.sim, "Request body must be a JSON object")
        checked = self._check_message(
            campaign, body.get("recipient"), body.get("language"), body.get("values")
        )
        if isinstance(checked, str):
            return _invalid(self.sim, checked)
        recipient, language, values = checked
        message = self.sim._new_message(campaign, recipient, language, values, self.sim.now())
        message.attempts.append(self.sim._attempt(message, message.created))
        self.sim.posts.record_send(recipient, values)
        return web.json_response(shapes.message_base(self.sim, message), status=201)

    def _find(self, request: web.Request) -> SimMessage | None:
        message = self.sim.messages.get(request.match_info["message_id"])
        if message is None or message.campaign_id != request.match_info["campaign_id"]:
            return None
        return message

    async def get(self, request: web.Request) -> web.Response:
        message = self._find(request)
        if message is None:
            return _error(self.sim, 404, "not_found", "Message not found", "not_found_error")
        return web.json_response(shapes.message_get(self.sim, message))

    async def retry(self, request: web.Request) -> web.Response:
        message = self._find(request)
        code = rules.NOT_IN_FAILURE
        if message is not None:
            batch = self.sim.batches.get(message.batch_id) if message.batch_id else None
            code = rules.answer_message_retry(
                self.sim._status(message)[0],
                len(message.attempts),
                batch_status=batch.status_at(self.sim.now()) if batch else None,
                attempt_cap=self.sim.max_attempts,
            )
            self.sim.posts.record_retry(message.id, accepted=code == rules.OK)
        if code == rules.TOO_MANY_ATTEMPTS:
            return _error(
                self.sim,
                400,
                code,
                "Message can no longer be retried as it has reached the maximum number of "
                f"attempts of {self.sim.max_attempts}.",
                "domain_error",
            )
        if code != rules.OK or message is None:
            return _error(
                self.sim,
                400,
                rules.NOT_IN_FAILURE,
                "Message cannot be retried as it does not exist or it has not failed.",
                "domain_error",
            )
        message.attempts.append(self.sim._attempt(message, self.sim.now(), retry=True))
        return web.json_response(shapes.message_base(self.sim, message), status=201)

    async def send_batch(self, request: web.Request) -> web.Response:
        campaign = self._campaign(request)
        if not request.content_type.startswith("multipart/"):
            return _invalid(self.sim, "Upload the CSV file as multipart/form-data in field 'file'")
        reader = await request.multipart()
        data: bytes | None = None
        filename = "upload.csv"
        while (part := await reader.next()) is not None:
            if getattr(part, "name", None) != "file":
                continue
            filename = getattr(part, "filename", None) or filename
            chunks, size = [], 0
            while chunk := await part.read_chunk(65536):  # type: ignore[union-attr]
                size += len(chunk)
                if size > self.sim.max_csv_bytes:
                    return _invalid(
                        self.sim,
                        f"File too large, max file size is {self.sim.max_csv_bytes // 2**20}MB",
                    )
                chunks.append(chunk)
            data = b"".join(chunks)
        if data is None:
            return _invalid(self.sim, "A CSV file is required in form field 'file'")
        if not filename.lower().endswith(".csv"):
            return _invalid(self.sim, "Only CSV files are accepted")
        rows = self._parse_batch(campaign, data)
        if isinstance(rows, str):
            return _invalid(self.sim, rows)
        now = self.sim.now()
        batch = SimBatch(
            id=self.sim._new_id("batch"),
            campaign_id=campaign.id,
            original_file_name=filename,
            created=now,
            enqueued_at=now + self.sim.batch_enqueue_delay / self.sim.time_scale,
            updated=now,
        )
        self.sim.batches[batch.id] = batch
        for recipient, language, values in rows:
            message = self.sim._new_message(campaign, recipient, language, values, now, batch.id)
            message.attempts.append(self.sim._attempt(message, now))
            batch.message_ids.append(message.id)
            self.sim.posts.record_send(recipient, values)
        self.sim.posts.record_batch_upload((recipient, values) for recipient, _, values in rows)
        return web.json_response({"isValid": True, "batchId": batch.id}, status=201)

    def _parse_batch(
        self, campaign: Campaign, data: bytes
    ) -> list[tuple[str, str, dict[str, str]]] | str:
        try:
            text = data.decode("utf-8-sig")
            records = list(csv.reader(io.StringIO(text, newline="")))
        except (UnicodeDecodeError, csv.Error) as exc:
            return f"Invalid CSV file: {exc}"
        records = [r for r in records if any(cell.strip() for cell in r)]
        if not records:
            return "Invalid CSV file: the file is empty"
        header = [h.strip().lower() for h in records[0]]
        if "recipient" not in header or "language" not in header:
            return "Invalid CSV file: the header must include recipient and language"
        known = set().union(*(campaign.variables(lang) for lang in campaign.languages))
        unknown = [h for h in header if h not in known | {"recipient", "language"}]
        if unknown or len(set(header)) != len(header):
            return f"Invalid CSV file: unknown or duplicate column(s): {', '.join(unknown)}"
        if len(records) == 1:
            return "Invalid CSV file: no message rows"
        limit = self.sim.max_batch_rows
        if campaign.test_environment:  # reference §2.3: the test environment caps a file
            limit = min(limit or TEST_ENVIRONMENT_ROWS, TEST_ENVIRONMENT_ROWS)
        if limit is not None and len(records) - 1 > limit:
            return f"Invalid CSV file: at most {limit} rows are allowed"
        rows, errors = [], []
        for line, record in enumerate(records[1:], start=2):
            if len(record) != len(header):
                errors.append(f"row {line}: expected {len(header)} columns")
                continue
            cells = dict(zip(header, record, strict=True))
            recipient, language = cells.pop("recipient"), cells.pop("language")
            lang = language.strip().lower()
            values = (
                {k: v for k, v in cells.items() if k in campaign.variables(lang)}
                if (lang in campaign.languages)
                else cells
            )
            checked = self._check_message(campaign, recipient, language.strip(), values)
            if isinstance(checked, str):
                errors.append(f"row {line}: {checked}")
            else:
                rows.append(checked)
            if len(errors) >= 10:
                break
        if errors:
            return "Invalid CSV file: " + "; ".join(errors)
        return rows

    async def retry_batch(self, request: web.Request) -> web.Response:
        campaign = self._campaign(request)
        batch = self.sim.batches.get(request.match_info["batch_id"])
        now = self.sim.now()
        messages = []
        code = rules.BATCH_NOT_RETRYABLE
        if batch is not None and batch.campaign_id == campaign.id:
            messages = [self.sim.messages[i] for i in batch.message_ids]
            code = rules.answer_batch_retry(
                batch.status_at(now),
                ((self.sim._status(m)[0], len(m.attempts)) for m in messages),
                attempt_cap=self.sim.max_attempts,
            )
            self.sim.posts.record_batch_retry(batch.id, code)
        if code == rules.BATCH_NOT_RETRYABLE:
            return _error(
                self.sim,
                400,
                code,
                "Batch cannot be retried as it does not exist or is currently not retryable.",
                "domain_error",
            )
        assert batch is not None
        if code == rules.UNRESOLVED:
            batch.forced_status = rules.BATCH_ENQUEUING_FAILED
            batch.updated = now
            return _error(
                self.sim,
                400,
                code,
                "Batch cannot be retried as there is at least one batch message that is still "
                "unresolved.",
                "domain_error",
            )
        if code == rules.NOTHING_TO_RETRY:
            return _error(
                self.sim,
                400,
                code,
                "Batch cannot be retried as either all messages are successful or all failed "
                "messages have exceeded the maximum number of attempts.",
                "domain_error",
            )
        for message in messages:
            if self.sim._status(message)[0] == rules.FAILURE and rules.attempts_left(
                len(message.attempts), self.sim.max_attempts
            ):
                message.attempts.append(self.sim._attempt(message, now, retry=True))
                self.sim.posts.batch_retried_messages[message.id] += 1
        batch.forced_status = rules.BATCH_ENQUEUED
        batch.updated = now
        return web.Response(status=201)

    def _listing(
        self,
        request: web.Request,
        index_key: str,
        shape: Callable[[PostmanSimulator, SimMessage], dict[str, Any]],
    ) -> web.Response:
        query = request.query
        try:
            limit = int(query.get("limit", "10"))
        except ValueError:
            return _invalid(self.sim, "limit must be an integer from 1 to 1000")
        if not 1 <= limit <= 1000:
            return _invalid(self.sim, "limit must be an integer from 1 to 1000")
        if "after" in query and "before" in query:
            return _invalid(self.sim, "Use either after or before, not both")
        try:
            after = decode_cursor(query["after"]) if "after" in query else None
            before = decode_cursor(query["before"]) if "before" in query else None
        except CursorError:
            return _invalid(self.sim, "Invalid cursor")
        keys, items = self.sim._index[index_key]
        search = query.get("search")
        if search:
            pairs = [(k, m) for k, m in zip(keys, items, strict=True) if search in m.recipient]
            keys, items = [k for k, _ in pairs], [m for _, m in pairs]
        page, page_data = paginate(keys, items, limit=limit, after=after, before=before)
        return web.json_response(
            {"data": [shape(self.sim, m) for m in page], "pageData": page_data}
        )

    async def list_campaign(self, request: web.Request) -> web.Response:
        return self._listing(
            request, request.match_info["campaign_id"], shapes.message_campaign_item
        )

    async def list_batch(self, request: web.Request) -> web.Response:
        batch = self.sim.batches.get(request.match_info["batch_id"])
        if batch is None or batch.campaign_id != request.match_info["campaign_id"]:
            return _error(self.sim, 404, "not_found", "Batch not found", "not_found_error")
        return self._listing(request, f"batch:{batch.id}", shapes.message_batch_item)


def _valid_recipient(recipient: str) -> bool:
    if not _RECIPIENT.fullmatch(recipient):
        return False
    return not recipient.startswith("65") or len(recipient) == 10
