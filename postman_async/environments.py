"""Postman's environments (reference §1): production, test and the load-test environment.

``PostmanClient(..., environment="loadtest")`` (CLI: ``--environment loadtest``) picks the
environment's base URL and default rate; a ``base_url`` given as well wins for the URL (a
simulator in load-test mode, a proxy), and a ``rate_limit`` given as well wins for the rate.
With no environment, the key's prefix chooses: ``key_test_`` is the test environment, any other
key production (the same rule as OGP's own client).

The load-test environment (``https://loadtest.postman.gov.sg/api/v2``) is booked in advance,
takes up to 200 calls per second, and never delivers: messages stop at the aggregator and their
status stays pending (never ``success``), and they are not charged. Waits and settles there
stop once every message is pending at the aggregator (see :data:`AGGREGATOR_PENDING`) instead
of polling to their timeout, and say "load test: statuses stay pending".
"""

from __future__ import annotations

import attrs

from .errors import ValidationError
from .models import MessageStatus

__all__ = [
    "AGGREGATOR_PENDING",
    "ENVIRONMENTS",
    "LOADTEST",
    "LOAD_TEST_NOTE",
    "PRODUCTION",
    "TEST",
    "Environment",
    "environment_for",
]

#: ASSUMPTION (the load-test pages say only "status stays Pending"): a message has reached the
#: aggregator once Postman is sending it to the provider or has sent it (``sending``, ``sent``);
#: ``created`` and ``enqueued`` are still on their way there.
AGGREGATOR_PENDING = frozenset({MessageStatus.SENDING, MessageStatus.SENT})

#: What waits and settles say when they stop because statuses stay pending.
LOAD_TEST_NOTE = "load test: statuses stay pending"


@attrs.frozen
class Environment:
    """One of Postman's environments: its name, API base URL and default rate (calls/s per
    campaign). ``statuses_stay_pending``: messages never reach a final status there (the
    load-test environment)."""

    name: str
    base_url: str
    rate_limit: float
    statuses_stay_pending: bool = False

    def is_parked(self, status: MessageStatus | str | None) -> bool:
        """A status a message keeps for good in this environment, though it is not final
        (pending at the aggregator, in the load-test environment)."""
        return self.statuses_stay_pending and status in AGGREGATOR_PENDING


PRODUCTION = Environment("production", "https://postman.gov.sg/api/v2", 10.0)
TEST = Environment("test", "https://test.postman.gov.sg/api/v2", 10.0)
LOADTEST = Environment(
    "loadtest", "https://loadtest.postman.gov.sg/api/v2", 200.0, statuses_stay_pending=True
)
#: The environments by name, as ``environment=`` and ``--environment`` take them.
ENVIRONMENTS = {e.name: e for e in (PRODUCTION, TEST, LOADTEST)}


def environment_for(name: str | None, api_key: str = "") -> Environment:
    """The environment called ``name``; with no name, the one the key's prefix says
    (``key_test_``: test; any other key: production). Raises :class:`ValidationError` for an
    unknown name."""
    if name is None:
        return TEST if api_key.startswith("key_test_") else PRODUCTION
    try:
        return ENVIRONMENTS[name]
    except KeyError:
        choices = ", ".join(ENVIRONMENTS)
        raise ValidationError("environment", f"{name!r} is not one of {choices}") from None
