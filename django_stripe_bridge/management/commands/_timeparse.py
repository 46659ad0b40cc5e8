"""Parsing the points in time the bridge's commands accept: ``3d``, ``12h``, ISO dates."""

from __future__ import annotations

import datetime as dt
import re

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str) -> dt.timedelta | None:
    """``3d`` → 3 days (units ``s``, ``m``, ``h``, ``d``, ``w``); ``None`` if not a duration."""
    match = _DURATION.match(value)
    if not match:
        return None
    return dt.timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})


def parse_point_in_time(value: str, option: str, now: dt.datetime | None = None) -> dt.datetime:
    """A duration back from now (``3d``) or an ISO date/datetime (UTC unless it says)."""
    now = now or timezone.now()
    duration = parse_duration(value)
    if duration is not None:
        return now - duration
    try:
        moment = parse_datetime(value.strip())
        if moment is None:
            day = parse_date(value.strip())
            if day is not None:
                moment = dt.datetime(day.year, day.month, day.day)
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(
            f"{option} {value!r} is neither a duration (e.g. 3d, 12h, 30m, 2w) nor an ISO "
            "date or datetime (e.g. 2024-05-01 or 2024-05-01T12:00:00Z)."
        )
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=dt.UTC)
    return moment
