"""Cursor pagination as the API documents it: newest first by (createdAt, id); cursors are
base64 of the JSON array ``[createdAt, id]``; ``after=endCursor`` goes to older items,
``before=startCursor`` to newer ones."""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")
Key = tuple[str, str]


class CursorError(ValueError):
    pass


def encode_cursor(key: Key) -> str:
    return base64.b64encode(json.dumps(list(key)).encode()).decode()


def decode_cursor(cursor: str) -> Key:
    try:
        data = json.loads(base64.b64decode(cursor.encode(), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise CursorError("invalid cursor") from exc
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(x, str) for x in data)):
        raise CursorError("invalid cursor")
    return (data[0], data[1])


def paginate(
    keys: Sequence[Key],
    items: Sequence[T],
    *,
    limit: int,
    after: Key | None = None,
    before: Key | None = None,
) -> tuple[list[T], dict[str, Any]]:
    """A page of ``items`` (sorted ascending by ``keys``), returned newest first."""
    total = len(keys)
    if after is not None:
        end = bisect.bisect_left(keys, after)
        start = max(0, end - limit)
    elif before is not None:
        start = bisect.bisect_right(keys, before)
        end = min(total, start + limit)
    else:
        end = total
        start = max(0, end - limit)
    chosen = list(reversed(items[start:end]))
    chosen_keys = list(reversed(keys[start:end]))
    page_data: dict[str, Any] = {
        "hasNextPage": start > 0,
        "hasPreviousPage": end < total,
        "startCursor": encode_cursor(chosen_keys[0]) if chosen else None,
        "endCursor": encode_cursor(chosen_keys[-1]) if chosen else None,
    }
    if not chosen:
        page_data["hasNextPage"] = page_data["hasPreviousPage"] = False
    return chosen, page_data
