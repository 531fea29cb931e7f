"""A browser's sign-in, step by step, written once for any client: the HTTP Browser
through gunicorn or the in-process test client."""

from __future__ import annotations

import http.client
import re
import time
from typing import Protocol
from urllib.parse import urlsplit

import pyotp

from bench.client import Reply
from bench.load import StepFailed
from bench.users import BenchUser, UserPool, totp_step

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
SIGN_IN_PAGE = "GET /sign-in"
PASSWORD_POST = "POST /sign-in"
CHALLENGE_PAGE = "GET /mfa/challenge"
CODE_POST = "POST /mfa/challenge"
HOME = "GET /"
HEALTHZ = "GET /healthz"
STEPS = (SIGN_IN_PAGE, PASSWORD_POST, CHALLENGE_PAGE, CODE_POST, HOME)
WHOLE = "whole sign-in"


class Client(Protocol):
    note: str  # added to the cause of a failed request, to tell where it failed

    def clear_cookies(self) -> None: ...

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[Reply, float]: ...


class Recorder(Protocol):
    def add(self, step: str, seconds: float) -> None: ...


def call(
    client: Client,
    samples: Recorder,
    step: str,
    path: str,
    form: dict[str, str] | None = None,
    *,
    status: int = 200,
    to: str | None = None,
) -> Reply:
    """One request of a sign-in: GET without a form, POST with one; checked, then timed."""
    try:
        reply, seconds = client.request("GET" if form is None else "POST", path, form)
    except (OSError, http.client.HTTPException) as exc:
        raise StepFailed(step, type(exc).__name__) from exc
    if reply.status != status:
        raise StepFailed(step, f"HTTP {reply.status}{client.note}")
    if to is not None and urlsplit(reply.location).path != to:
        raise StepFailed(step, f"redirect to {reply.location or '(none)'}{client.note}")
    samples.add(step, seconds)
    return reply


def csrf_in(page: str, step: str) -> str:
    """The page's CSRF token: every step clears the session, so each page has a new one."""
    match = CSRF_META.search(page)
    if match is None:
        raise StepFailed(step, "no csrf-token meta tag")
    return match.group(1)


def begin_sign_in(client: Client, user: BenchUser, password: str, samples: Recorder) -> str:
    """A new browser's sign-in page, password, challenge page; the challenge's CSRF token."""
    client.clear_cookies()
    page = call(client, samples, SIGN_IN_PAGE, "/sign-in")
    form = {
        "csrf_token": csrf_in(page.body, SIGN_IN_PAGE),
        "email": user.email,
        "password": password,
    }
    call(client, samples, PASSWORD_POST, "/sign-in", form, status=303, to="/mfa/challenge")
    challenge = call(client, samples, CHALLENGE_PAGE, "/mfa/challenge")
    return csrf_in(challenge.body, CHALLENGE_PAGE)


def post_code(client: Client, user: BenchUser, csrf: str, samples: Recorder) -> int:
    """Post the authenticator's current code; returns the TOTP step the code belongs to."""
    now = time.time()
    form = {"csrf_token": csrf, "code": pyotp.TOTP(user.secret).at(now)}
    call(client, samples, CODE_POST, "/mfa/challenge", form, status=303, to="/")
    return totp_step(now)


def sign_in_next(
    client: Client, pool: UserPool, password: str, samples: Recorder, stop_at: float
) -> float:
    """Sign the pool's next fresh user in from a new browser, all five requests; the user goes
    back tagged with the step of the code the server accepted. Returns the five's seconds."""
    user = pool.take(stop_at)
    code_step = None
    started = time.perf_counter()
    try:
        csrf = begin_sign_in(client, user, password, samples)
        code_step = post_code(client, user, csrf, samples)
        call(client, samples, HOME, "/")
        return time.perf_counter() - started
    finally:
        pool.give_back(user, code_step)
