"""What a worker serves: its own campaigns, keys and base URLs. Never read from Redis.

A job names a campaign only. A worker runs it with the key and base URL of its *own*
configuration for that campaign, so nothing written to Redis or to a task message can make a
worker send its key elsewhere. A job for a campaign the worker does not serve, or one that
pins a base URL other than the worker's, is refused and recorded as refused.

Configuration, first match wins:

- ``--campaigns-file FILE`` or ``POSTMAN_ASYNC_CAMPAIGNS_FILE``: JSON,
  ``{"campaigns": [{"campaign_id": "...", "api_key_file": "/run/secrets/key",
  "base_url": "https://postman.gov.sg/api/v2"}]}`` (``api_key`` instead of ``api_key_file``
  works too; ``base_url`` defaults from the key's prefix; ``rate``, the most calls per second
  a job may spend on the campaign, 10 by default: a job asking for more gets this);
- one campaign from the environment: ``POSTMAN_CAMPAIGN_ID``, ``POSTMAN_API_KEY`` or
  ``POSTMAN_API_KEY_FILE``, ``POSTMAN_BASE_URL`` (default from the key's prefix) and
  ``POSTMAN_RATE_LIMIT`` (default 10).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

import attrs
from yarl import URL

from ..client import default_base_url
from ..errors import ValidationError
from ..validation import validate_api_key, validate_base_url, validate_id

#: A campaigns file larger than this is refused unread (it holds a few campaigns).
MAX_CONFIG_BYTES = 1 << 20


class WorkerConfigError(Exception):
    """The worker's own configuration is missing or malformed: it cannot start."""


@attrs.frozen
class CampaignConfig:
    """One campaign a worker serves: its id, key (never shown), base URL, and the most
    calls per second any job may spend on it (a job asking for more gets this)."""

    campaign_id: str
    api_key: str = attrs.field(repr=False)
    base_url: str = ""
    rate: float = 10.0

    def rate_for(self, asked: float) -> float:
        """The rate a job that asks for ``asked`` gets: never above the campaign's."""
        return min(asked, self.rate)

    def __attrs_post_init__(self) -> None:
        validate_id("campaign_id", self.campaign_id)
        validate_api_key(self.api_key)
        if not 0 < self.rate < float("inf"):
            raise ValidationError("rate", "must be a finite number above 0")
        url = self.base_url or default_base_url(self.api_key)
        object.__setattr__(self, "base_url", str(validate_base_url(url)))


@attrs.frozen
class WorkerConfig:
    """The campaigns a worker serves, by campaign id."""

    campaigns: Mapping[str, CampaignConfig]

    @classmethod
    def of(cls, campaigns: Iterable[CampaignConfig]) -> WorkerConfig:
        """From a list; a campaign given twice is a configuration error."""
        by_id: dict[str, CampaignConfig] = {}
        for campaign in campaigns:
            if campaign.campaign_id in by_id:
                raise WorkerConfigError(f"campaign {campaign.campaign_id} is configured twice")
            by_id[campaign.campaign_id] = campaign
        if not by_id:
            raise WorkerConfigError("no campaign configured")
        return cls(by_id)

    def refusal(self, campaign_id: str, base_url: str | None) -> str | None:
        """Why a job for ``campaign_id`` (pinned to ``base_url``, if any) is refused here, or
        None when this worker serves it."""
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            served = ", ".join(sorted(self.campaigns))
            return f"this worker is not configured for campaign {campaign_id} (it serves {served})"
        if base_url is not None and base_url.rstrip("/") != campaign.base_url:
            return (
                f"the job pins base URL {_host_of(base_url)} but this worker sends campaign "
                f"{campaign_id} only to {_host_of(campaign.base_url)}"
            )
        return None

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, campaigns_file: str | None = None
    ) -> WorkerConfig:
        """From ``campaigns_file``, ``POSTMAN_ASYNC_CAMPAIGNS_FILE``, or the one-campaign
        variables (see the module's documentation)."""
        env = os.environ if environ is None else environ
        path = campaigns_file or env.get("POSTMAN_ASYNC_CAMPAIGNS_FILE")
        if path:
            return cls.from_file(path)
        campaign_id = env.get("POSTMAN_CAMPAIGN_ID")
        if not campaign_id:
            raise WorkerConfigError(
                "no campaign configured: set POSTMAN_CAMPAIGN_ID with POSTMAN_API_KEY (or "
                "POSTMAN_API_KEY_FILE) and POSTMAN_BASE_URL, or give --campaigns-file"
            )
        key = _key(env.get("POSTMAN_API_KEY"), env.get("POSTMAN_API_KEY_FILE"), "environment")
        rate = env.get("POSTMAN_RATE_LIMIT") or 10.0
        return cls.of([_campaign(campaign_id, key, env.get("POSTMAN_BASE_URL") or "", rate)])

    @classmethod
    def from_file(cls, path: str) -> WorkerConfig:
        """From a JSON campaigns file (see the module's documentation)."""
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise WorkerConfigError(f"cannot read campaigns file {path!r}: {exc.strerror}") from exc
        if len(raw) > MAX_CONFIG_BYTES:
            raise WorkerConfigError(f"campaigns file {path!r} is larger than 1 MB")
        try:
            data = json.loads(raw)
            entries = data["campaigns"]
            if not isinstance(entries, list):
                raise TypeError
        except (ValueError, KeyError, TypeError) as exc:
            raise WorkerConfigError(
                f'campaigns file {path!r} must be JSON like {{"campaigns": [...]}}'
            ) from exc
        campaigns = []
        for n, entry in enumerate(entries, 1):
            if not isinstance(entry, dict) or not isinstance(entry.get("campaign_id"), str):
                raise WorkerConfigError(f"campaigns file {path!r}: entry {n} has no campaign_id")
            key = _key(entry.get("api_key"), entry.get("api_key_file"), f"entry {n}")
            base_url, rate = entry.get("base_url") or "", entry.get("rate", 10.0)
            campaigns.append(_campaign(entry["campaign_id"], key, base_url, rate))
        return cls.of(campaigns)


def _campaign(campaign_id: str, key: str, base_url: object, rate: object) -> CampaignConfig:
    try:
        per_second = float(rate)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise WorkerConfigError(f"campaign {campaign_id!r}: rate must be a number") from exc
    try:
        return CampaignConfig(campaign_id, key, str(base_url), per_second)
    except ValidationError as exc:
        raise WorkerConfigError(f"campaign {campaign_id!r}: {exc}") from exc


def _key(key: object, key_file: object, where: str) -> str:
    if isinstance(key_file, str) and key_file:
        try:
            with open(key_file, encoding="utf-8") as handle:
                return handle.read(4096).strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise WorkerConfigError(f"{where}: cannot read the API key file {key_file!r}") from exc
    if isinstance(key, str) and key:
        return key
    raise WorkerConfigError(f"{where}: no API key (POSTMAN_API_KEY or POSTMAN_API_KEY_FILE)")


def _host_of(url: str) -> str:
    """A URL's scheme, host and port only: enough to tell hosts apart, no path or userinfo."""
    try:
        parsed = URL(url)
        host = parsed.host or "?"
        port = f":{parsed.explicit_port}" if parsed.explicit_port else ""
        return f"{parsed.scheme}://{host}{port}"
    except (ValueError, TypeError):
        return "(unparseable URL)"
