"""The simulator's network model: a one-way delay per request, in (before the rate limiter
sees it) and out, uniform or heavy-tailed. Deterministic: the delays are waited with an
injected sleep that advances the simulator's clock."""

from __future__ import annotations

import random
import statistics

import pytest

from postman_async import cli
from postman_async.testing import Network, PostmanSimulator
from postman_async.testing import simulator as simulator_module

from ..helpers import client_for


def test_uniform_delays_stay_in_their_band() -> None:
    network = Network(latency=0.02, jitter=0.04)
    delays = [network.delay(random.Random(i)) for i in range(2000)]
    assert min(delays) >= 0.02 and max(delays) <= 0.06
    assert statistics.median(delays) == pytest.approx(0.04, abs=0.004)


def test_lognormal_delays_have_a_heavy_tail() -> None:
    network = Network(latency=0.0, jitter=0.04, distribution="lognormal")
    rng = random.Random(7)
    delays = sorted(network.delay(rng) for _ in range(5000))
    assert statistics.median(delays) == pytest.approx(0.02, rel=0.1)  # jitter / 2
    p99 = delays[int(0.99 * len(delays))]
    assert p99 > 0.04 * 2  # beyond anything uniform jitter of 40 ms would give
    assert delays[-1] <= 20 * 0.04  # capped


def test_retransmits_add_200_ms_to_a_share_of_legs() -> None:
    network = Network(latency=0.002, jitter=0.01, retransmit_share=0.01)
    rng = random.Random(3)
    delays = [network.delay(rng) for _ in range(20_000)]
    held = [d for d in delays if d >= 0.2]
    assert 150 <= len(held) <= 250  # about 1%
    assert all(0.202 <= d <= 0.212 for d in held)
    assert all(0.002 <= d <= 0.012 for d in delays if d < 0.2)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        Network(distribution="gaussian")
    with pytest.raises(ValueError):
        Network(latency=-1.0)
    with pytest.raises(ValueError):
        Network(retransmit_share=1.5)
    assert not Network().active and Network(jitter=0.001).active
    assert Network(retransmit_share=0.01).active


async def test_the_limiter_sees_a_request_after_its_way_in(make_sim) -> None:
    waited: list[float] = []
    sim: PostmanSimulator

    async def sleep(delay: float) -> None:
        waited.append(delay)
        sim.advance(delay)

    sim = await make_sim(network=Network(latency=0.2, jitter=0.1), sleep=sleep, seed=3)
    async with client_for(sim) as client:
        sent_at = sim.clock()
        await client.list_messages().fetch()
    (record,) = sim.request_log
    way_in, way_out = waited
    assert 0.2 <= way_in <= 0.3 and 0.2 <= way_out <= 0.3
    # The request was logged (and rate-limited) on arrival: its way in had passed.
    assert record.time - sent_at >= way_in


async def test_no_network_no_delay(make_sim) -> None:
    waited: list[float] = []

    async def sleep(delay: float) -> None:
        waited.append(delay)

    sim = await make_sim(sleep=sleep)
    async with client_for(sim) as client:
        await client.list_messages().fetch()
    assert waited == [] and len(sim.request_log) == 1


def test_cli_flags_build_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[PostmanSimulator] = []

    class Stop(Exception):
        pass

    def capture(*args: object, **kwargs: object) -> PostmanSimulator:
        sim = PostmanSimulator(*args, **kwargs)  # type: ignore[arg-type]
        built.append(sim)
        raise Stop

    monkeypatch.setattr(simulator_module, "PostmanSimulator", capture)
    # The CLI's last-resort handler prints the unexpected error (masked) and exits 1.
    args = ["simulator", "--latency-ms", "5", "--jitter-ms", "40", "--jitter-dist", "lognormal"]
    assert cli.main(args) == 1
    assert built[0].network == Network(0.005, 0.04, "lognormal")
