"""Listings as async iterators: every page of a cursor-paginated endpoint, newest first."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from .errors import MalformedResponseError
from .models import Message, Page


class MessagePages:
    """A listing: ``async for message in pages`` follows the ``after`` cursor through every
    page; :meth:`pages` yields whole pages; :meth:`fetch` gets one page by cursor."""

    def __init__(self, fetch: Callable[..., Awaitable[Page]]) -> None:
        self._fetch = fetch

    async def fetch(self, *, after: str | None = None, before: str | None = None) -> Page:
        """One page: the newest, or the one after/before a cursor."""
        return await self._fetch(after=after, before=before)

    async def pages(
        self, *, before_each: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncGenerator[Page, None]:
        """Every page, following ``after``; ``before_each`` is awaited before each fetch."""
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            if before_each is not None:
                await before_each()
            page = await self._fetch(after=cursor, before=None)
            yield page
            cursor = page.next_cursor
            if cursor is None:
                return
            if cursor in seen:
                raise MalformedResponseError("the API returned a cursor it returned before")
            seen.add(cursor)

    async def _messages(self) -> AsyncIterator[Message]:
        async for page in self.pages():
            for message in page.data:
                yield message

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._messages()
