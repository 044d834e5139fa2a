"""When to poll: arXiv announces new papers Sunday-Thursday at 20:00 US Eastern time."""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)

ANNOUNCE_AT = dt.time(20, 0)
ANNOUNCE_WEEKDAYS = frozenset({6, 0, 1, 2, 3})  # Sunday..Thursday (Monday == 0)
# The API and feeds need a few minutes after the announcement to show the new listings.
SETTLE = dt.timedelta(minutes=15)


def _eastern() -> dt.tzinfo:
    try:
        return ZoneInfo("America/New_York")
    except ZoneInfoNotFoundError:  # no tz database: EST all year; at worst an hour late in summer
        return dt.timezone(dt.timedelta(hours=-5), "EST")


EASTERN = _eastern()


def next_announcement(now: dt.datetime) -> dt.datetime:
    """The first announcement strictly after ``now`` (an aware datetime), in UTC.

    Holidays are not modelled: a poll on a day without an announcement just finds nothing new.
    """
    local = now.astimezone(EASTERN)
    for days in range(8):
        day = local.date() + dt.timedelta(days=days)
        if day.weekday() not in ANNOUNCE_WEEKDAYS:
            continue
        moment = dt.datetime.combine(day, ANNOUNCE_AT, tzinfo=EASTERN)
        if moment > local:
            return moment.astimezone(dt.UTC)
    raise AssertionError("unreachable: an announcement happens every week")


def next_full_poll(now: dt.datetime) -> dt.datetime:
    """When the next full poll is due: the next announcement plus a settling delay."""
    return next_announcement(now - SETTLE) + SETTLE
