"""How crds normalises header values and dates before matching (crds.core.utils / timestamp).

Ported rule for rule, because best-reference selection must agree with crds to the letter:
`condition_value` decides what `1`, `ANY`, `not applicable` or `T` look like to a Match, and
`reformat_date` decides which side of a USEAFTER boundary an observation falls on.
"""

from __future__ import annotations

import datetime
import re
from functools import lru_cache

from crdswatch.errors import DateError

__all__ = [
    "DateError",
    "condition_value",
    "esoteric_key",
    "glob_compress",
    "glob_list",
    "reformat_date",
]

_DONT_CARE_RE = re.compile(r"^-2147483648.0|\(\)|N/A|NOT APPLICABLE|NOT_APPLICABLE$")  # crds' alternation, as is
_NUMBER_RE = re.compile(r"^([-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?|[+-]?[0-9]+\.)$")


def condition_value(value: object) -> str:
    """A header or rmap value in the form match keys use: upper case, numbers as floats, ANY -> *."""
    text = str(value).strip().upper()
    if _NUMBER_RE.match(text):
        text = str(float(text))
    if _DONT_CARE_RE.match(text):
        text = "N/A"
    if text == "ANY":
        text = "*"
    elif text == "4294967295.0":
        text = "-1.0"
    elif text in ("T", "TRUE"):
        text = "T"
    elif text in ("F", "FALSE"):
        text = "F"
    return text


def esoteric_key(key: str) -> bool:
    """Regexes, literals, relations, BETWEEN and NOT: keys whose values cannot be listed."""
    upper = key.upper()
    return (upper.startswith(("{", "(", "#")) and upper.endswith(("}", ")", "#"))) or upper.startswith(
        ("BETWEEN", "NOT")
    )


def glob_list(value: str) -> list[str]:
    """`B|A` -> `['A', 'B']` (sorted, stripped); esoteric or simple values stay whole."""
    if not esoteric_key(value) and "|" in value:
        return sorted(part.strip() for part in value.split("|") if part.strip())
    return [value]


def glob_compress(value: str) -> str:
    return "|".join(glob_list(value))


_T_SEPARATED_RE = re.compile(r"^\d\d\d\d[-/]\d\d[-/]\d\dT\d\d(:\d\d){1,2}(\.\d{1,6})?$")
_ALPHABETICAL_RE = re.compile(r"[A-Za-z]{3,10}")
_MONTH_DAY_YEAR_RE = re.compile(r"^\d\d/\d\d/\d\d\d\d$")
_YEAR_MONTH_DAY_RE = re.compile(r"^\d\d\d\d/\d\d/\d\d$")
_NINETEEN_HUNDREDS_RE = re.compile(r"^\d\d/\d\d/9\d$")
_TWENTY_FIRST_CENT_RE = re.compile(r"^\d\d/\d\d/[0-3]\d$")
_DATE_COLON_TIME_RE = re.compile(r"^\d\d\d\d\d\d\d\d:\d\d\d\d\d\d$")
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@lru_cache(maxsize=8192)
def reformat_date(date: str) -> str:
    """Any date/time form crds accepts -> `YYYY-MM-DD HH:MM:SS[.ffffff]` (crds' sort order)."""
    try:
        return _parse_date(date).isoformat(" ")
    except DateError:
        raise
    except (ValueError, IndexError, OverflowError) as exc:
        raise DateError(str(exc)) from None


def _parse_date(date: str) -> datetime.datetime:
    if "UNDEFINED" in date:
        raise DateError("One or more required date/time values is UNDEFINED")
    date = date.removesuffix(" UT")
    if _T_SEPARATED_RE.match(date):
        date = date.replace("T", " ")
    if _ALPHABETICAL_RE.search(date):
        return _parse_alphabetical(date)
    return _parse_numerical(date)


def _month_num(month: str, initial: str) -> int:
    try:
        return _MONTHS.index(month[:3].capitalize()) + 1
    except ValueError:
        raise ValueError(f"Invalid month value {month!r} in base date {initial!r}") from None


def _parse_alphabetical(date: str) -> datetime.datetime:
    initial = date
    while date.lower().endswith(" am"):
        date = date.lower().replace(" am", "am")
    while date.lower().endswith(" pm"):
        date = date.lower().replace(" pm", "pm")
    date = date.replace("-", " ").replace("/", " ")
    parts = date.split()
    if len(parts) == 4:
        month, day, year, time = parts
    elif len(parts) == 3:
        month, day, year = parts
        time = "00:00AM"
    elif len(parts) < 3:  # crds' messages, from its two tuple unpackings
        raise ValueError(f"not enough values to unpack (expected 3, got {len(parts)})")
    else:
        raise ValueError("too many values to unpack (expected 3)")
    day = day.removesuffix(",")
    try:
        imonth, iday, iyear = _month_num(month, initial), int(day), int(year)
    except Exception:  # noqa: BLE001 - crds retries with day and month swapped on any failure
        day, month = month, day
        imonth, iday, iyear = _month_num(month, initial), int(day), int(year)
    hour, minute, second, micro = _parse_time(time)
    return datetime.datetime(iyear, imonth, iday, hour, minute, second, micro)


def _parse_time(time: str) -> tuple[int, int, int, int]:
    time = time.strip()
    ampm = "unspecified"
    if time[-2:].upper() in ("AM", "PM"):
        ampm = time[-2:].upper()
        time = time[:-2]
    pieces = time.split(":")
    if len(pieces) == 2:
        hour, minute, second = pieces[0], pieces[1], "00"
    elif len(pieces) in (3, 4):
        hour, minute, second = pieces[0], pieces[1], pieces[2]
    elif len(pieces) < 2:  # crds' messages, from its chain of tuple unpackings
        raise ValueError(f"not enough values to unpack (expected 4, got {len(pieces)})")
    else:
        raise ValueError("too many values to unpack (expected 4)")
    ihour, iminute = int(hour), int(minute)
    fsecond = float(second)
    isecond = int(fsecond)
    micro = int((fsecond - isecond) * 10**6)
    if ampm == "PM" and ihour < 12:
        ihour += 12
    elif ampm == "AM" and ihour == 12:
        ihour -= 12
    return ihour, iminute, isecond, micro


def _parse_numerical(dstr: str) -> datetime.datetime:
    dstr = dstr.replace("-", "/")
    parts = dstr.split()
    if not parts:
        raise ValueError(f"Unknown numerical date format: {dstr!r}")
    date = parts[0]
    time = "00:00:00" if len(parts) == 1 else " ".join(parts[1:])
    hour, minute, second, micro = _parse_time(time)
    if _MONTH_DAY_YEAR_RE.match(date):
        month, day, year = date.split("/")
    elif _YEAR_MONTH_DAY_RE.match(date):
        year, month, day = date.split("/")
    elif _NINETEEN_HUNDREDS_RE.match(date):
        day, month, year = date.split("/")
        year = "19" + year
    elif _TWENTY_FIRST_CENT_RE.match(date):
        day, month, year = date.split("/")
        year = "20" + year
    elif _DATE_COLON_TIME_RE.match(date):
        year, month, day = date[:4], date[4:6], date[6:8]
        hour, minute, second, micro = int(date[9:11]), int(date[11:13]), int(date[13:15]), 0
    else:
        raise ValueError(f"Unknown numerical date format: {dstr!r}")
    return datetime.datetime(int(year), int(month), int(day), hour, minute, second, micro)
