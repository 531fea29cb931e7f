"""Sending one-time codes by SMS through a gateway chosen by ``MFA_SMS_GATEWAY`` (FAC-4).

``console`` prints the message (``make run``), ``webhook`` POSTs signed JSON to a relay the
clinic runs, ``twilio`` calls Twilio's Messages API. Callers get ``SmsDeliveryError`` for every
failure, so they handle SMS exactly like mail. The message body carries the code, so it is
never logged, never put in an exception message and never sent over plain http off this host.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import phonenumbers
from flask import current_app

from services.mail import DeliveryError

SIGNATURE_HEADER = "X-Clinic-MFA-Signature"
TIMESTAMP_HEADER = "X-Clinic-MFA-Timestamp"
# Replies are tiny JSON documents; reading more than this only lets a bad server waste memory.
_MAX_REPLY_BYTES = 64 * 1024


class SmsDeliveryError(DeliveryError):
    """The SMS could not be handed to the gateway.

    ``str(error)`` is safe to show staff and to store in the audit log: it never holds the
    message body or a credential. ``reason`` is the shorter text that goes into the app log.
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class SmsGateway(ABC):
    """One way of delivering a text message; built per send from the app's config."""

    name: ClassVar[str]

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config

    @abstractmethod
    def send(self, to: str, body: str) -> None:
        """Deliver ``body`` to the E.164 number ``to`` or raise ``SmsDeliveryError``."""

    def problem(self) -> str | None:
        """What is missing from the settings for this gateway to send anything, or None."""
        return None


class ConsoleGateway(SmsGateway):
    """Prints the message, like console mail, so `make run` needs no gateway."""

    name = "console"

    def send(self, to: str, body: str) -> None:
        try:
            print(f"\n--- SMS to {to}\n{body}\n--- end of SMS", file=sys.stdout, flush=True)
        except (OSError, ValueError) as exc:  # stdout closed or broken
            raise SmsDeliveryError("Could not print the SMS to the console.") from exc


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Clinic-MFA-Signature`` value: HMAC-SHA256 over ``timestamp.body``.

    The timestamp is signed with the body so a receiver that rejects stale timestamps also
    rejects replays of an old, validly signed request.
    """
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_webhook_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    header_value: str,
    *,
    max_age: int | None = None,
    now: float | None = None,
) -> bool:
    """True if ``header_value`` is the signature of this timestamp and body.

    With ``max_age`` (seconds), a timestamp further than that from ``now`` also fails: that
    is what turns the signature into replay protection for a receiver.
    """
    if max_age is not None:
        if not timestamp.isdigit():
            return False
        current = time.time() if now is None else now
        if abs(current - int(timestamp)) > max_age:
            return False
    expected = webhook_signature(secret, timestamp, body)
    return hmac.compare_digest(expected.encode(), header_value.encode("utf-8", "replace"))


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_loopback_url(url: str, setting: str) -> bool:
    """Whether ``url`` points at this host; refuses anything but https, or http to this host,
    because a code sent over plain http can be read by anyone on the path."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        parts, host = None, ""
    if parts is None or not host or parts.scheme not in ("https", "http"):
        raise SmsDeliveryError(f"{setting} must be an https:// URL.")
    loopback = _is_loopback(host)
    if parts.scheme == "http" and not loopback:
        raise SmsDeliveryError(
            f"{setting} uses plain http to another host; codes are only sent over https "
            "(or http to 127.0.0.1/localhost)."
        )
    return loopback


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A gateway that redirects is misconfigured; following it could carry credentials or the
    code to a URL nobody checked, so a 3xx ends the attempt instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        return None


def _redact(text: str, *secrets_: str) -> str:
    for secret in secrets_:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


class _HttpGateway(SmsGateway):
    """Shared POST with a bounded timeout; every failure becomes ``SmsDeliveryError``."""

    def _timeout(self) -> float:
        timeout = self.config.get("MFA_SMS_TIMEOUT")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise SmsDeliveryError("MFA_SMS_TIMEOUT must be a positive number of seconds.")
        return float(timeout)

    def _post(
        self, url: str, setting: str, data: bytes, headers: dict[str, str], redact: tuple[str, ...]
    ) -> bytes:
        """POST and return the reply to a 2xx; anything else raises. ``_error`` turns a
        non-2xx reply into the exception, so each gateway can read its own error format;
        ``redact`` lists what must never be quoted back from the server's text."""
        loopback = _is_loopback_url(url, setting)
        timeout = self._timeout()
        # Loopback never goes through a proxy; the internet may have to (HTTPS_PROXY).
        proxies = urllib.request.ProxyHandler({} if loopback else None)
        opener = urllib.request.build_opener(proxies, _NoRedirect())
        # S310: _is_loopback_url above has allowed only https, or http to this host.
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.read(_MAX_REPLY_BYTES)
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    reply = exc.read(_MAX_REPLY_BYTES)
                except (OSError, http.client.HTTPException):
                    reply = b""
            raise self._error(exc.code, reply, redact) from None
        except (TimeoutError, urllib.error.URLError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):  # a bare TimeoutError is its own reason
                text = f"no answer within {timeout:g} s"
            else:
                text = f"could not connect ({reason})"
            raise SmsDeliveryError(f"The SMS gateway {text}.", reason=text) from exc
        except (OSError, http.client.HTTPException, ValueError) as exc:
            text = f"connection failed ({type(exc).__name__})"
            raise SmsDeliveryError(f"The SMS gateway {text}.", reason=text) from exc

    def _error(self, status: int, reply: bytes, redact: tuple[str, ...]) -> SmsDeliveryError:
        return SmsDeliveryError(f"The SMS gateway answered HTTP {status}.", reason=f"HTTP {status}")


class WebhookGateway(_HttpGateway):
    """POSTs signed JSON to a relay: for an SMS provider we have no code for, or a modem."""

    name = "webhook"

    def problem(self) -> str | None:
        cfg = self.config
        if cfg.get("MFA_SMS_WEBHOOK_URL") and cfg.get("MFA_SMS_WEBHOOK_SECRET"):
            return None
        return "SMS webhook is not configured: set MFA_SMS_WEBHOOK_URL and MFA_SMS_WEBHOOK_SECRET."

    def send(self, to: str, body: str) -> None:
        problem = self.problem()
        if problem:
            raise SmsDeliveryError(problem)
        url = self.config["MFA_SMS_WEBHOOK_URL"]
        secret = self.config["MFA_SMS_WEBHOOK_SECRET"]
        sent_at = int(time.time())
        data = json.dumps(
            {"to": to, "body": body, "sent_at": sent_at}, separators=(",", ":"), sort_keys=True
        ).encode()
        timestamp = str(sent_at)
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: webhook_signature(secret, timestamp, data),
        }
        self._post(url, "MFA_SMS_WEBHOOK_URL", data, headers, redact=(secret, body))


class TwilioGateway(_HttpGateway):
    """Twilio's Messages API (2010-04-01): a form POST, Basic auth, 201 with JSON on success."""

    name = "twilio"

    def problem(self) -> str | None:
        cfg = self.config
        sid, token = cfg.get("MFA_SMS_TWILIO_ACCOUNT_SID"), cfg.get("MFA_SMS_TWILIO_AUTH_TOKEN")
        sender = cfg.get("MFA_SMS_TWILIO_FROM") or cfg.get("MFA_SMS_TWILIO_MESSAGING_SERVICE_SID")
        if sid and token and sender:
            return None
        return (
            "Twilio is not configured: set MFA_SMS_TWILIO_ACCOUNT_SID, "
            "MFA_SMS_TWILIO_AUTH_TOKEN and MFA_SMS_TWILIO_FROM or "
            "MFA_SMS_TWILIO_MESSAGING_SERVICE_SID."
        )

    def send(self, to: str, body: str) -> None:
        problem = self.problem()
        if problem:
            raise SmsDeliveryError(problem)
        sid = self.config["MFA_SMS_TWILIO_ACCOUNT_SID"]
        token = self.config["MFA_SMS_TWILIO_AUTH_TOKEN"]
        sender = self.config.get("MFA_SMS_TWILIO_FROM")
        service = self.config.get("MFA_SMS_TWILIO_MESSAGING_SERVICE_SID")
        base = self.config.get("MFA_SMS_TWILIO_BASE_URL") or "https://api.twilio.com"
        url = (
            f"{base.rstrip('/')}/2010-04-01/Accounts/"
            f"{urllib.parse.quote(sid, safe='')}/Messages.json"
        )
        # A Messaging Service picks the sender itself, and Twilio wants one or the other.
        fields = {"To": to, "Body": body}
        if service:
            fields["MessagingServiceSid"] = service
        else:
            fields["From"] = sender
        credentials = base64.b64encode(f"{sid}:{token}".encode()).decode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "Authorization": f"Basic {credentials}",
        }
        data = urllib.parse.urlencode(fields).encode()
        reply = self._post(url, "MFA_SMS_TWILIO_BASE_URL", data, headers, redact=(token, body))
        message_sid = _json_object(reply).get("sid")
        if isinstance(message_sid, str):
            current_app.logger.info("SMS accepted by twilio as %s", message_sid)

    def _error(self, status: int, reply: bytes, redact: tuple[str, ...]) -> SmsDeliveryError:
        error = _json_object(reply)
        code, message = error.get("code"), error.get("message")
        reason = f"HTTP {status}"
        if isinstance(code, int):
            reason += f", Twilio error {code}"
        detail = reason
        if isinstance(message, str) and message:
            # Twilio's text is for staff; it must not carry our own secrets back out.
            detail += ": " + _redact(message[:200], *redact)
        return SmsDeliveryError(f"Twilio refused the SMS ({detail}).", reason=reason)


def _json_object(reply: bytes) -> dict[str, Any]:
    try:
        value = json.loads(reply)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


GATEWAYS: dict[str, type[SmsGateway]] = {
    gateway.name: gateway for gateway in (ConsoleGateway, WebhookGateway, TwilioGateway)
}


NO_GATEWAY = "No SMS gateway is configured: set MFA_SMS_GATEWAY to webhook or twilio."


def _gateway(config: Mapping[str, Any]) -> SmsGateway:
    name = config.get("MFA_SMS_GATEWAY")
    if not name:
        raise SmsDeliveryError(NO_GATEWAY)
    gateway_class = GATEWAYS.get(name) if isinstance(name, str) else None
    if gateway_class is None:
        raise SmsDeliveryError(
            f"Unknown MFA_SMS_GATEWAY {name!r}; use one of: {', '.join(sorted(GATEWAYS))}."
        )
    return gateway_class(config)


def gateway_problem(config: Mapping[str, Any]) -> str | None:
    """Why no SMS can be sent with these settings, or None. Settings only: a gateway that is
    down is found out when sending. The console gateway counts as configured: production
    starts with it only when told to (config.refuse_unsafe_production)."""
    try:
        return _gateway(config).problem()
    except SmsDeliveryError as exc:
        return str(exc)


def send_sms(to_e164: str, body: str) -> None:
    """Send ``body`` to ``to_e164`` through the configured gateway; ``SmsDeliveryError`` on
    any failure, with a warning logged that names the gateway but never the body."""
    name = current_app.config.get("MFA_SMS_GATEWAY")
    try:
        _gateway(current_app.config).send(to_e164, body)
    except SmsDeliveryError as exc:
        current_app.logger.warning("SMS via %s failed: %s", name, exc.reason)
        raise
    except Exception as exc:
        # A bug must still look like a failed send to the caller (a message, not a 500), and
        # its text may quote the body, so only the type is kept.
        current_app.logger.warning("SMS via %s failed: %s", name, type(exc).__name__)
        raise SmsDeliveryError("The SMS could not be sent.") from None


_NON_DIGITS = re.compile(r"\D")


def mask_number(e164: str) -> str:
    """The number as staff know it, all but two digits at each end hidden: "04******78"."""
    try:
        number = phonenumbers.parse(e164, None)
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    except phonenumbers.NumberParseException:
        national = ""
    digits = _NON_DIGITS.sub("", national)
    if len(digits) > 4:
        return digits[:2] + "*" * (len(digits) - 4) + digits[-2:]
    # Unparseable or too short to show both ends: the last two digits only.
    raw = _NON_DIGITS.sub("", e164)
    if len(raw) > 2:
        return "*" * (len(raw) - 2) + raw[-2:]
    return "*" * 4
