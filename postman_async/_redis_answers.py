"""The answer clock of :class:`~postman_async.ratelimit_redis.RedisRateLimiter` (pacing
"answers"): one campaign's grants from every process, paced by the answers any process saw.
The rules are :mod:`postman_async.answer_clock`'s; the state and the clock (``TIME``) are
Redis's; see :data:`postman_async._redis_lua.ANSWERS` for the script.

In a process: callers queue FIFO in two lanes, and one driver task per lane (alive only while
its lane has waiters) asks Redis for slots for them, several per round trip, and hands them
out; ``HIGH`` before ``BULK``. The ``HIGH`` driver reserves every slot whose gate is known,
however far ahead, taking over any slot promised to ``BULK`` first. The ``BULK`` driver is only
*promised* slots, and confirms each just before it is due (``CONFIRM_LEAD``); a promise that a
``HIGH`` caller (of any process) took meanwhile is replaced by a new one. So an urgent call
waits for no bulk work, and the ``BULK`` drivers of many processes do not all ask Redis for
every slot. While this process has ``HIGH`` callers waiting, its ``BULK`` driver waits.

A caller sleeps until its slot and then goes, however late it woke: its successor waits for
its answer, so a late write cannot crowd anyone (a caller woken more than half the cap late
gives its grant back: the cap is the one assumption, see :mod:`postman_async.answer_clock`).

Reports (written, answered or lost, never written) are queued and sent by a flusher task
(alive only while there is something to send), or ride along with the next round trip; they
are never on a request's critical path. Each carries its age, not a time (see the script).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._redis_grants import WHY, Ask, RedisGrant, Reply, Slot
from .answer_clock import CREDIT_AFTER, CREDIT_FRACTION, RTT_SAMPLES
from .models import Priority

logger = logging.getLogger("postman_async")

#: s: a BULK promise is confirmed this long before it is due
CONFIRM_LEAD = 0.005
#: s: a HIGH driver blocked on an answer asks again this much before the earliest slot (so
#: it comes before the BULK drivers, which ask at that time), plus a random share of it (so
#: the HIGH drivers of several processes do not all ask at once)
HIGH_LEAD = 0.01
#: s: polling while an answer is overdue: the first gap, doubled up to ``POLL_MAX``
POLL_MIN = 0.001
POLL_MAX = 0.02
#: most slots one round trip reserves, and most reports one carries
MAX_BATCH = 256
MAX_REPORTS = 512
#: s: a write is reported this late unless its answer (which supersedes it) or another report
#: goes first; Redis needs it only if no answer comes within ``cap`` (2 s)
WRITE_REPORT_DELAY = 0.25

#: the script's round trip
Call = Callable[[Ask], Awaitable[Reply]]
Waiter = tuple["asyncio.Future[RedisGrant | None]", float]


class _Lane:
    __slots__ = ("high", "napping", "napping_on_answer", "task", "waiters", "wake")

    def __init__(self, high: bool) -> None:
        self.high = high
        #: (future, when it began waiting), FIFO
        self.waiters: collections.deque[Waiter] = collections.deque()
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        self.napping = False
        self.napping_on_answer = False

    def live(self) -> int:
        while self.waiters and self.waiters[0][0].done():
            self.waiters.popleft()
        return sum(1 for fut, _ in self.waiters if not fut.done())

    def oldest(self) -> float:
        """When the longest-waiting caller began waiting (call :meth:`live` first)."""
        return self.waiters[0][1]

    def pop(self) -> asyncio.Future[RedisGrant | None] | None:
        while self.waiters:
            fut, _ = self.waiters.popleft()
            if not fut.done():
                return fut
        return None


class AnswerClockClient:
    """This process's side of a campaign's shared answer clock: the lanes and their drivers,
    the reports and their flusher. ``call`` makes one round trip to the script (see
    :data:`Call`); it raises what Redis raises, and ``transient`` says which of that means
    Redis is unavailable."""

    def __init__(
        self,
        call: Call,
        *,
        cap: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transient: tuple[type[BaseException], ...] = (OSError,),
    ) -> None:
        self._call = call
        self.cap = cap
        self.now = clock
        self._sleep = sleep
        self._transient = transient
        self._high = _Lane(high=True)
        self._bulk = _Lane(high=False)
        self._pending: list[tuple[str, int, float]] = []
        self._writes: dict[int, float] = {}  # writes not reported yet, by grant
        self._write_timer: asyncio.TimerHandle | None = None
        self._writes_due = False
        self._flusher: asyncio.Task[None] | None = None
        self._rtts: collections.deque[float] = collections.deque(maxlen=RTT_SAMPLES)
        self._rng = random.Random()
        self._outstanding: dict[int, RedisGrant] = {}
        #: BULK slots promised to this process, not confirmed yet (slot order)
        self._promised: collections.deque[Slot] = collections.deque()
        self._last_release = -float("inf")
        self._closing = False  # no new callers
        self._closed = False  # no new reports either
        #: the error that made the last waiters fall back (None: Redis answered)
        self.error: BaseException | None = None
        self.grants = 0
        self.lost_answers = 0
        #: grants given back unsent (their callers gave up, or never wrote)
        self.given_back = 0
        #: grants whose callers woke more than half the cap late (given back, queued again)
        self.stale = 0
        #: BULK slots promised to this process
        self.promises = 0
        #: what set the slots this process was given, by :data:`WHY`
        self.slot_reasons: collections.Counter[str] = collections.Counter()
        self.reserve_calls = 0
        self.report_calls = 0
        self.max_credit = 0.0

    # -- reports ----------------------------------------------------------------------------

    @property
    def credit(self) -> float:
        """The share of the smallest recent round trip counted as the legs' delay, as in
        :mod:`postman_async.answer_clock` (0 there by default)."""
        if len(self._rtts) < CREDIT_AFTER:
            return 0.0
        return CREDIT_FRACTION * min(self._rtts)

    def round_trip(self, seconds: float) -> None:
        self._rtts.append(seconds)
        self.max_credit = max(self.max_credit, self.credit)

    def forget(self, grant: RedisGrant, released: float | None = None) -> None:
        self._outstanding.pop(grant.id, None)
        if released is not None:
            self._last_release = max(self._last_release, released)

    def horizon(self) -> float:
        """When every grant this process was given passed the server's limiter, at the
        latest, as far as known now (-inf: none)."""
        latest = self._last_release
        for grant in self._outstanding.values():
            latest = max(latest, grant.deadline)
        return latest

    def report(self, kind: str, grant_id: int, at: float) -> None:
        """Queue a report: ``w`` (written), ``f`` (passed the server's limiter by ``at``)
        or ``u`` (never written). An outcome goes at once; a write waits a little, and is
        dropped if the outcome comes first."""
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside the loop: the next round trip takes it along
            loop = None
        if kind == "w":
            self._writes[grant_id] = at
            if self._write_timer is None and loop is not None and not self._closing:
                self._write_timer = loop.call_later(WRITE_REPORT_DELAY, self._report_writes)
            return
        self._writes.pop(grant_id, None)
        self._pending.append((kind, grant_id, at))
        if self._flusher is None and loop is not None:
            self._flusher = loop.create_task(self._flush())

    def _report_writes(self) -> None:
        self._write_timer = None
        if self._writes and not self._closed:
            self._writes_due = True
            if self._flusher is None:
                self._flusher = asyncio.get_running_loop().create_task(self._flush())

    def _take(self) -> list[tuple[str, int, float]]:
        """Reports to send: the outcomes first, and the writes along with them."""
        taken, self._pending = self._pending[:MAX_REPORTS], self._pending[MAX_REPORTS:]
        for grant_id in list(self._writes)[: MAX_REPORTS - len(taken)]:
            taken.append(("w", grant_id, self._writes.pop(grant_id)))
        self._writes_due = self._writes_due and bool(self._writes)
        return taken

    def _put_back(self, reports: list[tuple[str, int, float]]) -> None:
        """Reports that did not get through; the ones too old to matter are dropped (their
        grants' gates have passed in Redis anyway)."""
        oldest = self.now() - 2 * (self.cap + 1.0)
        outcomes = []
        for kind, grant_id, at in reports:
            if at < oldest:
                continue
            if kind != "w":
                outcomes.append((kind, grant_id, at))
            elif grant_id in self._outstanding:  # not superseded by its outcome meanwhile
                self._writes.setdefault(grant_id, at)
        self._pending[:0] = outcomes

    def _args(self, reports: list[tuple[str, int, float]]) -> list[Any]:
        now = self.now()
        args: list[Any] = [len(reports)]
        for kind, grant_id, at in reports:
            args += [kind, grant_id, max(0, int((now - at) * 1e6))]
        return args

    async def _flush(self) -> None:
        try:
            while (self._pending or self._writes_due) and not self._closed:
                reports = self._take()
                try:
                    await self._call(Ask(0, False, 0.0, [], self._args(reports)))
                except self._transient:
                    self._put_back(reports)
                    self._wake_blocked()  # to find out, and fall back
                    return  # Redis is down: the next round trip takes them along
                self.report_calls += 1
                if any(kind != "w" for kind, _, _ in reports):
                    self._wake_blocked()
        finally:
            self._flusher = None

    def _wake_blocked(self) -> None:
        for lane in (self._high, self._bulk):
            if lane.napping_on_answer:
                lane.wake.set()

    # -- grants -----------------------------------------------------------------------------

    async def acquire(self, priority: Priority) -> RedisGrant | None:
        """Wait for a slot and until it is due. None: Redis failed (``error`` says how)."""
        if self._closing:
            raise RuntimeError("the limiter is closed")
        lane = self._high if priority == Priority.HIGH else self._bulk
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[RedisGrant | None] = loop.create_future()
        lane.waiters.append((fut, self.now()))
        if lane.task is None:
            lane.task = loop.create_task(self._drive(lane))
        try:
            grant = await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and (given := fut.result()) is not None:
                given.unsent()  # handed a slot just as we were cancelled: give it back
            raise
        if grant is None:
            return None
        wait = grant.due - self.now()
        if wait > 0:
            try:
                await self._sleep(wait)
            except BaseException:
                grant.unsent()
                raise
        if self.now() - grant.due > self.cap / 2:
            # Stopped for longer than the cap allows: sent now, it might reach the server
            # after the deadline its successors were given. Give it back and queue again.
            grant.unsent()
            self.stale += 1
            return await self.acquire(priority)
        self.grants += 1
        return grant

    async def _drive(self, lane: _Lane) -> None:
        try:
            if lane.high:
                await self._drive_high(lane)
            else:
                await self._drive_bulk(lane)
        except self._transient as exc:
            self.error = exc
            while (fut := lane.pop()) is not None:
                fut.set_result(None)
        except Exception as exc:  # a bug: fail the callers rather than leave them hanging
            logger.exception("rate limiter driver failed")
            while (fut := lane.pop()) is not None:
                fut.set_exception(exc)
        finally:
            lane.task = None
            if lane.high and self._bulk.waiters:
                self._bulk.wake.set()
            if not lane.high:
                self._give_back_promises()

    async def _ask(self, lane: _Lane, want: int, confirm: list[int]) -> Reply:
        reports = self._take()
        ask = Ask(min(want, MAX_BATCH), not lane.high, self.now() - lane.oldest(), confirm, [])
        try:
            reply = await self._call(ask._replace(reports=self._args(reports)))
        except self._transient:
            self._put_back(reports)
            raise
        self.reserve_calls += 1
        self.error = None
        return reply

    async def _drive_high(self, lane: _Lane) -> None:
        poll = POLL_MIN
        while not self._closing and (want := lane.live()):
            reply = await self._ask(lane, want, [])
            for slot in reply.slots:
                self._hand_out(lane, slot)
            if reply.status == 0:
                poll = POLL_MIN
                continue
            # An answer is awaited: ask when the next slot could be due (no earlier slot can
            # come of it), then poll, and ask again when this process reports an answer.
            ahead = reply.wait - HIGH_LEAD * (1 + self._rng.random())
            polling = ahead <= 0
            if polling:
                ahead, poll = poll, min(POLL_MAX, poll * 2)
            await self._nap(lane, ahead, on_answer=polling)

    async def _drive_bulk(self, lane: _Lane) -> None:
        """Promises for the waiting callers, each confirmed just before it is due."""
        promised = self._promised
        poll = POLL_MIN
        blocked_until: float | None = None  # an answer is awaited: no new promise till then
        polling = woken = False
        while not self._closing:
            live = lane.live()
            if not live:
                return
            if self._high.live():
                await self._nap(lane, None)  # HIGH first: woken when its lane empties
                continue
            while len(promised) > live:  # callers gave up: free the latest promises
                self.report("u", promised.pop().id, self.now())
            now = self.now()
            due = [slot for slot in promised if slot.due - CONFIRM_LEAD <= now]
            want = live - len(promised)
            asking = want > 0 and (blocked_until is None or now >= blocked_until or woken)
            if not due and not asking:
                wakes = [min(slot.due for slot in promised) - CONFIRM_LEAD] if promised else []
                if want > 0 and blocked_until is not None:
                    wakes.append(blocked_until)
                on_answer = want > 0 and polling
                woken = await self._nap(lane, max(0.0, min(wakes) - now), on_answer=on_answer)
                continue
            reply = await self._ask(lane, want, [slot.id for slot in due])
            woken = False
            for slot in due:
                promised.remove(slot)
                if slot.id in reply.confirmed:
                    self._hand_out(lane, slot)
            promised.extend(reply.slots)
            self.promises += len(reply.slots)
            if want and reply.status == 1:
                ahead = reply.wait
                polling = ahead <= 0
                if polling:
                    ahead, poll = poll, min(POLL_MAX, poll * 2)
                blocked_until = self.now() + ahead
            else:
                blocked_until, poll, polling = None, POLL_MIN, False

    def _give_back_promises(self) -> None:
        now = self.now()
        while self._promised:
            self.report("u", self._promised.pop().id, now)

    def _hand_out(self, lane: _Lane, slot: Slot) -> None:
        grant = RedisGrant(self, slot)
        self._outstanding[slot.id] = grant
        self.slot_reasons[WHY[slot.why]] += 1
        fut = lane.pop()
        if fut is None:  # its caller gave up meanwhile
            grant.unsent()
        else:
            fut.set_result(grant)

    async def _nap(self, lane: _Lane, seconds: float | None, *, on_answer: bool = False) -> bool:
        """Sleep ``seconds`` (None: until woken), or less when woken: by a local report that
        may release the awaited answer (``on_answer``), by the HIGH lane emptying, by close.
        True when woken before the time."""
        lane.wake.clear()
        lane.napping = True
        lane.napping_on_answer = on_answer
        timed_out = False

        def time_up() -> None:
            nonlocal timed_out
            timed_out = True
            lane.wake.set()

        handle = (
            asyncio.get_running_loop().call_later(seconds, time_up) if seconds is not None else None
        )
        try:
            await lane.wake.wait()
        finally:
            lane.napping = lane.napping_on_answer = False
            if handle is not None:
                handle.cancel()
        return not timed_out

    # -- shutdown ---------------------------------------------------------------------------

    async def aclose(self, flush_timeout: float = 1.0) -> None:
        """Stop the drivers (their waiters get None), then send what is left to report."""
        self._closing = True
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        for lane in (self._high, self._bulk):
            task = lane.task
            if task is not None:
                task.cancel()
                await asyncio.wait({task})
            while (fut := lane.pop()) is not None:
                fut.set_result(None)
        self._give_back_promises()
        self._closed = True
        flusher = self._flusher
        if flusher is not None:
            await asyncio.wait({flusher}, timeout=flush_timeout)
            if not flusher.done():
                flusher.cancel()
                await asyncio.wait({flusher})
        reports = self._take()
        if reports:
            try:
                await asyncio.wait_for(
                    self._call(Ask(0, False, 0.0, [], self._args(reports))), flush_timeout
                )
            except asyncio.TimeoutError:
                logger.debug("answers not reported at close: Redis too slow")
            except self._transient as exc:
                logger.debug("answers not reported at close: %s", exc)
