"""What the CLI remembers between runs: the attempt cap learned per campaign.

The server's attempt cap (3 or 4, learned from its answers: ``rules.AttemptCap``) costs a call
or two to learn. The CLI keeps what it learned in a small JSON file under the user's cache
directory (``$XDG_CACHE_HOME/postman-async/`` or ``~/.cache/postman-async/``), keyed by
campaign id and base URL: never the API key, never a recipient. The folder is made 0700 and
the file 0600. What was learned more than :data:`MAX_AGE` ago is forgotten. A file that cannot
be read or written is ignored (the cap is then learned again), never fatal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from yarl import URL

from ._files import PRIVATE_MODE
from .rules import DOCUMENTED_MIN_CAP, AttemptCap

logger = logging.getLogger("postman_async")

#: The file, in :func:`state_dir`.
CAPS_FILE = "attempt-caps.json"
#: Learned caps older than this (seconds) are forgotten: 30 days.
MAX_AGE = 30 * 86400.0


def state_dir() -> Path:
    """``$XDG_CACHE_HOME/postman-async`` (if set to an absolute path), else
    ``~/.cache/postman-async``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "postman-async"


def _key(campaign_id: str, base_url: str) -> str:
    """The campaign and the API it lives on (a URL's credentials, if any, left out)."""
    url = URL(base_url)
    return f"{campaign_id} {url.with_user(None).with_password(None)}"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    caps = data.get("campaigns") if isinstance(data, dict) else None
    return caps if isinstance(caps, dict) else {}


def load_attempt_cap(campaign_id: str, base_url: str, *, now: float | None = None) -> AttemptCap:
    """The cap learned for this campaign in an earlier run (not older than ``MAX_AGE``), or a
    fresh :class:`AttemptCap` when none is known."""
    entry = _read(state_dir() / CAPS_FILE).get(_key(campaign_id, base_url))
    moment = time.time() if now is None else now
    try:
        if entry is None or moment - float(entry["learned"]) > MAX_AGE:
            return AttemptCap()
        lower, upper = int(entry["lower"]), entry.get("upper")
        cap = AttemptCap(lower=lower, upper=None if upper is None else int(upper))
    except (KeyError, TypeError, ValueError):
        return AttemptCap()
    return cap if cap.lower >= 1 and (cap.upper is None or cap.upper >= 1) else AttemptCap()


def learned(cap: AttemptCap) -> bool:
    """The cap says more than the documentation's minimum."""
    return cap.upper is not None or cap.lower > DOCUMENTED_MIN_CAP


def save_attempt_cap(
    campaign_id: str, base_url: str, cap: AttemptCap, *, now: float | None = None
) -> None:
    """Remember what is known of the cap (only if something was learned). Written to a
    private temporary file, then moved into place; a failure is logged and ignored."""
    if not learned(cap):
        return
    folder = state_dir()
    path = folder / CAPS_FILE
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        caps = _read(path)
        caps[_key(campaign_id, base_url)] = {
            "lower": cap.lower,
            "upper": cap.upper,
            "learned": time.time() if now is None else now,
        }
        _write_private(path, {"campaigns": caps})
    except OSError as exc:
        logger.warning("could not keep the learned attempt cap in %s: %s", path, exc)


def _write_private(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), PRIVATE_MODE)
            json.dump(data, handle, indent=1, sort_keys=True)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
