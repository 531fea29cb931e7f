"""`make bench`: real sign-ins through gunicorn, then the same flow in-process (PERF-2).

In order, inside a three-minute budget:

1. Make a throw-away database (a temporary SQLite file, or a fresh database on the PostgreSQL
   server named by DATABASE_URL), migrate it, and seed users that each have a TOTP factor.
2. Start gunicorn on a free loopback port and drive it the way browsers would: full sign-ins
   for a fixed time; then the code step on its own (pending sign-ins prepared first, their
   codes posted together, then one at a time); then GET /healthz as the floor.
3. Read each worker's memory, stop gunicorn, and replay sign-ins in-process with a statement
   counter on the engine: SQL statements per request and server time per step.
4. The users page over a clinic of 5,000 people, in-process: server time and SQL statements
   of each view (search, filters, sort, two page sizes).
5. Seed a million audit events in bulk and time the audit page in-process under several
   filters, first page and a deep one, with its SQL statements (bench/audit_page.py).
5. Print the figures and the PERF-2 targets. A missed target is reported, not an exit status.

Everything the bench starts or writes (gunicorn, temporary files, the PostgreSQL database) is
removed on the way out, also after Ctrl-C, SIGTERM or an error. bench/README.md says which
module does what.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence

from bench.audit_page import AuditPageResult, measure, seed_events
from bench.database import (
    app_environment,
    bench_database,
    migrate,
    patched_environ,
    seed,
    seed_staff,
    temporary_directory,
)
from bench.inprocess import IN_PROCESS_WARMUP, in_process
from bench.load import LoadResult, StepFailed
from bench.phases import floor_load, full_sign_ins, post_codes, prepare_pending
from bench.progress import log
from bench.report import Report, print_report
from bench.server import ROOT, PhaseCpu, Server, gunicorn, gunicorn_cpu, gunicorn_memory, log_tail
from bench.signin import STEPS
from bench.users import (
    MAX_USERS,
    TOTP_PERIOD,
    BenchUser,
    UserPool,
    users_needed,
    verify_cpu_seconds,
    verify_seconds,
)
from bench.users_page import users_page

# The whole run, cleanup included, must end within three minutes; this leaves a margin. The
# audit page's million events take about a third of it.
TOTAL_BUDGET_S = 170.0
# Upper bounds of the phases after the full sign-ins. Each phase stops early enough to leave
# the later ones their share, so a long --duration shrinks nothing but itself.
LATER_PHASES_S = {
    "prepare": 15.0,
    "codes": 10.0,
    "serial prepare": 8.0,
    "serial codes": 8.0,
    "floor": 6.0,
    "in-process": 10.0,
    "audit seed": 45.0,
    "audit pages": 12.0,
    "users page": 10.0,
    "teardown": 6.0,
}
WARMUP_S = 1.0  # full sign-ins before phase 1, so template compiling is not measured
SOAK_SAMPLE_S = 10.0  # the soak reads worker memory this often
HASH_CPU_SAMPLES = 11  # argon2id verifies timed alone, before the server starts and after


class Budget:
    """The run's hard end; each phase asks for a stop time that leaves room for what follows."""

    def __init__(self, total_s: float) -> None:
        self.started = time.monotonic()
        self.end = self.started + total_s

    def stop_at(self, seconds: float, keep: float = 0.0) -> float:
        return min(time.monotonic() + seconds, self.end - keep)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def keep_after(phase: str | None) -> float:
    """Seconds the phases after ``phase`` (None: after the full sign-ins) may still need."""
    names = list(LATER_PHASES_S)
    later = names if phase is None else names[names.index(phase) + 1 :]
    return sum(LATER_PHASES_S[name] for name in later)


def phase_end(budget: Budget, phase: str) -> float:
    """When ``phase`` must stop: its own bound, or earlier if the run is behind."""
    return budget.stop_at(LATER_PHASES_S[phase], keep_after(phase))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds of full sign-ins (default 20)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument(
        "--threads", type=int, default=1, help="threads per worker; >1 means gthread (default 1)"
    )
    parser.add_argument(
        "--pending", type=int, default=300, help="code posts at --concurrency (default 300)"
    )
    parser.add_argument("--serial", type=int, default=100, help="code posts one at a time")
    parser.add_argument("--floor-seconds", type=float, default=5.0, help="seconds of /healthz")
    parser.add_argument("--in-process", type=int, default=50, help="in-process sign-ins timed")
    parser.add_argument("--users", type=int, default=0, help="users to seed (0: computed)")
    parser.add_argument(
        "--audit-events",
        type=int,
        default=1_000_000,
        help="audit events behind the audit page (default 1000000; 0 skips that phase)",
    )
    parser.add_argument(
        "--page-views", type=int, default=20, help="timed requests per users-page view"
    )
    parser.add_argument(
        "--soak",
        type=float,
        default=0.0,
        help="seconds of sign-ins after the floor, worker RSS read every "
        f"{SOAK_SAMPLE_S:.0f} s (default 0: none; `make soak` runs 90)",
    )
    args = parser.parse_args(argv)
    limits = {
        "concurrency": (1, 64),
        "duration": (1, 60),
        "workers": (1, 16),
        "threads": (1, 16),
        "pending": (1, 2000),
        "serial": (1, 500),
        "floor_seconds": (1, LATER_PHASES_S["floor"]),
        "in_process": (1, 500),
        "users": (0, MAX_USERS),
        "audit_events": (0, 2_000_000),
        "page_views": (1, 200),
        "soak": (0, 3600),
    }
    for name, (low, high) in limits.items():
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name.replace('_', '-')} must be between {low} and {high}")
    return args


def run(args: argparse.Namespace, budget: Budget) -> Report:
    report = Report(concurrency=args.concurrency)
    note_machine_state(report)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(temporary_directory())
        database = stack.enter_context(bench_database(tmp))
        report.database = database.label
        stack.enter_context(patched_environ(app_environment(database.url, tmp)))
        pool, password, password_hash, admin = set_up_users(args, report)

        server_log = tmp / "gunicorn.log"
        with gunicorn(args.workers, args.threads, server_log) as server:
            report.server = server.describe()
            report.master_pid = server.process.pid
            # A second of /healthz so every worker has booted and served: their memory
            # before any sign-in.
            floor_load(server.port, 2 * args.workers, budget.stop_at(1.0))
            report.memory_start = gunicorn_memory(server)
            log(f"{report.server}; warming up")
            full_sign_ins(server.port, pool, password, args.concurrency, budget.stop_at(WARMUP_S))
            # Memory is judged from here: each worker has hashed (argon2 takes its 19 MiB once
            # and keeps it) and rendered every page of the sign-in.
            report.memory_warm = gunicorn_memory(server)
            try:
                measure_through_gunicorn(args, budget, server, pool, password, report)
            finally:
                # Errors and warnings only (--log-level warning); the file goes with tmp.
                report.server_log_tail = log_tail(server_log)
        time_hash_cpu(report, password_hash, password)

        log(f"in-process: {args.in_process} sign-ins with a statement counter")
        report.inproc = in_process(
            pool, password, password_hash, args.in_process, phase_end(budget, "in-process")
        )
        report.pool_waits = pool.waits
        log(f"users page: {report.people} people, each view {args.page_views} times")
        report.users_page = users_page(
            admin, password, report.people, args.page_views, phase_end(budget, "users page")
        )
        if args.audit_events:
            report.audit = audit_phase(args.audit_events, password, password_hash, budget)
    report.elapsed_s = budget.elapsed()
    return report


def audit_phase(events: int, password: str, password_hash: str, budget: Budget) -> AuditPageResult:
    """A million audit events (fewer if the seeding's share of the budget runs out), then the
    audit page timed in-process."""
    log(f"audit page: seeding {events} audit events in bulk")
    result = AuditPageResult(asked=events)
    admin, result.events, result.seed_s, result.analyzed = seed_events(
        events, password_hash, phase_end(budget, "audit seed")
    )
    log(f"   seeded {result.events} in {result.seed_s:.1f} s; timing the audit page")
    try:
        result.pages = measure(admin, password, phase_end(budget, "audit pages"))
    except StepFailed as failure:
        result.error = str(failure)
    return result


def note_machine_state(report: Report) -> None:
    """Anything else busy on the machine shows in every figure: say how busy it was."""
    load = os.getloadavg()
    report.load_average = " ".join(f"{x:.2f}" for x in load)
    if load[0] >= 0.5 * (os.cpu_count() or 1):
        report.setup_notes.append(
            "warning: the machine was already busy before the run; every figure below is lower"
        )
    if (ROOT / "instance" / "config.py").exists():
        report.setup_notes.append(
            "warning: instance/config.py exists and overrides the environment in gunicorn"
        )


def time_hash_cpu(report: Report, password_hash: str, password: str) -> None:
    """What one argon2id verify costs in CPU, timed alone while the server is idle or gone."""
    report.hash_cpu_samples += [
        verify_cpu_seconds(password_hash, password) for _ in range(HASH_CPU_SAMPLES)
    ]


def set_up_users(args: argparse.Namespace, report: Report) -> tuple[UserPool, str, str, BenchUser]:
    """Migrate, seed enough users for the rate argon2 allows, then the rest of a 5,000-person
    clinic and its Administrator; returns the pool, the password everyone shares, its hash,
    and the Administrator."""
    from services.passwords import hash_password

    log(f"database: {report.database}; migrating")
    migrate_s = migrate()
    password = secrets.token_urlsafe(18)
    password_hash = hash_password(password)
    verify_s = min(verify_seconds(password_hash, password) for _ in range(3))
    # What the hash costs a worker, to take out of a whole sign-in's server CPU.
    time_hash_cpu(report, password_hash, password)
    reserved = args.pending + args.serial + args.in_process + IN_PROCESS_WARMUP + 50
    count = args.users or users_needed(verify_s, args.workers, reserved)
    log(f"seeding {count} users")
    users, seed_s = seed(count, password_hash)
    report.users = count
    enough = (
        f"{count} users as asked (--users)"
        if args.users
        else f"enough users that none signs in twice within a {TOTP_PERIOD} s TOTP step"
    )
    admin, report.people, staff_s = seed_staff(count, password_hash)
    report.setup_notes += [
        f"migrated in {migrate_s:.1f} s, seeded in {seed_s:.1f} s; argon2id verify takes "
        f"{verify_s * 1000:.0f} ms here,",
        f"so {args.workers} workers sign in at most {args.workers / verify_s:.0f} people/s: "
        f"{enough}",
        f"then {report.people - count} more people of every kind for the users page, "
        f"{report.people} in all ({staff_s:.1f} s)",
    ]
    return UserPool(users), password, password_hash, admin


def measure_through_gunicorn(
    args: argparse.Namespace,
    budget: Budget,
    server: Server,
    pool: UserPool,
    password: str,
    report: Report,
) -> None:
    """Phases 1 to 3, each with the server's CPU over it; then the workers' memory."""
    port, concurrency = server.port, args.concurrency
    log(f"1. full sign-ins at concurrency {concurrency} for {args.duration:.0f} s")
    cpu = gunicorn_cpu(server)
    report.full = full_sign_ins(
        port,
        pool,
        password,
        concurrency,
        budget.stop_at(args.duration, keep_after(None) + args.soak),
    )
    report.cpu["full"], cpu = cpu_since(server, cpu, report.full.done, len(STEPS))

    log(f"2. preparing {args.pending} pending sign-ins")
    report.codes_prepare, report.codes, report.cpu["codes"] = code_batch(
        budget, server, pool, password, args.pending, concurrency, concurrency, ""
    )
    log(f"   preparing {args.serial} more pending sign-ins")
    report.serial_prepare, report.serial, report.cpu["serial"] = code_batch(
        budget, server, pool, password, args.serial, concurrency, 1, "serial "
    )

    log(f"3. floor: GET /healthz at concurrency {concurrency} for {args.floor_seconds:.0f} s")
    cpu = gunicorn_cpu(server)
    report.floor = floor_load(
        port, concurrency, budget.stop_at(args.floor_seconds, keep_after("floor"))
    )
    report.cpu["floor"], _ = cpu_since(server, cpu, report.floor.done, 1)
    if args.soak:
        soak(args, budget, server, pool, password, report)

    report.memory_after = gunicorn_memory(server)


def worker_rss(server: Server) -> dict[int, float]:
    memory = gunicorn_memory(server)
    return {pid: m["VmRSS"] for pid, m in memory.items() if pid != server.process.pid}


def soak(
    args: argparse.Namespace,
    budget: Budget,
    server: Server,
    pool: UserPool,
    password: str,
    report: Report,
) -> None:
    """``--soak`` seconds of full sign-ins, each worker's RSS read every SOAK_SAMPLE_S: whether
    memory grows under sustained load (PERF-2: flat, no allocator tricks)."""
    log(f"   soak: full sign-ins for {args.soak:.0f} s, worker memory every {SOAK_SAMPLE_S:.0f} s")
    started = time.monotonic()
    end = budget.stop_at(args.soak, keep_after("floor"))
    report.soak.append((0.0, worker_rss(server)))
    while time.monotonic() < end - 1.0:
        stop = min(end, time.monotonic() + SOAK_SAMPLE_S)
        result = full_sign_ins(server.port, pool, password, args.concurrency, stop)
        report.soak_sign_ins += result.done
        report.soak.append((time.monotonic() - started, worker_rss(server)))
        if result.errors.halt.is_set():
            break


def cpu_since(
    server: Server, before: dict[int, tuple[float, int]], units: int, requests_per_unit: int
) -> tuple[PhaseCpu, dict[int, tuple[float, int]]]:
    """The server's CPU since ``before`` over ``units``, and the reading it ended with."""
    after = gunicorn_cpu(server)
    return PhaseCpu.between(before, after, units, requests_per_unit), after


def code_batch(
    budget: Budget,
    server: Server,
    pool: UserPool,
    password: str,
    count: int,
    concurrency: int,
    posting: int,
    phase: str,
) -> tuple[LoadResult, LoadResult, PhaseCpu]:
    """``count`` sign-ins prepared up to the challenge, then their codes posted ``posting`` at
    a time, with the server's CPU over the posting alone; ``phase`` ("" or "serial ") names
    the two phases' shares of the budget."""
    prepared = prepare_pending(
        server.port, pool, password, count, concurrency, phase_end(budget, f"{phase}prepare")
    )
    log(f"   posting {len(prepared.kept)} codes at concurrency {posting}")
    cpu = gunicorn_cpu(server)
    posted = post_codes(prepared.kept, pool, posting, phase_end(budget, f"{phase}codes"))
    spent, _ = cpu_since(server, cpu, posted.done, 1)
    return prepared, posted, spent


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    # Unwind like Ctrl-C does, so every `with` cleans up on the way out.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    budget = Budget(TOTAL_BUDGET_S + args.soak)
    try:
        report = run(args, budget)
    except KeyboardInterrupt:
        log(f"interrupted after {budget.elapsed():.1f} s; server and temporary files removed")
        return 130
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
