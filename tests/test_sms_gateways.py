"""SMS gateways (FAC-4) against real HTTP servers on loopback: the webhook's signed JSON,
Twilio's form POST, every failure as SmsDeliveryError, and the code never in a log line."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from flask import Flask

from services import sms
from services.mail import DeliveryError
from services.sms import SmsDeliveryError, mask_number, send_sms, verify_webhook_signature

CODE = "493817"
BODY = f"{CODE} is your Harbour Clinic sign-in code. It expires in 5 min."
TO = "+61412345678"
SECRET = "whsec-test-0123456789"
SID = "AC123"
TOKEN = "token"
# A token that cannot turn up by chance in an error message, for the redaction checks.
LOUD_TOKEN = "tok-7f3a9c1e5b2d"


@dataclass
class Received:
    method: str
    path: str
    headers: Message  # looked up case-insensitively, as HTTP header names are
    body: bytes


@dataclass
class FakeGateway:
    """What one loopback server received, and how it answers."""

    port: int = 0
    status: int = 201
    reply: bytes = b'{"sid": "SM0123456789abcdef"}'
    reply_headers: dict[str, str] = field(default_factory=dict)
    hang_for: float = 0.0  # seconds to sit on a request without answering
    requests: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    handler_threads: list[threading.Thread] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class _Server(ThreadingHTTPServer):
    fake: FakeGateway


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        fake = self.server.fake
        fake.handler_threads.append(threading.current_thread())
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fake.requests.append(Received(self.command, self.path, self.headers, body))
        if fake.hang_for:
            # Bounded, and cut short at teardown so the thread ends with the test.
            fake.release.wait(fake.hang_for)
            self.close_connection = True
            return
        self.send_response(fake.status)
        self.send_header("Content-Type", "application/json")
        for name, value in fake.reply_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(fake.reply)))
        self.end_headers()
        self.wfile.write(fake.reply)

    do_GET = do_POST  # a followed 302/303 turns the POST into a GET; record that too

    def log_message(self, format: str, *args: Any) -> None:
        """Request lines would only clutter the test output."""


@pytest.fixture
def start_gateway() -> Iterator[Callable[[], FakeGateway]]:
    """start_gateway() -> a FakeGateway served on 127.0.0.1; all stopped at teardown."""
    running: list[tuple[FakeGateway, _Server, threading.Thread]] = []

    def start() -> FakeGateway:
        server = _Server(("127.0.0.1", 0), _Handler)
        fake = FakeGateway(port=server.server_address[1])
        server.fake = fake
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        running.append((fake, server, thread))
        return fake

    yield start
    for fake, server, thread in running:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        for handler in fake.handler_threads:
            handler.join(timeout=5)
        assert not thread.is_alive()
        assert not any(h.is_alive() for h in fake.handler_threads)


@pytest.fixture
def gateway(start_gateway: Callable[[], FakeGateway]) -> FakeGateway:
    return start_gateway()


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Logs:
    collector: _Collector

    @property
    def records(self) -> list[logging.LogRecord]:
        return self.collector.records

    def text(self) -> str:
        formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
        return "\n".join(formatter.format(record) for record in self.records)

    def warnings(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.WARNING]


@pytest.fixture
def logs(app: Flask) -> Iterator[Logs]:
    """Every log record at DEBUG and above, from the app's logger and the root logger alike.
    Our own handler rather than caplog, so it also works under `-p no:logging`."""
    collector = _Collector()
    loggers = [logging.getLogger(), app.logger]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    root = loggers[0]
    root.addHandler(collector)
    yield Logs(collector)
    root.removeHandler(collector)
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def use_webhook(app: Flask, url: str, **extra: Any) -> None:
    app.config.update(
        {
            "MFA_SMS_GATEWAY": "webhook",
            "MFA_SMS_WEBHOOK_URL": url,
            "MFA_SMS_WEBHOOK_SECRET": SECRET,
            "MFA_SMS_TIMEOUT": 3,
            **extra,
        }
    )


def use_twilio(app: Flask, base: str, **extra: Any) -> None:
    app.config.update(
        {
            "MFA_SMS_GATEWAY": "twilio",
            "MFA_SMS_TWILIO_BASE_URL": base,
            "MFA_SMS_TWILIO_ACCOUNT_SID": SID,
            "MFA_SMS_TWILIO_AUTH_TOKEN": TOKEN,
            "MFA_SMS_TWILIO_FROM": "+61400000000",
            "MFA_SMS_TWILIO_MESSAGING_SERVICE_SID": None,
            "MFA_SMS_TIMEOUT": 3,
            **extra,
        }
    )


def send(app: Flask, to: str = TO, body: str = BODY) -> None:
    with app.app_context():
        send_sms(to, body)


def fail(app: Flask) -> SmsDeliveryError:
    with pytest.raises(SmsDeliveryError) as info:
        send(app)
    return info.value


# --- webhook -----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_webhook_posts_signed_json_once(app: Flask, gateway: FakeGateway, host: str):
    gateway.status, gateway.reply = 200, b"{}"
    use_webhook(app, f"http://{host}:{gateway.port}/hook")
    before = int(time.time())
    send(app)
    after = int(time.time())

    assert len(gateway.requests) == 1
    request = gateway.requests[0]
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.headers["Content-Type"] == "application/json"
    payload = json.loads(request.body)
    assert payload == {"to": TO, "body": BODY, "sent_at": payload["sent_at"]}
    assert before <= payload["sent_at"] <= after
    # Compact and sorted, so the bytes a receiver hashes are predictable.
    assert request.body == json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()

    timestamp = request.headers["X-Clinic-MFA-Timestamp"]
    signature = request.headers["X-Clinic-MFA-Signature"]
    assert timestamp == str(payload["sent_at"])
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256)
    assert signature == "sha256=" + expected.hexdigest()
    assert verify_webhook_signature(SECRET, timestamp, request.body, signature)
    assert verify_webhook_signature(SECRET, timestamp, request.body, signature, max_age=300)

    tampered = request.body.replace(TO.encode(), b"+61499999999")
    assert tampered != request.body
    assert not verify_webhook_signature(SECRET, timestamp, tampered, signature)
    assert not verify_webhook_signature("another-secret", timestamp, request.body, signature)
    assert not verify_webhook_signature(SECRET, str(int(timestamp) + 1), request.body, signature)
    # A replay ten minutes later carries a valid signature but a stale timestamp.
    stale = int(timestamp) + 600
    assert not verify_webhook_signature(
        SECRET, timestamp, request.body, signature, max_age=300, now=stale
    )


@pytest.mark.parametrize("missing", ["MFA_SMS_WEBHOOK_URL", "MFA_SMS_WEBHOOK_SECRET"])
def test_webhook_not_configured(app: Flask, gateway: FakeGateway, missing: str):
    use_webhook(app, f"{gateway.base}/hook", **{missing: None})
    error = fail(app)
    assert "SMS webhook is not configured" in str(error)
    assert gateway.requests == []


# --- twilio ------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", [None, "MG999"])
def test_twilio_posts_the_messages_form(app: Flask, gateway: FakeGateway, service: str | None):
    gateway.status, gateway.reply = 201, b'{"sid": "SM0123456789abcdef", "status": "queued"}'
    use_twilio(app, gateway.base, MFA_SMS_TWILIO_MESSAGING_SERVICE_SID=service)
    send(app)

    assert len(gateway.requests) == 1
    request = gateway.requests[0]
    assert (request.method, request.path) == ("POST", "/2010-04-01/Accounts/AC123/Messages.json")
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    scheme, _, credentials = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == f"{SID}:{TOKEN}"
    form = parse_qs(request.body.decode(), strict_parsing=True)
    assert form["To"] == [TO]
    assert form["Body"] == [BODY]
    if service:
        assert form["MessagingServiceSid"] == [service]
        assert "From" not in form
    else:
        assert form["From"] == ["+61400000000"]
        assert "MessagingServiceSid" not in form


def test_twilio_not_configured(app: Flask, gateway: FakeGateway):
    use_twilio(app, gateway.base, MFA_SMS_TWILIO_AUTH_TOKEN=None)
    assert "Twilio is not configured" in str(fail(app))
    use_twilio(app, gateway.base, MFA_SMS_TWILIO_FROM=None)
    assert "Twilio is not configured" in str(fail(app))
    assert gateway.requests == []


def test_twilio_error_names_code_and_message_but_no_secret(
    app: Flask, gateway: FakeGateway, logs: Logs
):
    gateway.status = 400
    gateway.reply = json.dumps(
        {
            "code": 21211,
            "message": "Invalid 'To' Phone Number",
            "more_info": "https://www.twilio.com/docs/errors/21211",
            "status": 400,
        }
    ).encode()
    use_twilio(app, gateway.base, MFA_SMS_TWILIO_AUTH_TOKEN=LOUD_TOKEN)
    error = fail(app)
    assert isinstance(error, DeliveryError)  # callers catch mail and SMS failures alike
    assert "21211" in str(error)
    assert "Invalid 'To' Phone Number" in str(error)
    assert LOUD_TOKEN not in str(error)
    assert any("twilio" in w and "400" in w for w in logs.warnings())


def test_twilio_error_text_echoing_secrets_is_redacted(
    app: Flask, gateway: FakeGateway, logs: Logs
):
    """The error text is stored in the audit log: what the server says must not carry the
    token or the code back into it."""
    gateway.status = 401
    gateway.reply = json.dumps({"code": 20003, "message": f"Bad {LOUD_TOKEN} for {BODY}"}).encode()
    use_twilio(app, gateway.base, MFA_SMS_TWILIO_AUTH_TOKEN=LOUD_TOKEN)
    error = fail(app)
    assert "20003" in str(error)
    assert LOUD_TOKEN not in str(error)
    assert CODE not in str(error)
    assert LOUD_TOKEN not in logs.text()
    assert CODE not in logs.text()


# --- failures shared by both HTTP gateways -----------------------------------------------------


def configure(app: Flask, name: str, base: str) -> None:
    if name == "webhook":
        use_webhook(app, f"{base}/hook")
    else:
        use_twilio(app, base)


@pytest.mark.parametrize("name", ["webhook", "twilio"])
def test_server_error_raises(app: Flask, gateway: FakeGateway, logs: Logs, name: str):
    gateway.status, gateway.reply = 500, b"<html>Internal Server Error</html>"
    configure(app, name, gateway.base)
    fail(app)
    assert len(gateway.requests) == 1
    assert any(name in w and "500" in w for w in logs.warnings())


@pytest.mark.parametrize("status", [302, 303, 307])
@pytest.mark.parametrize("name", ["webhook", "twilio"])
def test_redirect_is_not_followed(
    app: Flask, start_gateway: Callable[[], FakeGateway], name: str, status: int
):
    """Following a 3xx would carry Twilio's Basic auth (urllib keeps it on a 302/303) to a
    URL nobody checked, and report success for a message that was never sent."""
    elsewhere = start_gateway()
    first = start_gateway()
    first.status, first.reply = status, b""
    first.reply_headers = {"Location": f"{elsewhere.base}/stolen"}
    configure(app, name, first.base)
    assert str(status) in str(fail(app))
    assert len(first.requests) == 1
    assert elsewhere.requests == []


@pytest.mark.parametrize("name", ["webhook", "twilio"])
def test_slow_gateway_times_out(app: Flask, gateway: FakeGateway, logs: Logs, name: str):
    gateway.hang_for = 3
    configure(app, name, gateway.base)
    app.config["MFA_SMS_TIMEOUT"] = 1
    started = time.monotonic()
    fail(app)
    elapsed = time.monotonic() - started
    assert len(gateway.requests) == 1  # it did connect and send; the answer never came
    assert 0.9 <= elapsed < 2.5, f"took {elapsed:.2f} s, expected about MFA_SMS_TIMEOUT = 1 s"
    assert any(name in w for w in logs.warnings())


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound but not listening, so no one else can
    start listening on it during the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("name", ["webhook", "twilio"])
def test_connection_refused_raises(app: Flask, logs: Logs, closed_port: int, name: str):
    configure(app, name, f"http://127.0.0.1:{closed_port}")
    error = fail(app)
    assert "could not connect" in str(error)
    assert any(name in w for w in logs.warnings())


def test_unknown_gateway_raises(app: Flask, logs: Logs):
    app.config["MFA_SMS_GATEWAY"] = "carrier-pigeon"
    error = fail(app)
    assert "carrier-pigeon" in str(error)
    assert "console, twilio, webhook" in str(error)
    assert any("carrier-pigeon" in w for w in logs.warnings())


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Records, and refuses, every DNS lookup and outgoing connection."""
    attempts: list[tuple[Any, ...]] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network use in a test that must not touch the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "http://127.0.0.1.example.com/hook",
        "http://localhost.example.com/hook",
        "http://10.0.0.5/hook",
        "http://[::ffff:8.8.8.8]/hook",
        "ftp://127.0.0.1/hook",
        "file:///etc/passwd",
    ],
)
def test_webhook_refuses_plain_http_off_host(
    app: Flask, no_network: list[tuple[Any, ...]], url: str
):
    use_webhook(app, url)
    fail(app)
    assert no_network == []


def test_twilio_refuses_plain_http_off_host(app: Flask, no_network: list[tuple[Any, ...]]):
    use_twilio(app, "http://api.twilio.com")
    assert "MFA_SMS_TWILIO_BASE_URL" in str(fail(app))
    assert no_network == []


# --- console and the safety net ----------------------------------------------------------------


def test_console_prints_number_and_body(app: Flask, capsys: pytest.CaptureFixture[str]):
    app.config["MFA_SMS_GATEWAY"] = "console"
    send(app)
    out = capsys.readouterr().out
    assert TO in out
    assert BODY in out


def test_unexpected_error_becomes_delivery_error(
    app: Flask, logs: Logs, monkeypatch: pytest.MonkeyPatch
):
    class Broken(sms.SmsGateway):
        name = "broken"

        def send(self, to: str, body: str) -> None:
            raise RuntimeError(f"bug while sending {body}")

    monkeypatch.setitem(sms.GATEWAYS, "broken", Broken)
    app.config["MFA_SMS_GATEWAY"] = "broken"
    error = fail(app)
    assert CODE not in str(error)
    assert error.__cause__ is None and error.__context__ is not None  # suppressed, not chained
    assert CODE not in logs.text()
    assert any("broken" in w and "RuntimeError" in w for w in logs.warnings())


# --- the code stays out of logs, whatever happens ----------------------------------------------


def _scenario(app: Flask, gateway: FakeGateway, closed_port: int, scenario: str) -> bool:
    """Configure ``scenario``; True if the send is expected to fail."""
    if scenario == "console":
        app.config["MFA_SMS_GATEWAY"] = "console"
        return False
    if scenario == "unknown":
        app.config["MFA_SMS_GATEWAY"] = "nope"
        return True
    name, outcome = scenario.split("-")
    configure(app, name, gateway.base)
    if outcome == "ok":
        gateway.status = 201 if name == "twilio" else 200
        return False
    if outcome == "error":
        # A gateway that quotes the request back in its error reply.
        gateway.status = 400
        gateway.reply = json.dumps({"code": 21211, "message": BODY, "echo": BODY}).encode()
    elif outcome == "offhost":
        configure(app, name, "http://sms.example.com")
    elif outcome == "refused":
        configure(app, name, f"http://127.0.0.1:{closed_port}")
    return True


@pytest.mark.parametrize(
    "scenario",
    [
        "console",
        "unknown",
        "webhook-ok",
        "webhook-error",
        "webhook-offhost",
        "webhook-refused",
        "twilio-ok",
        "twilio-error",
        "twilio-offhost",
        "twilio-refused",
    ],
)
def test_code_is_never_logged(
    app: Flask,
    gateway: FakeGateway,
    logs: Logs,
    closed_port: int,
    capsys: pytest.CaptureFixture[str],
    scenario: str,
):
    fails = _scenario(app, gateway, closed_port, scenario)
    if fails:
        error = fail(app)
        assert CODE not in str(error)
        assert logs.warnings(), "a failed send must leave a warning for the operator"
    else:
        send(app)
    assert CODE not in logs.text()
    captured = capsys.readouterr()
    assert CODE not in captured.err
    if scenario != "console":
        assert CODE not in captured.out


# --- mask_number -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        ("+61412345678", "04******78"),  # AU mobile, national 0412 345 678
        ("+61298765489", "02******89"),  # AU landline, national (02) 9876 5489
        ("+64211234567", "02******67"),  # NZ mobile, national 021 123 4567
        ("+12015550123", "20******23"),  # US, national (201) 555-0123
        ("+999 1234 5678", "*********78"),  # no such country code: last two digits only
        ("not a phone number", "****"),
        ("", "****"),
    ],
)
def test_mask_number(number: str, shown: str):
    assert mask_number(number) == shown
