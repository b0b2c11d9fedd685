"""Client-side input validation: bad input raises a typed :class:`ValidationError` before any
request is built, so it never reaches the network.

Recipient normalisation (documented in the README): surrounding whitespace is stripped, then
spaces, hyphens, dots and parentheses between digits and one leading ``+`` are removed, so
``"+65 9123-4567"`` becomes ``"6591234567"``. The result must be 8-15 digits, not start with 0,
carry a country code (a bare 8-digit Singapore number is refused, not guessed), and a ``65``
number must have exactly 8 digits after the code.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from collections.abc import Iterator, Mapping
from typing import Any

from yarl import URL

from ._redact import redact_url
from .errors import ValidationError
from .models import Language

LANGUAGES: tuple[str, ...] = tuple(lang.value for lang in Language)
RESERVED_VALUE_KEYS = frozenset({"recipient", "language"})
MAX_ID_LENGTH = 200
MAX_PAGE_SIZE = 1000
MAX_CSV_BYTES = 40 * 1024 * 1024

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_SEPARATORS = re.compile(r"[ \-.()]")
_NORMALISED = re.compile(r"[1-9][0-9]{7,14}")
_SG_LOCAL = re.compile(r"[3689][0-9]{7}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_API_KEY = re.compile(r"[\x21-\x7e]+")


def validate_id(kind: str, value: object) -> str:
    """A message, batch or campaign ID: non-empty, no slashes, whitespace or control chars."""
    if not isinstance(value, str):
        raise ValidationError(kind, f"must be a string, got {type(value).__name__}")
    if not value:
        raise ValidationError(kind, "must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ValidationError(kind, f"longer than {MAX_ID_LENGTH} characters")
    if not _ID.fullmatch(value):
        raise ValidationError(
            kind,
            f"{_show(value)} may only hold letters, digits and _ . : - "
            "(no slashes, whitespace or control characters)",
        )
    return value


def normalize_recipient(value: object) -> str:
    """Normalise a phone number to the API's form: digits with country code, no ``+``."""
    if not isinstance(value, str):
        raise ValidationError("recipient", f"must be a string, got {type(value).__name__}")
    text = value.strip()
    if _CONTROL.search(text):
        raise ValidationError("recipient", "contains control characters")
    if text.startswith("+"):
        text = text[1:]
    digits = _SEPARATORS.sub("", text)
    if not _NORMALISED.fullmatch(digits):
        raise ValidationError(
            "recipient",
            f"{_show(value)} is not a phone number with country code, e.g. 6591234567",
        )
    if _SG_LOCAL.fullmatch(digits):
        raise ValidationError(
            "recipient", f"{_show(value)} has no country code; for Singapore use 65{digits}"
        )
    if digits.startswith("65") and len(digits) != 10:
        raise ValidationError(
            "recipient", f"{_show(value)}: a Singapore number is 65 followed by 8 digits"
        )
    return digits


def validate_language(value: object) -> str:
    """One of english, chinese, malay, tamil (case-insensitive); returned lower-case."""
    if isinstance(value, Language) and value.is_known:
        return value.value
    if not isinstance(value, str) or value.strip().lower() not in LANGUAGES:
        raise ValidationError("language", f"{_show(value)} is not one of {', '.join(LANGUAGES)}")
    return value.strip().lower()


def validate_values(value: object) -> dict[str, str]:
    """Template values: a mapping of variable name to a non-empty string."""
    if not isinstance(value, Mapping):
        raise ValidationError("values", f"must be a mapping, got {type(value).__name__}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key.strip():
            raise ValidationError("values", f"variable names must be non-empty strings: {key!r}")
        if key in RESERVED_VALUE_KEYS:
            raise ValidationError("values", f"{key!r} is reserved and cannot be a variable")
        if _CONTROL.search(key):
            raise ValidationError("values", f"variable name {_show(key)} has control characters")
        if not isinstance(item, str):
            raise ValidationError("values", f"{key!r} must be a string, got {type(item).__name__}")
        if not item.strip():
            raise ValidationError("values", f"{key!r} must not be empty")
        out[key] = item
    return out


def validate_page_size(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_PAGE_SIZE:
        raise ValidationError("page_size", f"must be an integer from 1 to {MAX_PAGE_SIZE}")
    return value


def validate_search(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("search", "must be a non-empty string")
    if _CONTROL.search(value):
        raise ValidationError("search", "contains control characters")
    return value.strip()


def validate_cursor(value: object, field: str = "cursor") -> str | None:
    """A pagination cursor as the API returned it (base64 text)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 4096:
        raise ValidationError(field, "must be a non-empty cursor string returned by the API")
    if not re.fullmatch(r"[A-Za-z0-9+/=_-]+", value):
        raise ValidationError(field, "is not a cursor returned by the API")
    return value


def validate_api_key(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError("api_key", "must be a non-empty string")
    if not _API_KEY.fullmatch(value):
        # Never echo the key itself.
        raise ValidationError("api_key", "contains whitespace or control characters")
    return value


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_base_url(value: object, *, allow_idn: bool = False) -> URL:
    """An https URL, or plain http to a loopback host only (the simulator).

    An internationalised host name (non-ASCII, or a punycode ``xn--`` label) is refused
    unless ``allow_idn``: ``https://p\u043estman.gov.sg`` (a Cyrillic ``\u043e``) reads
    as Postman's host but is another, so the error shows its punycode form
    (``xn--pstman-wqf.gov.sg``). Credentials in the URL are refused and never echoed."""
    if not isinstance(value, (str, URL)):
        raise ValidationError("base_url", f"must be a string, got {type(value).__name__}")
    text = str(value)
    shown = _show(redact_url(text))
    if _CONTROL.search(text):
        raise ValidationError("base_url", "contains control characters")
    try:
        url = URL(text.rstrip("/"))
        host = url.raw_host  # ASCII: IDNA-encoded (punycode) where the name is not
    except (ValueError, TypeError) as exc:
        raise ValidationError("base_url", f"cannot parse {shown}") from exc
    if url.scheme not in ("https", "http") or not host:
        raise ValidationError("base_url", f"{shown} must be an absolute https URL")
    if url.scheme == "http" and not is_loopback_host(host):
        raise ValidationError(
            "base_url", f"plain http is only allowed to loopback hosts, not {host!r}"
        )
    if url.query_string or url.fragment or url.raw_user or url.raw_password:
        raise ValidationError("base_url", "must not carry a query, fragment or credentials")
    if not allow_idn and any(label.startswith("xn--") for label in host.lower().split(".")):
        raise ValidationError(
            "base_url",
            f"the host {host} (its punycode form) is an internationalised name, which may "
            "imitate another host with look-alike letters (a Cyrillic 'o' for a Latin one); "
            "it is refused unless allow_idn=True",
        )
    return url


def csv_records(rows: Any) -> Iterator[list[str]]:
    """The records of a batch CSV built from row mappings: the header
    (``recipient,language,<variables>``), then one checked, normalised record per row.

    Every row must have the same variables. Raises :class:`ValidationError` naming the row."""
    header: list[str] | None = None
    for index, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise ValidationError(
                "rows", f"row {index} must be a mapping, got {type(row).__name__}"
            )
        fields = dict(row)
        try:
            recipient = normalize_recipient(fields.pop("recipient", None))
            language = validate_language(fields.pop("language", None))
            values = validate_values(fields)
        except ValidationError as exc:
            raise ValidationError("rows", f"row {index}: {exc}") from exc
        if header is None:
            header = list(values)
            yield ["recipient", "language", *header]
        elif set(values) != set(header):
            raise ValidationError(
                "rows",
                f"row {index} has variables {sorted(values)}, the first row has {sorted(header)}",
            )
        yield [recipient, language, *(values[k] for k in header)]
    if header is None:
        raise ValidationError("rows", "a batch needs at least one row")


def rows_to_csv(rows: Any) -> bytes:
    """Build one batch CSV file (``recipient,language,<variables>``) from row mappings, of
    at most the API's 40 MB (:data:`MAX_CSV_BYTES`).

    Every row must have the same variables. Built with the csv module so commas, quotes and
    newlines in values survive.
    """
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(csv_records(rows))
    data = buf.getvalue().encode("utf-8")
    _check_csv_size(data)
    return data


def check_csv_header(header: list[str] | None) -> list[str]:
    """A batch CSV's header record, checked as the API will: its column names, trimmed and
    lower-cased (``recipient`` and ``language`` among them, none empty or repeated)."""
    if not header:
        raise ValidationError("csv", "is empty")
    names = [h.strip() for h in header]
    lowered = [n.lower() for n in names]
    if "recipient" not in lowered or "language" not in lowered:
        raise ValidationError("csv", "header must contain 'recipient' and 'language' columns")
    if len(set(lowered)) != len(lowered) or any(not n for n in names):
        raise ValidationError("csv", "header has empty or duplicate column names")
    return lowered


def check_csv_record(columns: list[str], record: list[str], row: int) -> bool:
    """One record of a batch CSV, checked as the API will (``row``: its number, the header
    being row 1). ``False`` for a blank record, which the API skips."""
    if not any(cell.strip() for cell in record):
        return False
    if len(record) != len(columns):
        counts = f"{len(record)} cells, header has {len(columns)}"
        raise ValidationError("csv", f"row {row} has {counts}")
    cells = dict(zip(columns, record, strict=True))
    try:
        normalize_recipient(cells.pop("recipient"))
        validate_language(cells.pop("language"))
        validate_values(cells)
    except ValidationError as exc:
        raise ValidationError("csv", f"row {row}: {exc}") from exc
    return True


#: Bad rows named in one error; the rest are counted.
MAX_ROW_ERRORS = 20


class RowErrors:
    """Checks a CSV's records and keeps going past a bad one, so that one run names every
    bad row (the first :data:`MAX_ROW_ERRORS`, then how many more)."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.count = 0

    def check(self, columns: list[str], record: list[str], row: int) -> bool:
        """:func:`check_csv_record`, a bad record counted instead of raised (``False``)."""
        try:
            return check_csv_record(columns, record, row)
        except ValidationError as exc:
            self.count += 1
            if len(self.reasons) < MAX_ROW_ERRORS:
                self.reasons.append(exc.reason)
            return False

    def raise_if_any(self) -> None:
        """Raise one :class:`ValidationError` naming the bad rows, if there were any."""
        if not self.count:
            return
        more = self.count - len(self.reasons)
        listed = "; ".join(self.reasons) + (f"; and {more} more" if more else "")
        rows = "1 bad row" if self.count == 1 else f"{self.count} bad rows"
        raise ValidationError("csv", f"{rows}: {listed}")


def validate_csv(data: bytes) -> bytes:
    """Check one existing batch CSV file as the API will: size, header, recipients,
    languages, values. (A larger input is split into files by ``send_batch``.)"""
    _check_csv_size(data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)].count(b"\n")
        raise ValidationError("csv", f"is not UTF-8 text (line {line + 1})") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    errors = RowErrors()
    try:
        columns = check_csv_header(next(reader, None))
        rows = sum(errors.check(columns, record, n) for n, record in enumerate(reader, 2))
    except csv.Error as exc:
        raise ValidationError("csv", f"cannot be parsed: {exc}") from exc
    errors.raise_if_any()
    if rows == 0:
        raise ValidationError("csv", "has no message rows")
    return data


def _check_csv_size(data: bytes) -> None:
    if len(data) > MAX_CSV_BYTES:
        raise ValidationError("csv", "is larger than the API's 40 MB limit")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
