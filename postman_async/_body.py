"""Response bodies decoded under a cap on their DECODED size (a gzip bomb cannot exhaust memory).

aiohttp's own decompression is turned off for our requests (``auto_decompress=False``, per
request, so a session the caller passed is covered too) and :class:`BoundedDecoder` undoes the
``Content-Encoding`` here, in steps of at most :data:`STEP` decoded bytes: the cap is checked
after every step, so what is held never exceeds the cap plus one step, whatever the ratio.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Iterator
from typing import Any

from .errors import MalformedResponseError

STEP = 64 * 1024  # decoded bytes produced per step, at most (brotli: about twice that)
MAX_MEMBERS = 1024  # concatenated gzip/deflate members in one body


def _bounded_brotli() -> Any:
    """Google's ``brotli`` module, if installed with the bounded ``process`` (Brotli >= 1.2)."""
    try:
        module = importlib.import_module("brotli")
        module.Decompressor().process(b"", output_buffer_limit=1)
    except Exception:  # absent, or too old to bound its output: br is not asked for
        return None
    return module


_brotli = _bounded_brotli()
ACCEPT_ENCODING = "gzip, deflate, br" if _brotli is not None else "gzip, deflate"
_CORRUPT: tuple[type[Exception], ...] = (zlib.error, *([_brotli.error] if _brotli else []))


class UndecodableError(Exception):
    """The body's ``Content-Encoding`` is unknown, or its bytes do not decode."""


class _Zlib:
    """gzip, or deflate (zlib-wrapped or raw, sniffed like aiohttp), members concatenated."""

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._member: Any = None  # the decompressobj of the member being decoded
        self._members = 0

    def decode(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self._member is None:
                self._members += 1
                if self._members > MAX_MEMBERS:
                    raise UndecodableError(f"more than {MAX_MEMBERS} compressed members")
                wbits = zlib.MAX_WBITS  # deflate with its zlib header
                if self._gzip:
                    wbits += 16
                elif data[0] & 0x0F != 8:  # no zlib header: raw deflate
                    wbits = -wbits
                self._member = zlib.decompressobj(wbits)
            member = self._member
            yield member.decompress(data, STEP)  # never more than STEP bytes out
            if member.eof:
                data, self._member = member.unused_data, None
            else:
                data = member.unconsumed_tail  # input left over when STEP was reached

    def finish(self) -> None:
        if self._member is not None:  # a member begun and never ended
            raise UndecodableError("truncated compressed body")


class _Brotli:
    def __init__(self) -> None:
        self._decoder = _brotli.Decompressor()
        self._fed = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        self._fed = self._fed or bool(data)
        yield self._decoder.process(data, output_buffer_limit=STEP)
        while not self._decoder.can_accept_more_data():  # output held back: drain it
            yield self._decoder.process(b"", output_buffer_limit=STEP)

    def finish(self) -> None:
        if self._fed and not self._decoder.is_finished():
            raise UndecodableError("truncated compressed body")


class _Identity:
    def decode(self, data: bytes) -> Iterator[bytes]:
        yield data

    def finish(self) -> None:
        pass


class BoundedDecoder:
    """Undoes ``encoding`` (a ``Content-Encoding`` value) on a body fed in chunks, refusing
    it with :class:`MalformedResponseError` once more than ``limit`` bytes decode, or more
    than :attr:`max_input` bytes arrive. Other failures raise :class:`UndecodableError`."""

    def __init__(self, encoding: str | None, limit: int) -> None:
        self.limit = limit
        self.size = 0  # decoded bytes so far
        self.received = 0  # encoded bytes so far
        self._parts: list[bytes] = []
        name = (encoding or "").strip().lower() or "identity"
        self._codec: _Zlib | _Brotli | _Identity
        if name == "identity":
            self._codec = _Identity()
            self.max_input = limit
        else:
            if name in ("gzip", "x-gzip", "deflate"):
                self._codec = _Zlib(gzip=name != "deflate")
            elif name == "br" and _brotli is not None:
                self._codec = _Brotli()
            else:
                raise UndecodableError(f"unsupported Content-Encoding {encoding!r}")
            # Compressing never grows data by more than a few bytes per 16 KiB block.
            self.max_input = limit + limit // 8 + 1024

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.max_input:
            raise MalformedResponseError(f"response larger than {self.max_input} bytes refused")
        try:
            for piece in self._codec.decode(data):
                self.size += len(piece)
                if self.size > self.limit:
                    raise MalformedResponseError(
                        f"response larger than {self.limit} bytes (decoded) refused"
                    )
                self._parts.append(piece)
        except _CORRUPT as exc:
            raise UndecodableError(f"compressed body does not decode ({exc})") from exc

    def finish(self) -> bytes:
        """The decoded body, once every chunk was fed."""
        self._codec.finish()
        body = b"".join(self._parts)
        self._parts = []
        return body
