"""Sending email with Flask-Mail, or printing it to the console under `make run`.

Callers get ``DeliveryError`` when the mail server refuses or cannot be reached, so they can
tell the person what to do instead of failing (OPS-5).
"""

from __future__ import annotations

import smtplib
import sys
from collections.abc import Mapping
from typing import Any

from flask import current_app, render_template
from flask_mail import Connection, Mail, Message

mail = Mail()


class DeliveryError(RuntimeError):
    """The message could not be handed to the mail server (or the SMS gateway)."""


class _TimedConnection(Connection):
    """Flask-Mail's connection with a socket timeout (it has none), so a hanging mail server
    costs the person a bounded wait (MAIL_TIMEOUT seconds), not a stuck request. Settings are
    read when sending, not frozen at start-up."""

    def configure_host(self) -> smtplib.SMTP:
        cfg = current_app.config
        cls = smtplib.SMTP_SSL if cfg["MAIL_USE_SSL"] else smtplib.SMTP
        host = cls(cfg["MAIL_SERVER"], cfg["MAIL_PORT"], timeout=cfg["MAIL_TIMEOUT"])
        if cfg["MAIL_USE_TLS"]:
            host.starttls()
        if cfg["MAIL_USERNAME"] and cfg["MAIL_PASSWORD"]:
            host.login(cfg["MAIL_USERNAME"], cfg["MAIL_PASSWORD"])
        return host


NO_MAIL_SERVER = (
    "No mail server is configured: set MAIL_SERVER (with MAIL_PORT, MAIL_USE_TLS, "
    "MAIL_USERNAME and MAIL_PASSWORD as the server needs)."
)


def transport_problem(config: Mapping[str, Any]) -> str | None:
    """Why no email can be sent with these settings, or None. Settings only: a server that is
    down is found out when sending. The console transport counts as configured: production
    starts with it only when told to (config.refuse_unsafe_production)."""
    if config.get("MFA_MAIL_TRANSPORT") == "console":
        return None
    if not config.get("MAIL_SERVER"):
        return NO_MAIL_SERVER
    return None


def send(to: str, subject: str, template: str, **context: object) -> None:
    """Render ``mail/<template>.txt`` (and ``.html``) and send it to one address."""
    text = render_template(f"mail/{template}.txt", **context)
    html = render_template(f"mail/{template}.html", **context)
    message = Message(subject=subject, recipients=[to], body=text, html=html)
    if current_app.config["MFA_MAIL_TRANSPORT"] == "console":
        print(
            f"\n--- email to {to}: {subject}\n{text}\n--- end of email", file=sys.stdout, flush=True
        )
        return
    try:
        with _TimedConnection(current_app.extensions["mail"]) as connection:
            connection.send(message)
    except (smtplib.SMTPException, OSError) as exc:
        current_app.logger.warning("Mail to %s failed: %s", to.split("@")[-1], exc)
        raise DeliveryError(str(exc)) from exc
