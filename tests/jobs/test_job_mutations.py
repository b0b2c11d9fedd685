"""Each journal rule, removed, makes its job test fail: the checks can see a double POST."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from .harness import Sim, Workers, assert_against_ground_truth
from .test_job_crashes import kill_scenario, stale_against_live_holder, stop_scenario


@pytest.mark.simulator("--retry-failure-rate", "1.0")
async def test_without_reconcile_a_killed_workers_post_is_sent_twice(
    redis: aioredis.Redis, simulator: Sim, workers: Workers
) -> None:
    results, stats, victim = await kill_scenario(
        redis, simulator, workers, "before_result", mutation="no_reconcile"
    )
    assert stats["posts"]["retries"][victim] == 2
    with pytest.raises(AssertionError, match="a second POST"):
        assert_against_ground_truth(results, set(simulator.ids), stats)


@pytest.mark.parametrize(
    ("point", "mutation"),
    [("before_intent", "no_fencing"), ("after_intent", "no_window"), ("before_post", "no_window")],
)
async def test_without_fencing_or_window_a_resumed_worker_posts_again(
    redis: aioredis.Redis,
    simulator: Sim,
    workers: Workers,
    point: str,
    mutation: str,
    tmp_path: Path,
) -> None:
    results, stats, victim = await stop_scenario(
        redis, simulator, workers, point, tmp_path, mutation
    )
    assert stats["posts"]["retries"][victim] == 2
    with pytest.raises(AssertionError, match="a second POST"):
        assert_against_ground_truth(results, set(simulator.ids), stats)


async def test_an_intent_script_that_checks_only_a_live_lease_lets_a_stale_worker_post(
    redis: aioredis.Redis, simulator: Sim, workers: Workers, tmp_path: Path
) -> None:
    """Both workers run the mutant: the resumed stale worker writes its intent under the new
    holder's live lease and POSTs; the holder, resumed within its window, POSTs too."""
    results, stats, victim = await stale_against_live_holder(
        redis, simulator, workers, tmp_path, mutation="live_lease_only"
    )
    assert stats["posts"]["retries"][victim] == 2
    with pytest.raises(AssertionError, match="a second POST"):
        assert_against_ground_truth(results, set(simulator.ids), stats)
