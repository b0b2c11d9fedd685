"""Security: the response cap counts DECODED bytes, so a compression bomb cannot exhaust memory.

A 1 MB gzip (or deflate) body with an honest ``Content-Length`` that inflates to 1 GiB is
served over real loopback HTTP; the client must refuse it with a typed error while its peak
RSS (measured in a subprocess, ``VmHWM`` reset before the call) grows by less than 64 MB.
Around that: normal
compressed bodies still decode, the cap is exact on the decoded size, unknown or corrupt
encodings are typed errors, a session passed in is protected too, and identity bodies with a
lying ``Content-Length`` behave as they always did.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import struct
import sys
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import postman_async as pa
from postman_async import _body
from postman_async._body import STEP, BoundedDecoder, UndecodableError

from ..helpers import no_sleep

CID = "c1"
KEY = "key_test_k"
GIB = 1 << 30
MESSAGE = {
    "id": "message_1",
    "recipient": "6591234567",
    "latestStatus": "created",
    "createdAt": "2024-05-16T10:30:50.904+08:00",
}
MESSAGE_JSON = json.dumps(MESSAGE).encode()
RSS_BUDGET_KB = 64 * 1024  # peak RSS growth allowed while a bomb is refused
# br is asked for, and tested, only with a brotli whose output can be bounded (Brotli >= 1.2).
BROTLI = _body._brotli
ENCODINGS = ["gzip", "deflate"] + (["br"] if BROTLI else [])


@functools.cache
def bomb(encoding: str, size: int = GIB) -> bytes:
    """``size`` zero bytes (a multiple of 1 MiB) compressed with ``encoding`` (``gzip``,
    ``deflate`` = zlib-wrapped, ``raw`` = headerless deflate), built without holding them:
    after a full flush the compressor forgets its past, so every 1 MiB block compresses to
    the same bytes; the trailer's checksum is computed block by block."""
    block = bytes(1 << 20)
    if encoding == "br":
        brotli = BROTLI.Compressor(quality=5)
        return b"".join(brotli.process(block) for _ in range(size >> 20)) + brotli.finish()
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    piece = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = piece * (size >> 20) + compressor.flush()
    crc, adler = 0, 1
    for _ in range(size >> 20):
        crc, adler = zlib.crc32(block, crc), zlib.adler32(block, adler)
    if encoding == "gzip":
        header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
        return header + stream + struct.pack("<II", crc, size & 0xFFFFFFFF)
    if encoding == "deflate":
        return b"\x78\xda" + stream + struct.pack(">I", adler)
    return stream


def compress(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "br":
        return bytes(BROTLI.compress(data))
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)  # "raw": no zlib header
    return compressor.compress(data) + compressor.flush()


@dataclass
class Reply:
    body: bytes
    status: int = 200
    encoding: str | None = None
    chunked: bool = False


@dataclass
class Server:
    """A loopback aiohttp.web server answering each ``(method, path)`` with a set reply."""

    base: str = ""
    replies: dict[tuple[str, str], Reply] = field(default_factory=dict)
    hits: dict[tuple[str, str], int] = field(default_factory=dict)
    accept_encoding: list[str | None] = field(default_factory=list)

    def serve(self, method: str, message_id: str, reply: Reply) -> None:
        suffix = "/retry" if method == "POST" else ""
        self.replies[method, f"/api/v2/campaigns/{CID}/messages/{message_id}{suffix}"] = reply

    def hit(self, method: str, message_id: str) -> int:
        suffix = "/retry" if method == "POST" else ""
        return self.hits.get((method, f"/api/v2/campaigns/{CID}/messages/{message_id}{suffix}"), 0)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = (request.method, request.path)
        self.hits[key] = self.hits.get(key, 0) + 1
        self.accept_encoding.append(request.headers.get("Accept-Encoding"))
        reply = self.replies.get(key)
        if reply is None:
            return web.Response(status=404)
        headers = {"Content-Type": "application/json"}
        if reply.encoding is not None:
            headers["Content-Encoding"] = reply.encoding
        if not reply.chunked:  # Content-Length: the COMPRESSED size, honestly
            return web.Response(body=reply.body, status=reply.status, headers=headers)
        response = web.StreamResponse(status=reply.status, headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for start in range(0, len(reply.body), 65536):
                await response.write(reply.body[start : start + 65536])
            await response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass  # the client hung up once it had seen enough
        return response


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    served = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", served.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    served.base = f"http://127.0.0.1:{port}/api/v2"
    yield served
    await runner.cleanup()


def client(base: str, **options: Any) -> pa.PostmanClient:
    return pa.PostmanClient(api_key=KEY, campaign_id=CID, base_url=base, rate_limit=1000, **options)


# -- the bomb, end to end, memory measured in a subprocess -----------------------------------

_MEASURE = r"""
import asyncio, json, resource, sys
import postman_async as pa

def rss_kb():  # resident now
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024

def peak_kb():  # the peak since the last reset (ru_maxrss would include the forking parent's)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

async def main(base, method):
    async with pa.PostmanClient(
        api_key="key_test_k", campaign_id="c1", base_url=base, rate_limit=1000
    ) as client:
        await client.get_message("warm")  # imports, connection, first parse: before measuring
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset the peak resident size to what is resident now
        before = {"peak": peak_kb(), "rss": rss_kb()}
        # A regression must fail here, not swap the machine: 1 GiB more address space at most.
        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (size + (1 << 30), resource.RLIM_INFINITY))
        call = client.get_message if method == "GET" else client.retry_message
        try:
            await call("bomb")
            error = None
        except pa.PostmanError as exc:
            error = [type(exc).__name__, str(exc)]
        after = peak_kb()
    print(json.dumps({"before": before, "after": after, "error": error}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def measure(base: str, method: str) -> Any:
    """Run the call in a fresh interpreter, its peak resident size reset just before it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-c",
        _MEASURE,
        base,
        method,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0 and not err, err.decode()
    return json.loads(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("method", "status"), [("GET", 200), ("POST", 400), ("POST", 200)])
async def test_bomb_refused_with_bounded_memory(
    server: Server, encoding: str, method: str, status: int
) -> None:
    server.serve("GET", "warm", Reply(compress(encoding, MESSAGE_JSON), encoding=encoding))
    server.serve(method, "bomb", Reply(bomb(encoding), status=status, encoding=encoding))
    result = await measure(server.base, method)
    # Typed, whatever the status: the body is refused while it is read, before its status
    # is looked at (a 2xx POST is never re-sent, and neither is the GET: same bomb again).
    assert result["error"] is not None, result
    name, message = result["error"]
    assert name == "MalformedResponseError" and "decoded" in message and "refused" in message
    assert server.hit(method, "bomb") == 1
    before, after = result["before"], result["after"]
    growth_kb = after - before["rss"]  # the peak during the call, over what was resident
    print(f"{encoding} {method} {status}: peak RSS grew {growth_kb / 1024:.1f} MiB")
    assert growth_kb < RSS_BUDGET_KB, result


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_chunked_bomb_refused(server: Server, encoding: str) -> None:
    server.serve("GET", "bomb", Reply(bomb(encoding, 256 << 20), encoding=encoding, chunked=True))
    async with client(server.base, max_retries=0, max_response_bytes=1 << 20) as c:
        with pytest.raises(pa.MalformedResponseError, match=r"decoded\) refused"):
            await c.get_message("bomb")


def test_bomb_is_a_valid_stream() -> None:
    for encoding, wbits in (("gzip", 31), ("deflate", 15), ("raw", -15)):
        assert zlib.decompress(bomb(encoding, 4 << 20), wbits) == bytes(4 << 20)
    if BROTLI:
        assert BROTLI.decompress(bomb("br", 4 << 20)) == bytes(4 << 20)
    assert len(bomb("gzip")) < 1_100_000  # ~1 MB on the wire, 1 GiB decoded


# -- the cap is on the decoded size, exactly -------------------------------------------------


@pytest.mark.parametrize("encoding", [*ENCODINGS, "raw", None])
async def test_cap_is_exact_on_decoded_bytes(server: Server, encoding: str | None) -> None:
    body = MESSAGE_JSON + b" " * 5000  # 5 kB of JSON whitespace: compresses to ~150 bytes
    wire = body if encoding is None else compress(encoding, body)
    header = "deflate" if encoding == "raw" else encoding
    server.serve("GET", "message_1", Reply(wire, encoding=header))
    async with client(server.base, max_retries=0, max_response_bytes=len(body)) as at_cap:
        assert (await at_cap.get_message("message_1")).id == "message_1"
    async with client(server.base, max_retries=0, max_response_bytes=len(body) - 1) as over:
        with pytest.raises(pa.MalformedResponseError, match="refused"):
            await over.get_message("message_1")
    assert server.hit("GET", "message_1") == 2


@pytest.mark.parametrize("encoding", [*ENCODINGS, "x-gzip", "raw"])
async def test_compressed_json_still_decodes(server: Server, encoding: str) -> None:
    wire = compress("gzip" if encoding == "x-gzip" else encoding, MESSAGE_JSON)
    header = "deflate" if encoding == "raw" else encoding.upper()  # case does not matter
    server.serve("GET", "message_1", Reply(wire, encoding=header, chunked=encoding == "gzip"))
    async with client(server.base) as c:
        assert (await c.get_message("message_1")).id == "message_1"
    # Only what the bounded decoder undoes is asked for (aiohttp would add br and zstd).
    assert server.accept_encoding == [_body.ACCEPT_ENCODING]
    assert set(_body.ACCEPT_ENCODING.split(", ")) <= {"gzip", "deflate", "br"}


async def test_concatenated_gzip_members_decode(server: Server) -> None:
    half = len(MESSAGE_JSON) // 2
    wire = gzip.compress(MESSAGE_JSON[:half]) + gzip.compress(MESSAGE_JSON[half:])
    server.serve("GET", "message_1", Reply(wire, encoding="gzip"))
    async with client(server.base) as c:
        assert (await c.get_message("message_1")).id == "message_1"


async def test_error_status_body_is_decoded(server: Server) -> None:
    error = {"error": {"code": "too_many_message_attempts_error", "message": "no more"}}
    wire = gzip.compress(json.dumps(error).encode())
    server.serve("POST", "message_1", Reply(wire, status=400, encoding="gzip"))
    async with client(server.base) as c:
        with pytest.raises(pa.TooManyAttemptsError):
            await c.retry_message("message_1")


# -- a session passed in gets the same protection --------------------------------------------


async def test_user_session_is_protected(server: Server) -> None:
    server.serve("GET", "bomb", Reply(bomb("gzip", 64 << 20), encoding="gzip"))
    server.serve("GET", "message_1", Reply(gzip.compress(MESSAGE_JSON), encoding="gzip"))
    async with (
        aiohttp.ClientSession(auto_decompress=True) as session,
        client(server.base, session=session, max_retries=0, max_response_bytes=1 << 20) as c,
    ):
        tracemalloc.start()
        try:
            with pytest.raises(pa.MalformedResponseError, match=r"decoded\) refused"):
                await c.get_message("bomb")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 8 << 20  # 1 MiB cap + steps + the 64 kB-compressed bomb's chunks
        assert (await c.get_message("message_1")).id == "message_1"
    assert server.accept_encoding == [_body.ACCEPT_ENCODING] * 2


# -- unknown, corrupt, truncated encodings: typed, with the usual retry rules ----------------


UNKNOWN = ["compress", "zstd", "gzip, gzip", "x-custom"] + ([] if _body._brotli else ["br"])


@pytest.mark.parametrize("encoding", UNKNOWN)
async def test_unknown_encoding_is_a_typed_error(server: Server, encoding: str) -> None:
    server.serve("GET", "message_1", Reply(MESSAGE_JSON, encoding=encoding))
    server.serve("POST", "message_1", Reply(MESSAGE_JSON, encoding=encoding))
    server.serve("POST", "message_2", Reply(MESSAGE_JSON, status=400, encoding=encoding))
    async with client(server.base, max_retries=2, sleep=no_sleep) as c:
        with pytest.raises(pa.MalformedResponseError, match="Content-Encoding"):
            await c.get_message("message_1")
        assert server.hit("GET", "message_1") == 3  # a GET with an undecodable body: retried
        with pytest.raises(pa.MalformedResponseError, match="Content-Encoding"):
            await c.retry_message("message_1")  # a 2xx POST: raised, never re-sent
        assert server.hit("POST", "message_1") == 1
        with pytest.raises(pa.BadRequestError) as caught:
            await c.retry_message("message_2")  # an error status still maps by status
        assert caught.value.status == 400 and server.hit("POST", "message_2") == 1


@pytest.mark.parametrize(
    "wire",
    [
        gzip.compress(MESSAGE_JSON)[:-12],  # truncated: no end of stream
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"garbage!" * 8,  # corrupt deflate data
        gzip.compress(MESSAGE_JSON) + b"trailing",  # a second "member" that is not gzip
    ],
    ids=["truncated", "corrupt", "trailing-garbage"],
)
async def test_corrupt_gzip_is_a_typed_error(server: Server, wire: bytes) -> None:
    server.serve("GET", "message_1", Reply(wire, encoding="gzip"))
    server.serve("POST", "message_1", Reply(wire, encoding="gzip"))
    async with client(server.base, max_retries=1, sleep=no_sleep) as c:
        with pytest.raises(pa.MalformedResponseError, match="refused"):
            await c.get_message("message_1")
        with pytest.raises(pa.MalformedResponseError, match="refused"):
            await c.retry_message("message_1")
    assert server.hit("GET", "message_1") == 2 and server.hit("POST", "message_1") == 1


async def test_empty_gzip_body_is_empty(server: Server) -> None:
    server.serve("POST", "message_1", Reply(b"", status=400, encoding="gzip"))
    async with client(server.base) as c:
        with pytest.raises(pa.BadRequestError):
            await c.retry_message("message_1")


# -- identity bodies with a lying Content-Length: as before ----------------------------------


async def raw_server(
    response: bytes,
) -> tuple[asyncio.Server, str, Callable[[], Awaitable[None]]]:
    """A TCP server that answers every request with ``response`` as is, then hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    tcp = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]

    async def close() -> None:
        tcp.close()
        await tcp.wait_closed()

    return tcp, f"http://127.0.0.1:{port}/api/v2", close


def http_response(length: int, body: bytes, close: bool = False) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
    return head.encode() + (b"Connection: close\r\n" if close else b"") + b"\r\n" + body


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        # Declares less than it sends: aiohttp refuses the extra bytes (nothing buffered).
        (http_response(20, MESSAGE_JSON + b"x" * 3_000_000), pa.PostmanConnectionError),
        (http_response(20, MESSAGE_JSON + b"x" * 3_000_000, close=True), pa.PostmanConnectionError),
        # Declares more than it sends, then hangs up: a connection error.
        (http_response(500, MESSAGE_JSON), pa.PostmanConnectionError),
        # Declares more than the cap: refused before reading.
        (http_response(5000, MESSAGE_JSON), pa.MalformedResponseError),
        (http_response(len(MESSAGE_JSON), MESSAGE_JSON), None),  # honest: decoded
    ],
    ids=["less", "less-close", "more", "over-cap", "honest"],
)
async def test_lying_content_length_identity(
    response: bytes, expected: type[pa.PostmanError] | None
) -> None:
    """The same outcomes as before the cap counted decoded bytes (checked against it)."""
    _, base, close = await raw_server(response)
    try:
        async with client(base, max_retries=0, max_response_bytes=1000) as c:
            if expected is None:
                assert (await c.get_message("message_1")).id == "message_1"
            else:
                with pytest.raises(expected):
                    await c.get_message("message_1")
    finally:
        await close()


# -- the bounded decoder on its own ----------------------------------------------------------


def chunks(data: bytes, size: int = 65536) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decoder_holds_at_most_the_cap_plus_a_step(encoding: str) -> None:
    wire = bomb(encoding, 256 << 20)
    decoder = BoundedDecoder(encoding, 1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(pa.MalformedResponseError, match=r"decoded\) refused"):
            decoder.feed(wire[:65536])  # ONE network chunk: ~64 MB once inflated
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoder.size <= (1 << 20) + 2 * STEP  # brotli may overshoot a step 1.5x
    assert peak < (1 << 20) + 6 * STEP + 2 * 65536


def test_decoder_exact_cap_and_members() -> None:
    data = b"0123456789" * 1000
    wire = gzip.compress(data[:3000]) + gzip.compress(data[3000:])
    decoder = BoundedDecoder("gzip", len(data))
    for chunk in chunks(wire, 7):  # members split anywhere
        decoder.feed(chunk)
    assert decoder.finish() == data
    decoder = BoundedDecoder("gzip", len(data) - 1)
    with pytest.raises(pa.MalformedResponseError):
        for chunk in chunks(wire, 7):
            decoder.feed(chunk)


def test_decoder_refusals() -> None:
    with pytest.raises(UndecodableError, match="unsupported"):
        BoundedDecoder("lzma", 100)
    many = gzip.compress(b"") * (_body.MAX_MEMBERS + 1)
    with pytest.raises(UndecodableError, match="members"):
        BoundedDecoder("gzip", 1 << 20).feed(many)
    # Input that decodes to almost nothing is still bounded: by the encoded bytes received.
    empty_blocks = b"\x00\x00\x00\xff\xff" * 100_000  # raw deflate: endless empty stored blocks
    decoder = BoundedDecoder("deflate", 1000)
    with pytest.raises(pa.MalformedResponseError, match="refused"):
        for chunk in chunks(empty_blocks):
            decoder.feed(chunk)
    assert decoder.size == 0
    identity = BoundedDecoder(None, 10)
    identity.feed(b"0123456789")
    assert identity.finish() == b"0123456789"
    with pytest.raises(pa.MalformedResponseError):
        BoundedDecoder("identity", 10).feed(b"01234567890")
