"""The report on stdout: percentiles, tables, and the PERF-2 targets met or missed."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.audit_page import TARGET_S as AUDIT_PAGE_MAX_S
from bench.audit_page import TIMED as AUDIT_PAGE_TIMED
from bench.audit_page import AuditPageResult
from bench.inprocess import IN_PROCESS_WARMUP, InProcessResult
from bench.load import LoadResult
from bench.server import CLOCK_TICK_S, PhaseCpu
from bench.signin import CODE_POST, HEALTHZ, STEPS, WHOLE
from bench.users_page import WARMUP as PAGE_WARMUP
from bench.users_page import UsersPageResult

# PERF-2 targets.
CODE_POST_STATEMENTS_MAX = 4
SIGN_IN_WITHOUT_HASH_MAX_S = 0.010
CODE_STEP_SERVER_MAX_S = 0.002
# Memory is judged by flatness under load, not by a ceiling: a worker's RSS once warmed up
# (argon2's 19 MiB taken once, templates compiled) may move by page-sized noise, not grow.
WORKER_RSS_GROWTH_MAX_MB = 2.0
USERS_PAGE_MAX_S = 0.100
USERS_PAGE_PEOPLE = 5_000

LATENCY_HEADERS = ("n", "p50 ms", "p95 ms", "p99 ms")


@dataclass
class Report:
    database: str = ""
    server: str = ""
    concurrency: int = 0
    users: int = 0
    setup_notes: list[str] = field(default_factory=list)
    full: LoadResult | None = None
    codes: LoadResult | None = None
    codes_prepare: LoadResult | None = None  # its kept: the sign-ins waiting for a code
    serial_prepare: LoadResult | None = None
    serial: LoadResult | None = None
    floor: LoadResult | None = None
    master_pid: int = 0
    memory_start: dict[int, dict[str, float]] = field(default_factory=dict)
    memory_warm: dict[int, dict[str, float]] = field(default_factory=dict)  # after warm-up
    memory_after: dict[int, dict[str, float]] = field(default_factory=dict)
    inproc: InProcessResult | None = None
    audit: AuditPageResult | None = None
    people: int = 0  # everyone in the database, for the users page
    users_page: UsersPageResult | None = None
    # The server's CPU over each load phase ("full", "codes", "serial", "floor").
    cpu: dict[str, PhaseCpu] = field(default_factory=dict)
    # One argon2id verify's CPU, timed alone before the server starts and after it stops.
    hash_cpu_samples: list[float] = field(default_factory=list)
    # The soak: (seconds since it began, worker RSS by pid) every few seconds of sign-ins.
    soak: list[tuple[float, dict[int, float]]] = field(default_factory=list)
    soak_sign_ins: int = 0

    @property
    def hash_cpu_s(self) -> float | None:
        return median(self.hash_cpu_samples)

    server_log_tail: str = ""
    load_average: str = ""
    pool_waits: int = 0
    elapsed_s: float = 0.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], indent: str = "  "
) -> list[str]:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        return indent + "  ".join([first, *rest]).rstrip()

    rule = indent + "  ".join("-" * width for width in widths)
    return [line(cells[0]), rule, *(line(row) for row in cells[1:])]


def latency_cells(values: Sequence[float]) -> list[object]:
    return [len(values), *(ms(percentile(values, q)) for q in (0.50, 0.95, 0.99))]


def errors_lines(result: LoadResult | None, label: str = "errors") -> list[str]:
    if result is None or not result.errors.total:
        return [f"  {label}: none"]
    errors = result.errors
    stopped = " (phase stopped early)" if errors.halt.is_set() else ""
    lines = [f"  {label}: {errors.total}{stopped}"]
    lines += [f"    {count} x {cause}" for cause, count in errors.counts.most_common()]
    return lines


def prepared(result: LoadResult | None) -> int:
    return 0 if result is None else len(result.kept)


def statements_text(values: list[int]) -> str:
    if not values:
        return "-"
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


@dataclass(frozen=True)
class Perf2:
    """The figures PERF-2 sets targets for; None when a phase could not measure one."""

    code_vs_floor: float | None
    code_post_statements: int | None
    sign_in_minus_hash_s: float | None  # server CPU, whole-process
    code_server_s: float | None  # server CPU, whole-process
    largest_worker_growth_mb: float | None  # RSS after the load minus after the warm-up
    audit_page_s: float | None = None  # the slowest audit page (median of its requests)
    audit_events: int = 0
    users_page_s: float | None = None  # the slowest view's median
    users_page_people: int = 0
    users_page_same_statements: bool | None = None
    soak_s: float = 0.0  # how long the soak ran (0: none)
    soak_growth_mb: float | None = None  # the largest worker growth over the soak


def perf2_figures(report: Report) -> Perf2:
    codes, floor, inproc = report.codes, report.floor, report.inproc
    ratio = None
    if codes is not None and floor is not None and floor.per_s > 0:
        ratio = codes.per_s / floor.per_s
    statements = None
    if inproc is not None:
        code_statements = inproc.statements.get(CODE_POST, [])
        statements = max(code_statements) if code_statements else None
    cpu = server_cpu_figures(report)
    # Workers only: the master serves no requests (it holds the preloaded app to share it).
    growth = [
        after["VmRSS"] - report.memory_warm[pid]["VmRSS"]
        for pid, after in report.memory_after.items()
        if pid != report.master_pid
        and "VmRSS" in after
        and "VmRSS" in report.memory_warm.get(pid, {})
    ]
    audit = report.audit
    page = report.users_page
    return Perf2(
        ratio,
        statements,
        cpu.sign_in_minus_hash_s,
        cpu.code_step_s,
        max(growth) if growth else None,
        audit.slowest_s if audit else None,
        audit.events if audit else 0,
        page.slowest_median_s if page else None,
        page.people if page else 0,
        page.same_statements_at_both_page_sizes if page else None,
        report.soak[-1][0] if len(report.soak) > 1 else 0.0,
        max(soak_growth(report).values(), default=None),
    )


def soak_growth(report: Report) -> dict[int, float]:
    """Each worker's RSS at the soak's end minus at its start, for workers present at both."""
    if len(report.soak) < 2:
        return {}
    first, last = report.soak[0][1], report.soak[-1][1]
    return {pid: last[pid] - first[pid] for pid in last if pid in first}


def slope_mb_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of RSS over time, in MB per minute."""
    if len(points) < 2:
        return None
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return None
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


@dataclass(frozen=True)
class ServerCpuFigures:
    """Whole-process server CPU per unit of work, from the load phases through gunicorn."""

    sign_in_s: float | None  # one whole sign-in, five requests
    sign_in_minus_hash_s: float | None
    code_step_s: float | None  # one POST /mfa/challenge, both code phases together
    floor_s: float | None  # one GET /healthz


def server_cpu_figures(report: Report) -> ServerCpuFigures:
    cpu = report.cpu
    sign_in = cpu["full"].per_unit_s if "full" in cpu else None
    minus_hash = None
    if sign_in is not None and report.hash_cpu_s is not None:
        minus_hash = sign_in - report.hash_cpu_s
    code_phases = [cpu[name] for name in ("codes", "serial") if name in cpu]
    posts = sum(phase.units for phase in code_phases)
    code_step = sum(phase.seconds for phase in code_phases) / posts if posts else None
    floor = cpu["floor"].per_request_s if "floor" in cpu else None
    return ServerCpuFigures(sign_in, minus_hash, code_step, floor)


def header_lines(report: Report) -> list[str]:
    lines = [
        "Clinic MFA bench (PERF-2)",
        "=========================",
        f"database: {report.database}",
        f"server:   {report.server}",
        f"clients:  {report.concurrency} threads (http.client, a new connection whenever the "
        f"server closes one), on the same {os.cpu_count()}-CPU machine as the server",
        f"load:     {report.load_average} (1, 5, 15 min load average before the run)",
        f"users:    {report.users} Practitioners, one TOTP factor each, MFA policy 'required'",
    ]
    lines += [f"          {note}" for note in report.setup_notes]
    return lines


def full_lines(report: Report) -> list[str]:
    full = report.full
    if full is None:
        return []
    return [
        "",
        f"1. Full sign-ins through gunicorn: concurrency {report.concurrency}, {full.wall_s:.1f} s",
        f"  {full.done} sign-ins completed: {full.per_s:.1f} per second",
        *table(
            ["step", *LATENCY_HEADERS],
            [[step, *latency_cells(full.samples.of(step))] for step in [*STEPS, WHOLE]],
        ),
        *errors_lines(full),
    ]


def code_step_lines(report: Report) -> list[str]:
    codes, serial = report.codes, report.serial
    if codes is None:
        return []
    rows = [[f"concurrency {report.concurrency}", f"{codes.per_s:.1f}"]]
    rows[0] += latency_cells(codes.samples.of(CODE_POST))
    if serial is not None:
        rows.append(["concurrency 1", f"{serial.per_s:.1f}"])
        rows[1] += latency_cells(serial.samples.of(CODE_POST))
    return [
        "",
        f"2. The code step alone (POST /mfa/challenge): {prepared(report.codes_prepare)} and "
        f"{prepared(report.serial_prepare)} sign-ins prepared up to the challenge first",
        *table(["run", "req/s", *LATENCY_HEADERS], rows),
        *errors_lines(report.codes_prepare, "errors while preparing"),
        *errors_lines(report.serial_prepare, "errors while preparing the serial batch"),
        *errors_lines(codes, f"errors at concurrency {report.concurrency}"),
        *(errors_lines(serial, "errors at concurrency 1") if serial else []),
    ]


def floor_lines(report: Report, figures: Perf2) -> list[str]:
    floor, codes = report.floor, report.codes
    if floor is None:
        return []
    lines = [
        "",
        f"3. Floor: GET /healthz, concurrency {report.concurrency}, {floor.wall_s:.1f} s",
        *table(
            ["run", "req/s", *LATENCY_HEADERS],
            [[HEALTHZ, f"{floor.per_s:.1f}", *latency_cells(floor.samples.of(HEALTHZ))]],
        ),
        *errors_lines(floor),
    ]
    if codes is not None and figures.code_vs_floor is not None:
        lines.append(
            f"  code step / floor = {codes.per_s:.1f} / {floor.per_s:.1f} req/s "
            f"= {figures.code_vs_floor:.0%}"
        )
    return lines


def times_floor(seconds: float | None, floor: float | None, requests: int = 1) -> str:
    if seconds is None or not floor:
        return "-"
    return f"{seconds / (floor * requests):.1f}x"


def server_cpu_lines(report: Report) -> list[str]:
    if not report.cpu:
        return []
    figures = server_cpu_figures(report)
    floor = figures.floor_s
    labels = {
        "full": "whole sign-in (5 requests)",
        "codes": f"code step, concurrency {report.concurrency}",
        "serial": "code step, concurrency 1",
        "floor": HEALTHZ,
    }
    rows = [
        [
            label,
            phase.units,
            f"{phase.seconds:.2f}",
            ms(phase.per_unit_s),
            ms(phase.per_request_s),
            times_floor(phase.per_request_s, floor),
            "-" if phase.faults_per_unit is None else f"{phase.faults_per_unit:.0f}",
        ]
        for name, label in labels.items()
        if (phase := report.cpu.get(name)) is not None
    ]
    changed = [name for name, phase in report.cpu.items() if not phase.same_processes]
    hash_ms = ms(report.hash_cpu_s)
    return [
        "",
        "4. Server CPU, whole-process: utime + stime of gunicorn's master and workers from",
        f"   /proc, read before and after each phase (clock tick {CLOCK_TICK_S * 1000:.0f} ms), "
        "divided by what the phase completed",
        *table(
            [
                "phase",
                "units",
                "CPU s",
                "ms per unit",
                "ms per request",
                "x floor request",
                "page faults per unit",
            ],
            rows,
        ),
        f"  argon2id verify alone (CPU, in the bench process, median of "
        f"{len(report.hash_cpu_samples)} before and after the load): {hash_ms} ms",
        f"  whole sign-in minus the hash: {ms(figures.sign_in_s)} - {hash_ms} = "
        f"{ms(figures.sign_in_minus_hash_s)} ms = "
        f"{times_floor(figures.sign_in_minus_hash_s, floor, len(STEPS))} five floor requests",
        f"  code step (both code phases): {ms(figures.code_step_s)} ms = "
        f"{times_floor(figures.code_step_s, floor)} the floor request",
        *(
            [f"  warning: a worker started or ended during {', '.join(changed)}: CPU missed"]
            if changed
            else []
        ),
    ]


def in_process_minus_hash(inproc: InProcessResult) -> float | None:
    whole, argon2 = median(inproc.seconds.of(WHOLE)), median(inproc.argon2_s)
    return None if whole is None or argon2 is None else whole - argon2


def in_process_lines(report: Report) -> list[str]:
    inproc = report.inproc
    if inproc is None:
        return []
    rows = [
        [
            step,
            statements_text(inproc.statements.get(step, [])),
            ms(median(inproc.seconds.of(step))),
            ms(percentile(inproc.seconds.of(step), 0.95)),
        ]
        for step in STEPS
    ]
    whole = inproc.seconds.of(WHOLE)
    rows.append(
        [
            WHOLE,
            sum(max(v, default=0) for v in inproc.statements.values()),
            ms(median(whole)),
            ms(percentile(whole, 0.95)),
        ]
    )
    return [
        "",
        f"5. In-process (app.test_client(), no HTTP, same database): {inproc.sign_ins} "
        f"sign-ins timed after {IN_PROCESS_WARMUP} warm-up",
        *table(["step", "SQL statements", "median ms", "p95 ms"], rows),
        f"  argon2id verify alone: median {ms(median(inproc.argon2_s))} ms "
        f"(of {len(inproc.argon2_s)})",
        f"  whole sign-in minus password hash: {ms(in_process_minus_hash(inproc))} ms",
        *errors_lines(inproc.load),
    ]


def users_page_lines(report: Report) -> list[str]:
    page = report.users_page
    if page is None:
        return []
    rows = [
        [
            label,
            view.matched,
            view.statements,
            ms(median(view.seconds)),
            ms(percentile(view.seconds, 0.95)),
        ]
        for label, view in page.views.items()
    ]
    same = page.same_statements_at_both_page_sizes
    return [
        "",
        f"7. The users page, in-process (app.test_client(), same database): {page.people} "
        f"people, an Administrator signed in; each view timed after {PAGE_WARMUP} warm-up",
        *table(["view", "people matching", "SQL statements", "median ms", "p95 ms"], rows),
        f"  statements at 25 and at 200 a page: {'the same' if same else 'DIFFERENT'}",
    ]


def memory_lines(report: Report) -> list[str]:
    rows: list[list[object]] = []
    names = {report.master_pid: "master"}
    pids = [report.master_pid, *sorted(set(report.memory_start) | set(report.memory_after))]
    for pid in dict.fromkeys(pids):
        start = report.memory_start.get(pid, {})
        warm = report.memory_warm.get(pid, {})
        after = report.memory_after.get(pid, {})
        rows.append(
            [
                f"{names.get(pid, 'worker')} {pid}",
                _mb(start.get("VmRSS")),
                _mb(warm.get("VmRSS")),
                _mb(after.get("VmRSS")),
                _mb(after.get("VmHWM")),
                _mb(after.get("Pss")),
                _mb(after.get("USS")),
            ]
        )
    return [
        "",
        "6. Memory of gunicorn's processes (MB = MiB); the app is preloaded in the master, so",
        "   workers share most pages with it: PSS splits shared pages, USS is the worker's own",
        *table(
            [
                "process",
                "RSS at start",
                "after warm-up",
                "after load",
                "peak RSS",
                "PSS after",
                "USS after",
            ],
            rows,
        ),
    ]


def soak_lines(report: Report) -> list[str]:
    if len(report.soak) < 2:
        return []
    pids = sorted(report.soak[0][1])
    rows = [[f"{t:.0f}", *(_mb(rss.get(pid)) for pid in pids)] for t, rss in report.soak]
    growth = soak_growth(report)
    slopes = {
        pid: slope_mb_per_min([(t, rss[pid]) for t, rss in report.soak if pid in rss])
        for pid in pids
    }
    return [
        "",
        f"  Soak, after the floor: full sign-ins at concurrency {report.concurrency} for "
        f"{report.soak[-1][0]:.0f} s ({report.soak_sign_ins} sign-ins); worker RSS (MB)",
        *table(["seconds", *(f"worker {pid}" for pid in pids)], rows),
        *(
            f"  worker {pid}: {growth[pid]:+.1f} MB start to end, slope "
            f"{slopes[pid]:+.2f} MB per minute"
            for pid in pids
            if pid in growth and slopes[pid] is not None
        ),
    ]


def audit_lines(report: Report) -> list[str]:
    audit = report.audit
    if audit is None:
        return []
    shortfall = "" if audit.events >= audit.asked else f" (of {audit.asked} asked: time ran out)"
    stats = "ANALYZE after the load" if audit.analyzed else "no ANALYZE, as installed"
    rows = [
        [
            page.name,
            ms(page.first_s),
            page.first_statements if page.first_statements is not None else "-",
            page.first_rows,
            ms(page.deep_s),
            page.deep_statements if page.deep_statements is not None else "-",
            page.deep_rows,
        ]
        for page in audit.pages
    ]
    return [
        "",
        f"8. Audit page (GET /admin/audit, in-process, signed-in Administrator): "
        f"{audit.events} events{shortfall}",
        f"  seeded in bulk over a year in {audit.seed_s:.1f} s ({stats}); median of "
        f"{AUDIT_PAGE_TIMED} requests each; a deep page starts half-way through the filter's span",
        *table(
            ["filter", "first ms", "SQL", "rows", "deep ms", "SQL", "rows"],
            rows,
        ),
        "  SQL counts every statement of the request: the session, the filter's person, the",
        "  page, and whether a newer page exists.",
        *([f"  stopped early: {audit.error}"] if audit.error else []),
    ]


def server_log_lines(report: Report) -> list[str]:
    if not report.server_log_tail.strip():
        return []
    lines = ["", "gunicorn's log (warnings and errors, last lines)"]
    return lines + [f"  {line}" for line in report.server_log_tail.splitlines()]


def summary_lines(figures: Perf2) -> list[str]:
    def row(
        name: str, value: Any, show: Callable[[Any], str], met: Callable[[Any], bool]
    ) -> list[str]:
        if value is None:
            return [name, "not measured", "MISS"]
        return [name, show(value), "PASS" if met(value) else "MISS"]

    rows = [
        row(
            f"SQL statements of POST /mfa/challenge <= {CODE_POST_STATEMENTS_MAX}",
            figures.code_post_statements,
            str,
            lambda v: v <= CODE_POST_STATEMENTS_MAX,
        ),
        row(
            f"whole sign-in minus password hash <= {SIGN_IN_WITHOUT_HASH_MAX_S * 1000:.0f} ms "
            "server CPU",
            figures.sign_in_minus_hash_s,
            lambda v: f"{ms(v)} ms",
            lambda v: v <= SIGN_IN_WITHOUT_HASH_MAX_S,
        ),
        row(
            f"code step <= {CODE_STEP_SERVER_MAX_S * 1000:.0f} ms server CPU",
            figures.code_server_s,
            lambda v: f"{ms(v)} ms",
            lambda v: v <= CODE_STEP_SERVER_MAX_S,
        ),
        row(
            f"worker RSS flat under load: grows <= {WORKER_RSS_GROWTH_MAX_MB:.0f} MB from "
            "warm-up to after load (largest)",
            figures.largest_worker_growth_mb,
            lambda v: f"{v:+.1f} MB",
            lambda v: v <= WORKER_RSS_GROWTH_MAX_MB,
        ),
        *(
            [
                row(
                    f"worker RSS flat over a {figures.soak_s:.0f} s soak: grows <= "
                    f"{WORKER_RSS_GROWTH_MAX_MB:.0f} MB (largest)",
                    figures.soak_growth_mb,
                    lambda v: f"{v:+.1f} MB",
                    lambda v: v <= WORKER_RSS_GROWTH_MAX_MB,
                )
            ]
            if figures.soak_s
            else []
        ),
        row(
            f"users page over {USERS_PAGE_PEOPLE:,} people < {USERS_PAGE_MAX_S * 1000:.0f} ms "
            "(slowest view, median)",
            figures.users_page_s if figures.users_page_people >= USERS_PAGE_PEOPLE else None,
            lambda v: f"{ms(v)} ms",
            lambda v: v < USERS_PAGE_MAX_S,
        ),
        row(
            "users page SQL statements the same at 25 and 200 a page",
            figures.users_page_same_statements,
            lambda v: "same" if v else "different",
            bool,
        ),
    ]
    if figures.audit_events:
        rows.append(
            row(
                f"audit page, {figures.audit_events} events, every filter and depth "
                f"< {AUDIT_PAGE_MAX_S * 1000:.0f} ms",
                figures.audit_page_s,
                lambda v: f"{ms(v)} ms (slowest)",
                lambda v: v < AUDIT_PAGE_MAX_S,
            )
        )
    return ["", "PERF-2 summary", *table(["target", "measured", "result"], rows)]


def print_report(report: Report) -> None:
    figures = perf2_figures(report)
    lines = [
        *header_lines(report),
        *full_lines(report),
        *code_step_lines(report),
        *floor_lines(report, figures),
        *server_cpu_lines(report),
        *in_process_lines(report),
        *memory_lines(report),
        *soak_lines(report),
        *users_page_lines(report),
        *audit_lines(report),
        *server_log_lines(report),
        *summary_lines(figures),
        "",
        f"Fresh users had to be waited for {report.pool_waits} times; the run took "
        f"{report.elapsed_s:.1f} s.",
    ]
    print("\n".join(lines), flush=True)
