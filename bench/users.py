"""The seeded users, the pool that hands out one whose TOTP code is still unspent, and the
password they share."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from bench.load import Stop

TOTP_PERIOD = 30
MAX_USERS = 20_000


def totp_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // TOTP_PERIOD)


@dataclass(frozen=True)
class BenchUser:
    email: str
    secret: str  # base32, as the user's authenticator app holds it


class UserPool:
    """Hands out users whose code for the current 30-second step is still unspent.

    The server accepts a code once per user per step (FAC-1), so a user goes back in the queue
    tagged with the step its code belonged to, and comes out again only in a later step. Users
    come back roughly in step order, so checking the head of the queue is enough; if the head
    is not fresh, waiting for the next step (or for a user to come back) is the only way on.
    """

    def __init__(self, users: Iterable[BenchUser]) -> None:
        self._queue: deque[tuple[BenchUser, int]] = deque((user, -1) for user in users)
        self._changed = threading.Condition()
        self.waits = 0  # how often a client had to wait for a fresh user

    def take(self, stop_at: float) -> BenchUser:
        """A fresh user; Stop (the client thread is done) when none turns up before
        ``stop_at`` (monotonic)."""
        with self._changed:
            waited = False
            while True:
                now = time.time()
                if self._queue and self._queue[0][1] < totp_step(now):
                    return self._queue.popleft()[0]
                left = stop_at - time.monotonic()
                if left <= 0:
                    raise Stop
                if not waited:
                    self.waits += 1
                    waited = True
                until_next_step = TOTP_PERIOD - (now % TOTP_PERIOD) + 0.01
                self._changed.wait(min(left, until_next_step))

    def give_back(self, user: BenchUser, code_step: int | None) -> None:
        """``code_step`` is the step of the code the server accepted; None when unknown (a
        failed or abandoned attempt), and then the current step, which is never earlier."""
        with self._changed:
            self._queue.append((user, totp_step() if code_step is None else code_step))
            self._changed.notify()


def users_needed(verify_s: float, workers: int, reserved: int) -> int:
    """Enough users that none is needed twice within one TOTP step, even if the server signed
    people in as fast as its workers can check passwords (argon2 dominates a sign-in), plus
    the ones the code-step and in-process phases hold at once."""
    fastest_per_s = workers / max(verify_s, 0.001)
    per_step = math.ceil(fastest_per_s * TOTP_PERIOD * 1.25)
    return min(MAX_USERS, max(3000, per_step + reserved))


def verify_cpu_seconds(password_hash: str, password: str) -> float:
    """The CPU time (this thread's) of one argon2id verify: what a worker spends on the hash."""
    from services.passwords import verify_password

    started = time.thread_time()
    verify_password(password_hash, password)
    return time.thread_time() - started


def verify_seconds(password_hash: str, password: str) -> float:
    """The time of one argon2id verify of the shared password, here and now."""
    from services.passwords import verify_password

    started = time.perf_counter()
    verify_password(password_hash, password)
    return time.perf_counter() - started
