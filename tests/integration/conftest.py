from __future__ import annotations

from typing import Any

from postman_async import PostmanClient
from postman_async.testing import PostmanSimulator


def client_for(sim: PostmanSimulator, **options: Any) -> PostmanClient:
    return PostmanClient(
        api_key=options.pop("api_key", sim.api_key),
        campaign_id=options.pop("campaign_id", sim.campaign_id),
        base_url=sim.base_url,
        rate_limit=options.pop("rate_limit", sim.rate_limit),
        **options,
    )
