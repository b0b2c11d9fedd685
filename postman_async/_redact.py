"""Credentials out of what is printed: URLs with a password (a Redis URL, a proxy, a base URL
with ``user:pw@``) and secret-looking query parameters.

:func:`redact_url` is for a URL about to be echoed; :func:`redact_text` is the safety net for
any message (an exception's text may quote a URL it was given).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

#: What replaces a password (or a user name given without one, which may be a token).
MASK = "***"

# scheme://userinfo@ : the userinfo runs to the last "@" before the authority ends.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#]*)@")
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&;](?:password|passwd|pwd|pass|secret|token|access_token|auth|api_?key|key)=)"
    r"(?P<value>[^&;#\s'\"]*)",
    re.IGNORECASE,
)
#: A secret shorter than this is not searched for in text (it would mask ordinary words).
MIN_SECRET_LENGTH = 8


def _mask_userinfo(userinfo: str) -> str:
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{MASK}" if colon else MASK


def redact_url(url: object) -> str:
    """``url`` as text with its credentials replaced by ``***``: scheme, host, port and path
    are kept (``redis://:***@host:6379/0``, ``https://user:***@host/api/v2``). A user name
    given without a password is masked too (it may be a token), and so are the values of
    secret-looking query parameters (``?password=***``). Anything else is returned as it is.
    """
    text = str(url)
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        return redact_text(text)
    if "@" in parts.netloc:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        text = urllib.parse.urlunsplit(
            parts._replace(netloc=f"{_mask_userinfo(userinfo)}@{hostport}")
        )
    return redact_text(text)


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every ``scheme://user:password@`` credential, every secret-looking query
    parameter value and each of ``secrets`` (at least ``MIN_SECRET_LENGTH`` long) replaced
    by ``***``."""
    text = _USERINFO.sub(
        lambda m: f"{m.group('scheme')}{_mask_userinfo(m.group('userinfo'))}@", text
    )
    text = _SECRET_QUERY.sub(lambda m: f"{m.group('name')}{MASK}", text)
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, MASK)
    return text


def url_passwords(*urls: str | None) -> list[str]:
    """The passwords in ``urls`` (``scheme://user:password@host``), and their pieces between
    ``#``, ``/`` and ``?``: a library that fails to parse such a URL may quote a piece of it
    (``Port could not be cast to integer value as 'hunter2'``)."""
    found: list[str] = []
    for url in urls:
        if not url or "://" not in url or "@" not in url:
            continue
        userinfo = url.split("://", 1)[1].rsplit("@", 1)[0]
        password = userinfo.partition(":")[2] or userinfo
        found.append(password)
        found += [p for p in re.split(r"[#/?]", password) if len(p) >= 4 and p != password]
    return found


def redact_passwords(text: str, passwords: Iterable[str]) -> str:
    """``text`` with each of ``passwords`` (4 characters or more) replaced by ``***``."""
    for password in sorted(passwords, key=len, reverse=True):
        if len(password) >= 4:
            text = text.replace(password, MASK)
    return text
