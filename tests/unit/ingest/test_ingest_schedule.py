"""When full polls run: after arXiv's Sunday-Thursday 20:00 US Eastern announcements."""

from __future__ import annotations

import datetime as dt

import pytest

from services.ingest.schedule import next_announcement, next_full_poll

UTC = dt.UTC


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # Tuesday 12:00 UTC (winter, EST) -> Tuesday 20:00 EST = Wednesday 01:00 UTC.
        (dt.datetime(2025, 12, 16, 12, 0, tzinfo=UTC), dt.datetime(2025, 12, 17, 1, 0, tzinfo=UTC)),
        # Thursday after the announcement -> Sunday 20:00 EST (no Friday/Saturday mailings).
        (dt.datetime(2025, 12, 19, 2, 0, tzinfo=UTC), dt.datetime(2025, 12, 22, 1, 0, tzinfo=UTC)),
        # Summer (EDT): Monday 20:00 EDT = Tuesday 00:00 UTC.
        (dt.datetime(2025, 7, 14, 23, 0, tzinfo=UTC), dt.datetime(2025, 7, 15, 0, 0, tzinfo=UTC)),
        # Exactly at an announcement: the next one.
        (dt.datetime(2025, 7, 15, 0, 0, tzinfo=UTC), dt.datetime(2025, 7, 16, 0, 0, tzinfo=UTC)),
    ],
)
def test_next_announcement(now: dt.datetime, expected: dt.datetime) -> None:
    assert next_announcement(now) == expected


def test_full_poll_waits_for_the_listing_to_settle() -> None:
    announced = dt.datetime(2025, 12, 17, 1, 0, tzinfo=UTC)
    assert next_full_poll(announced - dt.timedelta(hours=1)) == announced + dt.timedelta(minutes=15)
    # Just after the announcement the settling poll is still ahead.
    assert next_full_poll(announced + dt.timedelta(minutes=5)) == announced + dt.timedelta(
        minutes=15
    )
    assert next_full_poll(announced + dt.timedelta(minutes=20)) > announced + dt.timedelta(hours=20)
