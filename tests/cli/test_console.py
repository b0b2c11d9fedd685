"""The progress line shows a connection retry while it happens."""

from __future__ import annotations

import logging

from postman_async._console import watching_trouble


def test_a_retry_logged_by_the_session_reaches_the_progress_note() -> None:
    logger = logging.getLogger("postman_async")
    with watching_trouble() as trouble:
        assert trouble.note() == ""
        logger.debug("GET /x -> 200")  # not trouble
        assert trouble.note() == ""
        logger.info(
            "%s %s failed (%s), retrying in %.2fs (attempt %d)",
            "GET",
            "/campaigns/c/messages/m",
            "connection to 127.0.0.1:9 failed",
            0.5,
            2,
        )
        assert "connection to 127.0.0.1:9 failed" in trouble.note()
        assert "attempt 2" in trouble.note()
    assert logger.level == logging.NOTSET  # restored
