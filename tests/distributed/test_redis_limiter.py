"""RedisRateLimiter against a real redis-server: one budget for many processes, paced by the
answers any process saw. Each limiter instance (its own Redis client and drivers) stands for a
process; the checks are on recorded write and answer times and on counts, never on wall-clock
rates (benchmarks/distributed.py measures those)."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from benchmarks.distributed import worker
from postman_async import Priority, RateLimiterUnavailableError
from postman_async.ratelimit import Grant
from postman_async.ratelimit_redis import RedisGrant, RedisRateLimiter, Slot
from postman_async.testing import PostmanSimulator
from postman_async.testing.process import free_port
from postman_async.testing.server_limits import max_in_window

from ..helpers import assert_no_leftover_tasks, wait_for_condition
from .conftest import RedisServer
from .harness import WINDOW, Network, drive, violations

RATE = 200.0  # R = 200 a second: a few windows pass in a few seconds


@pytest_asyncio.fixture
async def limiters(redis_server: RedisServer) -> AsyncIterator[list[RedisRateLimiter]]:
    """Four "processes" of one campaign, closed after the test."""
    made = [RedisRateLimiter(redis_server.url, campaign_id="c", rate=RATE) for _ in range(4)]
    yield made
    for limiter in made:
        await limiter.aclose()


def _credit(limiters: list[RedisRateLimiter]) -> float:
    return max(lim.answers.max_credit for lim in limiters if lim.answers is not None)


# -- the guarantee ----------------------------------------------------------------------------


async def test_no_second_holds_more_than_the_rate_whatever_the_answers_do(
    limiters: list[RedisRateLimiter],
) -> None:
    """Random legs, stalls before the write, answers taken in late, lost answers, grants
    never written and callers giving up, from four processes in both lanes: the (k + R)-th
    write waits for the k-th answer, so the server never sees more than R in a second."""
    network = Network(random.Random(1))
    cancelled = await drive(limiters, network, grants=int(3.5 * RATE), cancel_share=0.02)
    assert not violations(network.records, RATE, credit=_credit(limiters))
    # Every misfortune happened, and everything was reported and accounted for.
    assert network.unsent and cancelled and sum(lim.answers.lost_answers for lim in limiters)
    assert len(network.records) + network.unsent + cancelled == int(3.5 * RATE)
    assert all(lim.grants for lim in limiters)
    assert not any(lim.answers._outstanding for lim in limiters)


def _ignore_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutant: each grant counts as passing the server at its slot, as soon as it is
    given (what the session reports is ignored): a sliding window on grant times."""
    given = RedisGrant.__init__

    def settled_at_slot(grant: RedisGrant, clock: Any, slot: Slot) -> None:
        given(grant, clock, slot)
        grant._settle(slot.due)

    monkeypatch.setattr(RedisGrant, "__init__", settled_at_slot)


async def test_a_limiter_that_ignores_answers_fails_the_check(
    limiters: list[RedisRateLimiter], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same run as above with the mutant: the check sees writes that did not wait for
    their R-th predecessor's answer (and, depending on the draw, the server sees more than
    R in a second: see the next test for one that always does)."""
    _ignore_answers(monkeypatch)
    network = Network(random.Random(1))
    await drive(limiters, network, grants=int(2.5 * RATE), cancel_share=0.02)
    found = violations(network.records, RATE)
    assert any("before their R-th predecessor's answer" in v for v in found), found


@pytest.mark.parametrize("mutant", [False, True], ids=["real", "answers ignored"])
async def test_a_stalled_write_cannot_crowd_the_grants_after_it(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, mutant: bool
) -> None:
    """R = 2, slots half a second apart. The first grant's process stalls 0.75 s before
    writing it. The real limiter holds the third grant until that answer + 1 s; the mutant
    gives it at the first slot + 1 s, and the server sees 3 calls within a second."""
    if mutant:
        _ignore_answers(monkeypatch)
    limiter = RedisRateLimiter(redis_server.url, campaign_id="s", rate=2)
    arrivals: list[float] = []

    async def request(grant: Grant | None, stall: float) -> None:
        assert grant is not None
        await asyncio.sleep(stall)
        arrivals.append(time.monotonic())  # no network: written, counted, answered at once
        grant.written()
        grant.answered()

    try:
        stalled = asyncio.ensure_future(request(await limiter.acquire(), 0.75))
        for _ in range(3):
            await request(await limiter.acquire(), 0.0)
        await stalled
    finally:
        await limiter.aclose()
    most = max_in_window(sorted(arrivals))
    assert most > 2 if mutant else most == 2, arrivals


async def test_an_unanswered_grant_holds_its_successor_until_its_deadline(
    redis_server: RedisServer,
) -> None:
    """A request written and never answered nor reported lost (its process died) counts as
    passing the server at its write + cap: the R-th grant after it waits for that."""
    dead, alive = (
        RedisRateLimiter(redis_server.url, campaign_id="d", rate=2, cap=0.3) for _ in range(2)
    )
    try:
        silent = await dead.acquire()
        assert isinstance(silent, RedisGrant)
        first = await alive.acquire()
        assert isinstance(first, RedisGrant)
        first.written()
        first.answered()
        held = await alive.acquire()  # R = 2: gated by the silent one
        assert isinstance(held, RedisGrant)
        # On Redis's clock: the silent grant's slot + cap + the window.
        assert held.slot.at_us >= silent.slot.at_us + int((0.3 + WINDOW) * 1e6)
        assert alive.answers is not None and alive.answers.slot_reasons["deadline"] == 1
    finally:
        await dead.aclose()
        await alive.aclose()


async def test_a_lost_answer_counts_until_it_is_given_up_on(redis_server: RedisServer) -> None:
    """A request written, then given up on 0.4 s later (a timeout: no answer will come)
    passed the server by then at the latest: the R-th grant after it waits until that + 1 s,
    not its write + 1 s."""
    limiter = RedisRateLimiter(redis_server.url, campaign_id="lost", rate=2, cap=2.0)
    try:
        timed_out = await limiter.acquire()
        assert isinstance(timed_out, RedisGrant)
        timed_out.written()
        await asyncio.sleep(0.4)
        timed_out.lost()
        other = await limiter.acquire()
        assert isinstance(other, RedisGrant)
        other.written()
        other.answered()
        held = await limiter.acquire()  # R = 2: gated by the lost one
        assert isinstance(held, RedisGrant)
        # On Redis's clock: at least the lost one's slot + 0.4 s + the window.
        assert held.slot.at_us >= timed_out.slot.at_us + int((0.4 + WINDOW) * 1e6)
    finally:
        await limiter.aclose()


# -- the budget, the lanes -------------------------------------------------------------------


@pytest.mark.parametrize("lane", [Priority.HIGH, Priority.BULK], ids=["high", "bulk"])
async def test_the_full_budget_in_either_lane_with_100_callers_per_process(
    limiters: list[RedisRateLimiter], lane: Priority
) -> None:
    """400 callers in one lane: every slot the answer clock opens is taken, none wasted or
    given back, and no herd: one driver per process asks Redis, about once per grant."""
    network = Network(
        random.Random(2), stall_share=0, lost_share=0, late_report_share=0, unsent_share=0
    )
    await drive(limiters, network, grants=int(3 * RATE), lanes=(lane,))
    assert not violations(network.records, RATE)
    reasons: Counter[str] = Counter()
    for lim in limiters:
        reasons.update(lim.answers.slot_reasons)
    assert sum(reasons.values()) == int(3 * RATE)
    assert reasons["deadline"] == 0  # every slot opened by an answer, none by a deadline
    # A slot set by "now" was asked for after the rules allowed it: budget left unused. Both
    # lanes are given slots ahead (BULK as promises), so hardly any.
    assert reasons["now"] <= 0.05 * RATE, reasons
    assert all(lim.answers.given_back == 0 and lim.late_requeues == 0 for lim in limiters)
    calls = sum(lim.answers.reserve_calls for lim in limiters)
    assert calls <= 1.5 * 3 * RATE, calls
    assert all(lim.grants > 0 for lim in limiters)


async def test_an_urgent_call_from_another_process_goes_before_queued_bulk_work(
    redis_server: RedisServer,
) -> None:
    bulk = RedisRateLimiter(redis_server.url, campaign_id="u", rate=20)
    urgent = RedisRateLimiter(redis_server.url, campaign_id="u", rate=20)
    granted: list[str] = []
    ahead: list[int] = []
    done = asyncio.Event()

    async def bulk_caller() -> None:
        while not done.is_set():
            grant = await bulk.acquire(Priority.BULK)
            assert grant is not None
            granted.append("bulk")
            grant.written()
            grant.answered()

    async def probe() -> None:
        await wait_for_condition(lambda: len(granted) >= 30, "the bulk work to saturate")
        for _ in range(6):
            asked = len(granted)
            grant = await urgent.acquire(Priority.HIGH)
            assert grant is not None
            ahead.append(len(granted) - asked)
            grant.written()
            grant.answered()
            seen = len(granted)
            await wait_for_condition(lambda: len(granted) >= seen + 3, "more bulk grants")  # noqa: B023
        done.set()

    try:
        callers = [asyncio.ensure_future(bulk_caller()) for _ in range(10)]
        await probe()
        for caller in callers:
            caller.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
    finally:
        await bulk.aclose()
        await urgent.aclose()
    # Counted in grants: behind ten queued bulk calls it would be ~10. The urgent calls took
    # over slots promised to the bulk work.
    assert max(ahead) <= 2, ahead
    assert urgent.answers is not None and urgent.answers.slot_reasons["bulk promise"] >= 1


async def test_a_grant_woken_late_is_still_used(redis_server: RedisServer) -> None:
    """A caller that oversleeps its slot (a busy or stopped process) sends all the same: its
    successor waits for its answer, so nothing is squeezed and no slot is wasted."""
    overslept: list[float] = []

    async def sleepy(delay: float) -> None:
        extra = 0.05 if not overslept else 0.0
        overslept.append(extra)
        await asyncio.sleep(delay + extra)

    limiter = RedisRateLimiter(redis_server.url, campaign_id="late", rate=10, sleep=sleepy)
    try:
        for _ in range(2):  # the second is spaced a slot after the first: it sleeps, late
            grant = await limiter.acquire()
            assert isinstance(grant, RedisGrant)
            grant.written()
            grant.answered()
        assert overslept[0] == 0.05 and limiter.grants == 2
        assert limiter.answers is not None
        assert limiter.answers.given_back == 0 and limiter.answers.reserve_calls == 2
        assert limiter.late_requeues == 0
    finally:
        await limiter.aclose()


async def test_a_grant_woken_later_than_half_the_cap_queues_again(
    redis_server: RedisServer,
) -> None:
    """The one assumption is that a request reaches the server within the cap of its slot:
    a caller stopped for longer than half the cap gives its grant back and queues again."""
    overslept: list[float] = []

    async def stopped(delay: float) -> None:
        extra = 0.15 if not overslept else 0.0
        overslept.append(extra)
        await asyncio.sleep(delay + extra)

    limiter = RedisRateLimiter(
        redis_server.url, campaign_id="stale", rate=10, cap=0.2, sleep=stopped
    )
    try:
        for _ in range(2):
            grant = await limiter.acquire()
            assert isinstance(grant, RedisGrant)
            grant.written()
            grant.answered()
        assert limiter.answers is not None
        assert limiter.answers.stale == 1 and limiter.answers.given_back == 1
        assert limiter.grants == 2 and limiter.answers.reserve_calls == 3
    finally:
        await limiter.aclose()


# -- 429s ------------------------------------------------------------------------------------


async def test_a_429_in_one_process_pauses_all_and_halves_the_shared_rate(
    redis_server: RedisServer,
) -> None:
    first = RedisRateLimiter(redis_server.url, campaign_id="p", rate=100, recovery=1000)
    second = RedisRateLimiter(redis_server.url, campaign_id="p", rate=100, recovery=1000)
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        grant = await second.acquire()
        assert isinstance(grant, RedisGrant)
        grant.unsent()
        await first.penalize(0.5)
        blocked = int(await redis.get("postman_async:{p}:blocked"))
        assert first.rate_cuts == 1 and first.throttles == 1
        assert float(await redis.hget("postman_async:{p}:penalty", "fraction")) == 0.5
        slots = []
        for _ in range(2):
            grant = await second.acquire()
            assert isinstance(grant, RedisGrant)
            slots.append(grant.slot)
            grant.written()
            grant.answered()
        # On Redis's clock: the other process waited out the pause, then took slots at half
        # the rate (1/50 s apart, less a little recovery).
        assert slots[0].at_us >= blocked and slots[0].why == 4  # "pause"
        assert slots[1].at_us - slots[0].at_us >= 0.95 * 1e6 / 50
    finally:
        await first.aclose()
        await second.aclose()
        await redis.aclose()


# -- Redis unavailable -------------------------------------------------------------------------


async def test_unreachable_redis_is_a_typed_error() -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", campaign_id="c4")
    try:
        results = await asyncio.gather(
            *(limiter.acquire() for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, RateLimiterUnavailableError) for r in results), results
    finally:
        await limiter.aclose()


async def test_an_outage_falls_back_and_back_with_a_window_between(
    redis_server: RedisServer,
) -> None:
    """Redis goes away (and comes back empty): callers get the local fallback, whose first
    write waits until this process's shared grants passed the server plus a window; back on
    Redis, the campaign pauses until the fallback grants passed plus a window."""
    limiter = RedisRateLimiter(
        redis_server.url, campaign_id="f", rate=40, fallback_rate=20, retry_interval=0.2
    )
    network = Network(random.Random(3), stall_share=0, lost_share=0, late_report_share=0)
    try:
        await drive([limiter], network, grants=20, callers=5)
        shared_released = max(r.released for r in network.records)
        await asyncio.to_thread(redis_server.stop)
        fallback = [await limiter.acquire() for _ in range(3)]
        assert not any(isinstance(g, RedisGrant) for g in fallback)
        assert limiter.fallback_grants == 3
        written = []
        for grant in fallback:
            assert grant is not None
            written.append(time.monotonic())
            grant.written()
            grant.answered()
        assert min(written) >= shared_released + WINDOW
        fallback_released = limiter._fallback_horizon()
        await asyncio.to_thread(redis_server.start)
        await wait_for_condition(
            lambda: limiter._clock() >= limiter._down_until, "the retry interval to pass"
        )
        back = await limiter.acquire()
        assert isinstance(back, RedisGrant) and not limiter._was_down
        assert back.due >= fallback_released + WINDOW
        assert back.slot.why == 4  # set by the campaign-wide pause
        back.unsent()
    finally:
        await limiter.aclose()


async def test_an_outage_without_a_fallback_fails_every_waiting_caller(
    redis_server: RedisServer,
) -> None:
    limiter = RedisRateLimiter(redis_server.url, campaign_id="n", rate=5)
    try:
        grants = [await limiter.acquire() for _ in range(5)]  # R = 5: the next ones wait
        waiting = [asyncio.ensure_future(limiter.acquire()) for _ in range(10)]
        await wait_for_condition(lambda: limiter.answers._high.napping, "an answer awaited")
        await asyncio.to_thread(redis_server.stop)
        for grant in grants:  # the answers open slots, which Redis cannot hand out now
            assert grant is not None
            grant.written()
            grant.answered()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(r, RateLimiterUnavailableError) for r in results), results
        assert limiter.fallback_grants == 0
    finally:
        await limiter.aclose()


# -- closing -----------------------------------------------------------------------------------


async def _clients(redis: aioredis.Redis) -> int:
    return len(await redis.client_list())


async def test_aclose_leaves_nothing_open(redis_server: RedisServer) -> None:
    """Every connection the limiter made is closed (the server counts its clients), its
    drivers and flusher are finished, what was left to report is reported, and waiting
    callers get a typed error; with warnings as errors, nothing warns when collected."""
    observer = aioredis.Redis.from_url(redis_server.url)
    try:
        await _use_and_close(redis_server.url, observer)
        gc.collect()  # a Redis client left open would warn here (an error in this suite)
        assert await _clients(observer) == 1  # the observer itself
    finally:
        await observer.aclose()


async def _use_and_close(url: str, observer: aioredis.Redis) -> None:
    limiter = RedisRateLimiter(url, campaign_id="x", rate=3)
    answers = limiter.answers
    assert answers is not None
    grants = [await limiter.acquire() for _ in range(3)]  # R = 3: the next ones wait
    waiting = [asyncio.ensure_future(limiter.acquire(lane)) for lane in Priority]
    await wait_for_condition(
        lambda: answers._high.napping and answers._bulk.task is not None,
        "both lanes to wait (HIGH for an answer, BULK behind HIGH)",
    )
    assert await _clients(observer) > 1
    await asyncio.sleep(0.02)  # written 20 ms after their slots
    for grant in grants:
        assert grant is not None
        grant.written()  # reported lazily: still pending at close
    await limiter.aclose()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, RateLimiterUnavailableError) for r in results), results
    assert await _clients(observer) == 1
    assert_no_leftover_tasks()
    # The writes went out at close: each deadline (still provisional) runs from its write.
    ids = [g.id for g in grants if isinstance(g, RedisGrant)]
    deadlines = await observer.hmget("postman_async:{x}:released", ids)
    for grant, deadline in zip(grants, deadlines, strict=True):
        assert isinstance(grant, RedisGrant)
        assert -int(deadline) >= grant.slot.at_us + int((2.0 + 0.02) * 1e6)
    for grant in grants:
        assert grant is not None
        grant.answered()  # after close: ignored, and no task is started
    assert_no_leftover_tasks()
    with pytest.raises(RateLimiterUnavailableError):
        await limiter.acquire()


async def test_aclose_leaves_a_client_it_was_given_open(redis_server: RedisServer) -> None:
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        limiter = RedisRateLimiter(redis, campaign_id="y", rate=50)
        grant = await limiter.acquire()
        assert grant is not None
        grant.written()
        grant.answered()
        await limiter.aclose()
        assert_no_leftover_tasks()
        assert await redis.ping()
    finally:
        await redis.aclose()


# -- real processes, real HTTP -----------------------------------------------------------------


@pytest.fixture
def spawn_pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(
        max_workers=4, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        yield pool


async def test_four_processes_one_campaign_against_the_simulator(
    redis_server: RedisServer, spawn_pool: ProcessPoolExecutor
) -> None:
    """The session reports each request's fate over real HTTP, from four processes (two
    lanes): the simulator's ground truth has no 429 and never more than the rate."""
    rate = 40.0
    async with PostmanSimulator(rate_limit=rate) as sim:
        loop = asyncio.get_running_loop()
        outcomes = await asyncio.gather(
            *(
                loop.run_in_executor(
                    spawn_pool,
                    worker,
                    redis_server.url,
                    sim.base_url,
                    sim.campaign_id,
                    sim.api_key,
                    rate,
                    2.0,
                    index % 2 == 1,
                    20,
                )
                for index in range(4)
            )
        )
        stats = sim.stats()
    # HIGH goes first: the BULK processes get what the HIGH ones leave (maybe nothing).
    assert all(o["calls"] > 0 for o in outcomes[::2]), outcomes
    assert stats.throttled == 0 and stats.max_per_second <= rate
    assert sum(o["calls"] for o in outcomes) <= stats.requests  # cancelled calls may be unseen
