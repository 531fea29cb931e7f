"""The one load driver: client threads repeat a unit of work until a stop time, a count or
too many errors, each keeping its own per-step latencies."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bench.client import REQUEST_TIMEOUT_S

MAX_ERRORS = 25  # past this many failed requests in a phase it stops: the figures mean nothing


class StepFailed(Exception):
    """A request that did not answer as a browser's sign-in expects."""

    def __init__(self, step: str, what: str) -> None:
        super().__init__(f"{step}: {what}")
        self.step = step


class Stop(Exception):
    """Raised by a unit of work when there is nothing left for its client thread to do."""


class Samples:
    """Latencies by step. Each thread keeps its own and they are merged afterwards, so
    recording a sample never waits on a lock."""

    def __init__(self) -> None:
        self.by_step: dict[str, list[float]] = {}

    def add(self, step: str, seconds: float) -> None:
        self.by_step.setdefault(step, []).append(seconds)

    def of(self, step: str) -> list[float]:
        return self.by_step.get(step, [])

    @classmethod
    def merged(cls, parts: Iterable[Samples]) -> Samples:
        whole = cls()
        for part in parts:
            for step, values in part.by_step.items():
                whole.by_step.setdefault(step, []).extend(values)
        return whole


class Errors:
    """Failed requests of one phase by cause; past the limit ``halt`` is set and every client
    loop of the phase winds down. Ctrl-C sets it too."""

    def __init__(self, limit: int = MAX_ERRORS) -> None:
        self.counts: Counter[str] = Counter()
        self.halt = threading.Event()
        self._limit = limit
        self._lock = threading.Lock()

    def record(self, failure: StepFailed) -> None:
        with self._lock:
            self.counts[str(failure)] += 1
            if self.counts.total() >= self._limit:
                self.halt.set()

    @property
    def total(self) -> int:
        return self.counts.total()


@dataclass
class Tally:
    """What one client thread did."""

    samples: Samples = field(default_factory=Samples)
    done: int = 0
    kept: list[Any] = field(default_factory=list)


@dataclass
class LoadResult:
    samples: Samples
    done: int  # units that finished without a StepFailed
    wall_s: float
    errors: Errors
    kept: list[Any]  # what the units returned, None left out

    @property
    def per_s(self) -> float:
        return self.done / self.wall_s if self.wall_s > 0 else 0.0


# One unit of work: given the client thread's index and its samples, do one thing (a sign-in,
# a code post, a request), raise StepFailed if it failed or Stop if nothing is left to do.
Unit = Callable[[int, Samples], Any]


def drive(
    clients: int,
    unit: Unit,
    stop_at: float,
    *,
    count: int | None = None,
    error_limit: int = MAX_ERRORS,
) -> LoadResult:
    """Run ``unit`` in ``clients`` loops (threads; a single one on the calling thread) until
    ``stop_at`` (monotonic), until ``count`` units have been started (if given), until a unit
    raises Stop, or until the errors halt the phase."""
    errors = Errors(error_limit)
    tallies = [Tally() for _ in range(clients)]
    lock = threading.Lock()
    started_units = [0]

    def claim() -> bool:
        if count is None:
            return True
        with lock:
            started_units[0] += 1
            return started_units[0] <= count

    def client(index: int) -> None:
        tally = tallies[index]
        while time.monotonic() < stop_at and not errors.halt.is_set() and claim():
            try:
                kept = unit(index, tally.samples)
            except Stop:
                return
            except StepFailed as failure:
                errors.record(failure)
                continue
            tally.done += 1
            if kept is not None:
                tally.kept.append(kept)

    started = time.perf_counter()
    if clients == 1:
        # On the calling thread, so Ctrl-C interrupts the request itself, as it would any code.
        client(0)
    else:
        on_threads(clients, client, stop_at, errors.halt)
    wall = time.perf_counter() - started
    return LoadResult(
        Samples.merged(t.samples for t in tallies),
        sum(t.done for t in tallies),
        wall,
        errors,
        [kept for t in tallies for kept in t.kept],
    )


def on_threads(
    count: int, client: Callable[[int], None], stop_at: float, halt: threading.Event
) -> None:
    """``client(i)`` on ``count`` threads. Every client stops by itself at ``stop_at`` or on
    ``halt``; a thread still running a request timeout later is a bug, reported rather than
    waited for."""
    failures: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            client(index)
        except BaseException as exc:
            failures.append(exc)
            halt.set()

    threads = [
        threading.Thread(target=guarded, args=(i,), name=f"client-{i}", daemon=True)
        for i in range(count)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.1, stop_at + REQUEST_TIMEOUT_S + 5 - time.monotonic()))
    except BaseException:
        halt.set()  # Ctrl-C: tell the clients to stop before the server goes away
        raise
    if any(thread.is_alive() for thread in threads):
        halt.set()
        raise RuntimeError("a client thread did not stop in time")
    if failures:
        raise failures[0]
