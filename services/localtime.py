"""Times as people read them: in the clinic's time zone (``MFA_TIME_ZONE``).

Stored times stay UTC (models/types.py); only what a page or an email shows is converted.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, current_app

from models.types import utcnow


def server_zone_name() -> str:
    """The server's own zone, for the default: TZ, then /etc/timezone, then /etc/localtime's
    link into the zone database, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        return name
    try:
        name = Path("/etc/timezone").read_text().strip()
    except OSError:
        name = ""
    if name:
        return name
    link = Path("/etc/localtime")
    if link.is_symlink():
        target = str(link.resolve())
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    return "UTC"


@cache
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"MFA_TIME_ZONE {name!r} is not a time zone; use a name such as Australia/Sydney."
        ) from exc


def clinic_zone() -> ZoneInfo:
    return zone(current_app.config["MFA_TIME_ZONE"])


def local(moment: datetime) -> datetime:
    return moment.astimezone(clinic_zone())


def when(moment: datetime) -> str:
    """ "09:14 on Tuesday 24 November 2026 (AEDT)": a moment as the clinic's staff read it."""
    here = local(moment)
    return f"{here:%H:%M} on {here:%A} {here.day} {here:%B %Y} ({here:%Z})"


def short(moment: datetime) -> str:
    """ "24 Nov 2026, 09:14": a moment in a table cell, in the clinic's time zone."""
    here = local(moment)
    return f"{here.day} {here:%b %Y, %H:%M}"


def init_app(app: Flask) -> None:
    """Pages show a time as ``{{ moment|clinic_time }}`` (``clinic_short`` in tables), never a
    UTC strftime."""
    app.add_template_filter(when, "clinic_time")
    app.add_template_filter(short, "clinic_short")
    app.add_template_filter(day, "clinic_day")
    app.add_template_filter(day_of, "clinic_day_of")


def today() -> date:
    """The clinic's calendar day now: go-live dates turn at its midnight, not UTC's."""
    return local(utcnow()).date()


def day(value: date) -> str:
    """ "1 February 2027": a date as the clinic's staff read it."""
    return f"{value.day} {value:%B %Y}"


def day_of(moment: datetime) -> str:
    """ "24 November 2026": the clinic's calendar day of a moment."""
    return day(local(moment).date())


def start_of(day: date) -> datetime:
    """The moment (UTC) the clinic's ``day`` begins: its local midnight. Date filters and the
    audit purge count whole clinic days, not UTC ones."""
    return datetime.combine(day, time.min, tzinfo=clinic_zone()).astimezone(UTC)
