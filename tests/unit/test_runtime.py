"""Which of Ray's notices the platform drops, and that every other warning still shows."""

from __future__ import annotations

import logging

import pytest

from vavl.runtime import DROPPED_NOTICES, drop_notices


@pytest.mark.parametrize("name", sorted(DROPPED_NOTICES))
def test_dropped_notices_are_dropped_and_other_warnings_kept(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    drop_notices()
    drop_notices()  # idempotent: one filter per logger
    logger = logging.getLogger(name)
    assert len(logger.filters) == len({type(f) for f in logger.filters})
    with caplog.at_level(logging.WARNING, logger=name):
        for prefix in DROPPED_NOTICES[name]:
            logger.warning(prefix + ". Some advice.")
        logger.warning("disk is full: free some space")
    assert [record.getMessage() for record in caplog.records] == ["disk is full: free some space"]
