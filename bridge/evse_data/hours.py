"""OCPI opening hours → OICP ``IsOpen24Hours`` + ``OpeningTimes`` (design §4.6). Pure."""

from __future__ import annotations

from bridge.ocpi.v211 import models as v211
from bridge.ocpi.v221 import models as v221
from oicp.evse_data import DayValue, OpeningTime, Period

# OCPI RegularHours.weekday 1..7 = Monday..Sunday (2.2.1 mod_locations RegularHours; 2.1.1 §4.14)
WEEKDAYS: tuple[DayValue, ...] = (
    DayValue.MONDAY,
    DayValue.TUESDAY,
    DayValue.WEDNESDAY,
    DayValue.THURSDAY,
    DayValue.FRIDAY,
    DayValue.SATURDAY,
    DayValue.SUNDAY,
)
WHOLE_DAY_ENDS = frozenset({"23:59", "24:00"})

Day = tuple[tuple[str, str], ...]


def _merge(periods: list[tuple[str, str]]) -> Day:
    """Sorted, overlapping or touching periods merged. Overnight periods (end before begin: invalid in
    OCPI, seen in the field) are kept as they are, owned by their opening day [A-17]."""
    normal = sorted(p for p in periods if p[1] >= p[0])
    overnight = sorted(set(p for p in periods if p[1] < p[0]))
    merged: list[tuple[str, str]] = []
    for begin, end in normal:
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((begin, end))
    return tuple(merged + overnight)


def _days(regular: list[v211.RegularHours] | list[v221.RegularHours]) -> list[Day]:
    by_day: list[list[tuple[str, str]]] = [[] for _ in WEEKDAYS]
    for hours in regular:
        by_day[hours.weekday - 1].append((hours.period_begin, hours.period_end))
    return [_merge(periods) for periods in by_day]


def _opening(day: Day, on: DayValue) -> OpeningTime:
    return OpeningTime(period=tuple(Period(begin=b, end=e) for b, e in day), on=on)


def _compress(days: list[Day]) -> tuple[OpeningTime, ...]:
    """All seven days alike → Everyday; else Workdays (Mon–Fri alike) and Weekend (Sat = Sun) where they
    apply, remaining days by name. A day without periods is closed and left out."""
    if all(day == days[0] for day in days):
        return (_opening(days[0], DayValue.EVERYDAY),)
    result: list[OpeningTime] = []
    named = list(range(7))
    if days[0] and all(day == days[0] for day in days[:5]):
        result.append(_opening(days[0], DayValue.WORKDAYS))
        named = [5, 6]
    if days[5] and days[5] == days[6]:
        weekend = _opening(days[5], DayValue.WEEKEND)
        named = [index for index in named if index < 5]
    else:
        weekend = None
    result += [_opening(days[index], WEEKDAYS[index]) for index in named if days[index]]
    if weekend is not None:
        result.append(weekend)
    return tuple(result)


def opening_times(
    hours: v211.Hours | v221.Hours | None, open_when_unknown: bool
) -> tuple[bool, tuple[OpeningTime, ...] | None] | None:
    """``(IsOpen24Hours, OpeningTimes)``; never ``False`` with no times (Hubject refuses that), so unknown
    hours with ``open_when_unknown`` false give None: the EVSE cannot be described.

    Exceptional openings and closings are dated; OICP has no such notion, so they are dropped.
    """
    unknown = (True, None) if open_when_unknown else None
    if hours is None:
        return unknown
    if hours.twentyfourseven:
        return True, None
    days = _days(hours.regular_hours or [])
    if not any(days):  # twentyfourseven false and no regular hours: invalid OCPI, treated as absent
        return unknown
    if all(len(day) == 1 and day[0][0] == "00:00" and day[0][1] in WHOLE_DAY_ENDS for day in days):
        return True, None
    return False, _compress(days)
