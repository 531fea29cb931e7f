"""The load phases through gunicorn, each a unit of work handed to the one load driver."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from bench.client import Browser, browsers
from bench.load import LoadResult, Samples, StepFailed, Stop, drive
from bench.signin import HEALTHZ, WHOLE, begin_sign_in, call, post_code, sign_in_next
from bench.users import BenchUser, UserPool


def full_sign_ins(
    port: int, pool: UserPool, password: str, concurrency: int, stop_at: float
) -> LoadResult:
    """Each client signs fresh users in, all five requests, until ``stop_at``."""
    with browsers(port, concurrency) as mine:

        def unit(index: int, samples: Samples) -> None:
            seconds = sign_in_next(mine[index], pool, password, samples, stop_at)
            samples.add(WHOLE, seconds)

        return drive(concurrency, unit, stop_at)


@dataclass
class Pending:
    """A sign-in waiting for its code: the browser (cookies) and the challenge's token."""

    browser: Browser
    user: BenchUser
    csrf: str


def prepare_pending(
    port: int, pool: UserPool, password: str, count: int, concurrency: int, stop_at: float
) -> LoadResult:
    """Up to ``count`` sign-ins taken as far as the challenge page, then left waiting; they
    are the result's ``kept``."""

    def unit(_index: int, samples: Samples) -> Pending:
        user = pool.take(stop_at)
        browser = Browser(port)
        try:
            csrf = begin_sign_in(browser, user, password, samples)
        except StepFailed:
            pool.give_back(user, None)
            raise
        finally:
            # The code arrives later on a new connection, as it would after typing it.
            browser.close()
        return Pending(browser, user, csrf)

    return drive(concurrency, unit, stop_at, count=count)


def post_codes(
    pending: list[Pending], pool: UserPool, concurrency: int, stop_at: float
) -> LoadResult:
    """Every prepared sign-in's code, ``concurrency`` at a time, as fast as answers come."""
    queue = deque(pending)

    def unit(_index: int, samples: Samples) -> None:
        try:
            item = queue.popleft()
        except IndexError:
            raise Stop from None
        code_step = None
        try:
            code_step = post_code(item.browser, item.user, item.csrf, samples)
        finally:
            item.browser.close()
            pool.give_back(item.user, code_step)

    try:
        return drive(concurrency, unit, stop_at)
    finally:
        while queue:  # stopped early: the unused sign-ins' users go back unspent
            pool.give_back(queue.popleft().user, None)


def floor_load(port: int, concurrency: int, stop_at: float) -> LoadResult:
    """GET /healthz in a loop: the cheapest request that still reads the database."""
    with browsers(port, concurrency) as mine:

        def unit(index: int, samples: Samples) -> None:
            call(mine[index], samples, HEALTHZ, "/healthz")

        return drive(concurrency, unit, stop_at)
