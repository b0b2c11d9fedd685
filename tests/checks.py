"""The checks behind the README's safety guarantees, on the simulator's ground truth.

Each one is asserted by the tests that run the real client, and shown to fail against a
deliberately broken client in ``tests/safety/test_mutations.py``: a check never seen failing
is not yet a proof.
"""

from __future__ import annotations

from postman_async.testing import PostmanSimulator


def check_no_double_send(sim: PostmanSimulator) -> None:
    """No intended send (recipient and values) reached the server's handler twice."""
    doubles = {key: n for key, n in sim.posts.sends.items() if n > 1}
    assert not doubles, f"sent more than once: {doubles}"


def check_no_double_retry(sim: PostmanSimulator) -> None:
    """No message got two retry POSTs in a run (refused ones count: they are POSTs)."""
    doubles = {m: n for m, n in sim.posts.retries.items() if n > 1}
    assert not doubles, f"retried more than once: {doubles}"


def check_no_batch_flipped(sim: PostmanSimulator) -> None:
    """No batch retry fired while a message was ``created`` (which flips the batch to
    ``messages_enqueuing_failed``)."""
    flipped = {b: n for b, n in sim.posts.flipped_batches.items() if n}
    assert not flipped, f"batch retried while a message was created: {flipped}"


def check_budget(sim: PostmanSimulator, rate: int, campaign_id: str | None = None) -> None:
    """At most ``rate`` requests in any sliding second, and no 429."""
    stats = sim.stats(campaign_id)
    assert stats.max_per_second <= rate, f"{stats.max_per_second} requests in one second"
    assert stats.throttled == 0, f"{stats.throttled} requests throttled"
