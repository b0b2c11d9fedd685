"""Credentials are masked in whatever is echoed: URLs and any text quoting one."""

from __future__ import annotations

import pytest

from postman_async._redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2SECRET@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:hunter2SECRET@host/1", "redis://user:***@host/1"),
        ("rediss://:hunter2@SECRET@[::1]:6380/2", "rediss://:***@[::1]:6380/2"),
        ("https://user:hunter2SECRET@host/api/v2", "https://user:***@host/api/v2"),
        ("https://hunter2SECRET@host/api/v2", "https://***@host/api/v2"),  # a token as user
        (
            "redis://host:6379/0?password=hunter2SECRET&db=1",
            "redis://host:6379/0?password=***&db=1",
        ),
        ("https://postman.gov.sg/api/v2", "https://postman.gov.sg/api/v2"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url_keeps_where_and_masks_who(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # idempotent


def test_redact_text_masks_every_credential_in_a_message() -> None:
    text = (
        "Redis at redis://:hunter2SECRET@127.0.0.1:1/0: Error 111 connecting; "
        "proxy 'http://bob:pa55word@proxy:3128' failed; mail bob@example.com; "
        "key key_test_PLANTEDKEY123"
    )
    out = redact_text(text, ["key_test_PLANTEDKEY123", None, "short"])
    assert "hunter2SECRET" not in out and "pa55word" not in out
    assert "PLANTEDKEY123" not in out
    assert "redis://:***@127.0.0.1:1/0" in out and "http://bob:***@proxy:3128" in out
    assert "bob@example.com" in out and "Error 111" in out


def test_network_errors_never_quote_a_url_credential() -> None:
    import aiohttp

    from postman_async._transport import transport_error
    from postman_async.protocol import get_message_request

    request = get_message_request("campaign_1", "message_1")
    cause = aiohttp.InvalidURL("https://user:hunter2SECRET@proxy.internal:3128/api/v2")
    error = transport_error(cause, request, "https://postman.gov.sg/api/v2")
    assert "hunter2SECRET" not in str(error)
    assert "postman.gov.sg:443" in str(error) and "https://user:***@proxy.internal" in str(error)
