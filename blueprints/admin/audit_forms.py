"""The audit log's filter form (ADM-9): a GET form read from the query string, so it has no
CSRF token (it changes nothing) and every value in it arrives from a URL anyone can type."""

from __future__ import annotations

import ipaddress
from datetime import date
from typing import Any

from wtforms import DateField, Form, SelectField, StringField, ValidationError
from wtforms.validators import Length, Optional

from services.audit_log import EVENT_NAME, LAST_YEAR, Filters, event_choices

FIRST_YEAR = 1970
ANY_EVENT = ("", "Any event")


class ClinicDayField(DateField):
    """A day in the clinic's calendar, YYYY-MM-DD, with a message a person can act on."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        raw = (valuelist[0] if valuelist else "").strip()
        if not raw:
            self.data = None
            return
        try:
            self.data = date.fromisoformat(raw)
        except ValueError:
            self.data = None
            raise ValueError("Enter a date as year-month-day, for example 2026-11-24.") from None
        if not FIRST_YEAR <= self.data.year <= LAST_YEAR:
            self.data = None
            raise ValueError(f"Enter a date between {FIRST_YEAR} and {LAST_YEAR}.")


class AuditFilterForm(Form):
    user = StringField(
        "Person (email address)",
        validators=[
            Optional(),
            Length(max=254, message="An email address is at most 254 characters."),
        ],
    )
    event = SelectField("Event", validate_choice=False)
    from_day = ClinicDayField("From", name="from", validators=[Optional()])
    to_day = ClinicDayField("To", name="to", validators=[Optional()])
    ip = StringField("IP address", validators=[Optional()])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        asked = (self.event.data or "").strip()
        also = asked if EVENT_NAME.match(asked) and len(asked) <= 64 else ""
        self.event.choices = [ANY_EVENT, *event_choices(also)]

    def validate_event(self, field: SelectField) -> None:
        if field.data and field.data not in {value for value, _ in field.choices}:
            raise ValidationError("Choose an event from the list.")

    def validate_to_day(self, field: ClinicDayField) -> None:
        if field.data and self.from_day.data and field.data < self.from_day.data:
            raise ValidationError("The last day is before the first day.")

    def validate_ip(self, field: StringField) -> None:
        raw = (field.data or "").strip()
        if not raw:
            return
        try:
            ipaddress.ip_address(raw)
        except ValueError:
            raise ValidationError(
                "Enter one IP address, for example 203.0.113.7 or 2001:db8::1."
            ) from None

    def filters(self) -> Filters:
        """The validated values, tidied as they are stored (lower-case email, canonical IP)."""
        raw_ip = (self.ip.data or "").strip()
        return Filters(
            email=(self.user.data or "").strip().lower(),
            event=self.event.data or "",
            from_day=self.from_day.data,
            to_day=self.to_day.data,
            ip=str(ipaddress.ip_address(raw_ip)) if raw_ip else "",
        )
