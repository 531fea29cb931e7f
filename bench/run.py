"""`make bench`: real sign-ins through gunicorn, then the same flow in-process (PERF-2).

In order, inside a two-minute budget:

1. Make a throw-away database (a temporary SQLite file, or a fresh database on the PostgreSQL
   server named by DATABASE_URL), migrate it, and seed users that each have a TOTP factor.
2. Start gunicorn on a free loopback port and drive it the way browsers would: full sign-ins
   for a fixed time; then the code step on its own (pending sign-ins prepared first, their
   codes posted together, then one at a time); then GET /healthz as the floor.
3. Read each worker's memory, stop gunicorn, and replay sign-ins in-process with a statement
   counter on the engine: SQL statements per request and server time per step.
4. Print the figures and the PERF-2 targets. A missed target is reported, not an exit status.

Everything the bench starts or writes (gunicorn, temporary files, the PostgreSQL database) is
removed on the way out, also after Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import hashlib
import http.client
import importlib.metadata
import math
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import pyotp
import sqlalchemy as sa
from cryptography.fernet import Fernet

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
USER_AGENT = "clinic-mfa-bench/1"
ROLE = "Practitioner"
TOTP_PERIOD = 30

# The whole run, cleanup included, must end within two minutes; this leaves a margin.
TOTAL_BUDGET_S = 110.0
# Upper bounds of the phases after the full sign-ins. Each phase stops early enough to leave
# the later ones their share, so a long --duration shrinks nothing but itself.
LATER_PHASES_S = {
    "prepare": 15.0,
    "codes": 10.0,
    "serial prepare": 8.0,
    "serial codes": 8.0,
    "floor": 6.0,
    "in-process": 10.0,
    "teardown": 6.0,
}
REQUEST_TIMEOUT_S = 15.0  # one HTTP request; a client thread is given this long to notice a stop
SERVER_START_S = 15.0
GRACEFUL_TIMEOUT_S = 3  # gunicorn's wait for busy workers on SIGTERM
STOP_WAIT_S = GRACEFUL_TIMEOUT_S + 3.0  # then the master is killed
MIGRATE_TIMEOUT_S = 30
WARMUP_S = 1.0  # full sign-ins before phase 1, so template compiling is not measured
IN_PROCESS_WARMUP = 3  # in-process sign-ins not timed (first requests fill SQLAlchemy caches)
MAX_ERRORS = 25  # past this many failed requests in a phase it stops: the figures mean nothing
MAX_USERS = 20_000

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
SIGN_IN_PAGE = "GET /sign-in"
PASSWORD_POST = "POST /sign-in"
CHALLENGE_PAGE = "GET /mfa/challenge"
CODE_POST = "POST /mfa/challenge"
HOME = "GET /"
HEALTHZ = "GET /healthz"
STEPS = (SIGN_IN_PAGE, PASSWORD_POST, CHALLENGE_PAGE, CODE_POST, HOME)
WHOLE = "whole sign-in"

# PERF-2 targets.
CODE_VS_FLOOR_MIN = 0.60
CODE_POST_STATEMENTS_MAX = 4
SIGN_IN_WITHOUT_HASH_MAX_S = 0.010
CODE_STEP_SERVER_MAX_S = 0.005
WORKER_RSS_MAX_MB = 60.0

PR_SET_PDEATHSIG = 1
# What the bench names its temporary directories and PostgreSQL databases: with the pid in
# the name, a later run can tell one left behind by a killed run from one still in use.
TMP_PREFIX = "clinic-mfa-bench-"
DB_PREFIX = "clinic_mfa_bench_"
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def log(message: str) -> None:
    """Progress goes to stderr so stdout holds only the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- time, budget and statistics ------------------------------------------------------------


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


def totp_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // TOTP_PERIOD)


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


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


# --- users and the TOTP step rule ----------------------------------------------------------


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

    def take(self, stop_at: float) -> BenchUser | None:
        """A fresh user, or None when none turns up before ``stop_at`` (monotonic)."""
        with self._changed:
            waited = False
            while True:
                now = time.time()
                if self._queue and self._queue[0][1] < totp_step(now):
                    return self._queue.popleft()[0]
                left = stop_at - time.monotonic()
                if left <= 0:
                    return None
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


# --- the database, the environment and seeding ---------------------------------------------


@dataclass(frozen=True)
class Database:
    url: str
    label: str


@contextlib.contextmanager
def bench_database(tmp: Path) -> Iterator[Database]:
    """A database that exists only for this run; an existing one is never written to."""
    sqlite_path = tmp / "bench.sqlite3"
    temporary = Database(f"sqlite:///{sqlite_path}", f"SQLite, temporary file {sqlite_path}")
    given = os.environ.get("DATABASE_URL", "").strip()
    if not given:
        yield temporary
        return
    url = sa.make_url(given)
    backend = url.get_backend_name()
    if backend == "sqlite":
        log("DATABASE_URL names SQLite: using a temporary file instead, never the one named")
        yield temporary
    elif backend == "postgresql":
        with postgres_database(url) as database:
            yield database
    else:
        raise SystemExit(f"bench: DATABASE_URL must be SQLite or PostgreSQL, not {backend}")


@contextlib.contextmanager
def postgres_database(admin_url: sa.URL) -> Iterator[Database]:
    """CREATE a dedicated database beside the one named (as tests/conftest.py does) and DROP
    it afterwards, so tables that already exist there are never touched."""
    name = f"{DB_PREFIX}{HOST_TAG}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with admin.connect() as conn:
            sweep_stale_databases(conn)
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            url = admin_url.set(database=name)
            where = f"{url.host or 'local socket'}:{url.port or 5432}"
            yield Database(
                url.render_as_string(hide_password=False),
                f"PostgreSQL {where}, database {name} (created for this run, dropped after)",
            )
        finally:
            with admin.connect() as conn:
                drop_database(conn, name)
            log(f"dropped database {name}")
    finally:
        admin.dispose()


def drop_database(conn: sa.Connection, name: str) -> None:
    # FORCE ends connections a killed worker may have left behind.
    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def sweep_stale_databases(conn: sa.Connection) -> None:
    """Drop the databases of earlier runs on this machine that were killed outright (SIGKILL
    leaves no chance to clean up): their names carry this host's tag and a pid now gone."""
    prefix = f"{DB_PREFIX}{HOST_TAG}_"
    names = conn.execute(
        sa.text("SELECT datname FROM pg_database WHERE starts_with(datname, :prefix)"),
        {"prefix": prefix},
    ).scalars()
    for name in list(names):
        if _owner_gone(name.removeprefix(prefix)):
            drop_database(conn, name)
            log(f"dropped database {name}, left by a bench run that was killed")


def sweep_stale_tmp() -> None:
    """The same for temporary directories: ``clinic-mfa-bench-<pid>-...`` of a pid now gone."""
    for path in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*"):
        if path.is_dir() and _owner_gone(path.name.removeprefix(TMP_PREFIX)):
            shutil.rmtree(path, ignore_errors=True)
            log(f"removed {path}, left by a bench run that was killed")


def _owner_gone(rest: str) -> bool:
    """True if ``rest`` starts with the pid of a process that no longer exists."""
    pid = rest.replace("-", "_").split("_", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def app_environment(database_url: str, tmp: Path) -> dict[str, str]:
    """What gunicorn, `flask db upgrade` and the in-process app all read: production mode with
    fixed keys made for this run, plain-http cookies (so the cookie is named "session")."""
    return {
        "MFA_ENV": "production",
        "SECRET_KEY": secrets.token_hex(32),
        "DATABASE_URL": database_url,
        "MFA_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "MFA_HASH_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        # Sign-ins by TOTP send no mail; should any go out, loopback's console is the place.
        "MFA_MAIL_TRANSPORT": "console",
        "MFA_ALLOW_CONSOLE_DELIVERY_IN_PRODUCTION": "1",
        "MFA_SECURE_COOKIES": "0",
        # Required in production; the port does not matter to the trusted-host check.
        "MFA_BASE_URL": f"http://{HOST}",
        # The keys come from the environment; should anything still look for a key file, it
        # finds this one rather than instance/'s.
        "MFA_KEYS_FILE": str(tmp / "mfa_keys.json"),
    }


@contextlib.contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def migrate() -> float:
    """`flask --app app db upgrade` as the IT person would run it; returns the seconds taken."""
    flask = Path(sys.executable).with_name("flask")  # the venv's, not the resolved python's
    command = [str(flask)] if flask.exists() else [sys.executable, "-m", "flask"]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "--app", "app", "db", "upgrade"],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=MIGRATE_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"flask db upgrade failed:\n{done.stdout}{done.stderr}")
    return time.perf_counter() - started


def seed(count: int, password_hash: str) -> tuple[list[BenchUser], float]:
    """``count`` Practitioners sharing one password hash (argon2 would take minutes per
    thousand), each with a known TOTP secret; MFA policy required. Bulk inserts throughout."""
    from app import create_app
    from models import MfaFactor, Role, User, db
    from services import crypto, policy

    started = time.perf_counter()
    users = [
        BenchUser(f"bench-{i:05d}@clinic.example", pyotp.random_base32(32)) for i in range(count)
    ]
    app = create_app()
    with app.app_context():
        try:
            policy.update(mode="required")
            role_id = db.session.scalar(sa.select(Role.id).where(Role.name == ROLE))
            if role_id is None:
                raise RuntimeError(f"role {ROLE!r} missing: did the migration seed the roles?")
            db.session.execute(
                sa.insert(User),
                [
                    {
                        "email": user.email,
                        "full_name": f"Bench user {i}",
                        "password_hash": password_hash,
                        "role_id": role_id,
                    }
                    for i, user in enumerate(users)
                ],
            )
            ids = {email: id_ for email, id_ in db.session.execute(sa.select(User.email, User.id))}
            db.session.execute(
                sa.insert(MfaFactor),
                [
                    {
                        "user_id": ids[user.email],
                        "kind": "totp",
                        "is_default": True,
                        "secret_encrypted": crypto.encrypt(user.secret),
                    }
                    for user in users
                ],
            )
            db.session.commit()
        finally:
            db.session.remove()
            db.engine.dispose()
    return users, time.perf_counter() - started


# --- gunicorn ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    port: int
    process: subprocess.Popen[bytes]
    workers: int
    threads: int
    worker_class: str
    version: str

    def describe(self) -> str:
        return (
            f"gunicorn {self.version} on {HOST}:{self.port}: {self.workers} {self.worker_class} "
            f"workers x {self.threads} thread(s), 'app:create_app()', master pid "
            f"{self.process.pid}"
        )


def free_port() -> int:
    """A port the kernel just handed out; gunicorn binds it a moment later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _libc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A pre-exec hook: if the bench itself is killed outright (SIGKILL, no cleanup), the
    kernel sends gunicorn SIGTERM rather than leaving it serving. libc is loaded here, in the
    parent, so the child only makes one system call between fork and exec."""
    libc = _libc()
    if libc is None:
        return None

    def hook() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


def worker_pids(master: int) -> list[int]:
    """The master's child processes, from /proc (every task's children list)."""
    pids: set[int] = set()
    for children in Path(f"/proc/{master}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids.update(int(pid) for pid in children.read_text().split())
    return sorted(pids)


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, and from smaps_rollup its Pss (shared pages
    split among the processes sharing them) and USS (pages only it holds), in MB (MiB)."""
    found: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    with contextlib.suppress(OSError):
        private = 0
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "Pss":
                found["Pss"] = int(value.split()[0]) / 1024
            elif key in ("Private_Clean", "Private_Dirty"):
                private += int(value.split()[0])
        found["USS"] = private / 1024
    return found


def gunicorn_memory(server: Server) -> dict[int, dict[str, float]]:
    """Memory of the master and each worker, by pid."""
    pids = [server.process.pid, *worker_pids(server.process.pid)]
    return {pid: memory_mb(pid) for pid in pids}


def _is_gunicorn(pid: int) -> bool:
    try:
        return b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def wait_until_healthy(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{_tail(log_path)}")
        conn = http.client.HTTPConnection(HOST, port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not answer /healthz in {SERVER_START_S:.0f} s")


def stop_gunicorn(process: subprocess.Popen[bytes]) -> None:
    """TERM (graceful, bounded by --graceful-timeout), then KILL; then any worker that
    outlived its master, checked to still be a gunicorn process before it is signalled."""
    workers = worker_pids(process.pid)
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    for pid in workers:
        if _is_gunicorn(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def gunicorn(workers: int, threads: int, log_path: Path) -> Iterator[Server]:
    port = free_port()
    worker_class = "sync" if threads == 1 else "gthread"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        worker_class,
        "--graceful-timeout",
        str(GRACEFUL_TIMEOUT_S),
        "--log-level",
        "warning",
        "--access-logfile",
        "/dev/null",
        # The production settings (preload, malloc tuning); the flags above override the rest.
        "--config",
        str(ROOT / "gunicorn.conf.py"),
    ]
    with open(log_path, "wb") as server_log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=os.environ.copy(),
            stdin=subprocess.DEVNULL,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            # Called between fork and exec; no client threads exist yet.
            preexec_fn=_die_with_parent_hook(),
        )
        try:
            wait_until_healthy(port, process, log_path)
            version = importlib.metadata.version("gunicorn")
            yield Server(port, process, workers, threads, worker_class, version)
        finally:
            stop_gunicorn(process)
            log("gunicorn stopped")


# --- the HTTP client: one virtual browser per thread ----------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    location: str
    body: str


class Browser:
    """One virtual browser: its own cookies and one HTTP connection, reopened whenever the
    server closes it (gunicorn's sync workers close after every response)."""

    def __init__(self, port: int) -> None:
        self._conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
        self.cookies: dict[str, str] = {}

    def close(self) -> None:
        self._conn.close()

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[Reply, float]:
        """The reply and the seconds from sending to having read the whole body."""
        headers = {"User-Agent": USER_AGENT}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        started = time.perf_counter()
        response, data = self._exchange(method, path, body, headers)
        seconds = time.perf_counter() - started
        self._store_cookies(response.msg.get_all("Set-Cookie") or [])
        reply = Reply(response.status, response.getheader("Location") or "", data.decode())
        return reply, seconds

    def _exchange(
        self, method: str, path: str, body: str | None, headers: dict[str, str]
    ) -> tuple[http.client.HTTPResponse, bytes]:
        reused = self._conn.sock is not None
        try:
            return self._send(method, path, body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self._conn.close()
            if not reused:
                raise
        # The server dropped an idle kept-alive connection; browsers send once more, so do we.
        try:
            return self._send(method, path, body, headers)
        except (OSError, http.client.HTTPException):
            self._conn.close()
            raise

    def _send(
        self, method: str, path: str, body: str | None, headers: dict[str, str]
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """One request and its whole body. After a "Connection: close" answer http.client has
        already let go of the socket, and the next request opens a new one by itself."""
        try:
            self._conn.request(method, path, body=body, headers=headers)
            response = self._conn.getresponse()
            return response, response.read()
        except (OSError, http.client.HTTPException):
            self._conn.close()
            raise

    def _store_cookies(self, set_cookies: list[str]) -> None:
        for header in set_cookies:
            pair, _, attributes = header.partition(";")
            name, _, value = pair.strip().partition("=")
            deleted = "max-age=0" in attributes.lower().replace(" ", "")
            if deleted or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value


class StepFailed(Exception):
    """A request that did not answer as a browser's sign-in expects."""

    def __init__(self, step: str, what: str) -> None:
        super().__init__(f"{step}: {what}")
        self.step = step


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


def call(
    browser: Browser,
    samples: Samples,
    step: str,
    path: str,
    form: dict[str, str] | None = None,
    *,
    status: int = 200,
    to: str | None = None,
) -> Reply:
    """One request of a sign-in: GET without a form, POST with one; checked, then timed."""
    try:
        reply, seconds = browser.request("GET" if form is None else "POST", path, form)
    except (OSError, http.client.HTTPException) as exc:
        raise StepFailed(step, type(exc).__name__) from exc
    if reply.status != status:
        raise StepFailed(step, f"HTTP {reply.status}")
    if to is not None and urlsplit(reply.location).path != to:
        raise StepFailed(step, f"redirect to {reply.location or '(none)'}")
    samples.add(step, seconds)
    return reply


def csrf_in(page: str, step: str) -> str:
    """The page's CSRF token: every step clears the session, so each page has a new one."""
    match = CSRF_META.search(page)
    if match is None:
        raise StepFailed(step, "no csrf-token meta tag")
    return match.group(1)


def begin_sign_in(browser: Browser, user: BenchUser, password: str, samples: Samples) -> str:
    """A new browser's sign-in page, password, challenge page; the challenge's CSRF token."""
    browser.cookies.clear()
    page = call(browser, samples, SIGN_IN_PAGE, "/sign-in")
    form = {
        "csrf_token": csrf_in(page.body, SIGN_IN_PAGE),
        "email": user.email,
        "password": password,
    }
    call(browser, samples, PASSWORD_POST, "/sign-in", form, status=303, to="/mfa/challenge")
    challenge = call(browser, samples, CHALLENGE_PAGE, "/mfa/challenge")
    return csrf_in(challenge.body, CHALLENGE_PAGE)


def post_code(browser: Browser, user: BenchUser, csrf: str, samples: Samples) -> int:
    """Post the authenticator's current code; returns the TOTP step the code belongs to."""
    now = time.time()
    form = {"csrf_token": csrf, "code": pyotp.TOTP(user.secret).at(now)}
    call(browser, samples, CODE_POST, "/mfa/challenge", form, status=303, to="/")
    return totp_step(now)


# --- running client threads ----------------------------------------------------------------


def run_clients(
    count: int, body: Callable[[int], None], stop_at: float, halt: threading.Event
) -> float:
    """Run ``body(i)`` on ``count`` threads; returns the wall time until the last finished.

    Every body stops by itself at ``stop_at`` or on ``halt``; a thread still running
    a request timeout later is a bug, reported rather than waited for.
    """
    failures: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            body(index)
        except BaseException as exc:
            failures.append(exc)
            halt.set()

    threads = [
        threading.Thread(target=guarded, args=(i,), name=f"client-{i}", daemon=True)
        for i in range(count)
    ]
    started = time.perf_counter()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.1, stop_at + REQUEST_TIMEOUT_S + 5 - time.monotonic()))
    except BaseException:
        halt.set()  # Ctrl-C: tell the clients to stop before the server goes away
        raise
    wall = time.perf_counter() - started
    if any(thread.is_alive() for thread in threads):
        halt.set()
        raise RuntimeError("a client thread did not stop in time")
    if failures:
        raise failures[0]
    return wall


@dataclass
class Tally:
    """What one client thread did."""

    samples: Samples = field(default_factory=Samples)
    done: int = 0


@dataclass
class LoadResult:
    samples: Samples
    done: int
    wall_s: float
    errors: Errors

    @property
    def per_s(self) -> float:
        return rate(self.done, self.wall_s)


def full_sign_ins(
    port: int, pool: UserPool, password: str, concurrency: int, stop_at: float
) -> LoadResult:
    """Each client signs fresh users in, all five requests, until ``stop_at``."""
    errors = Errors()
    tallies = [Tally() for _ in range(concurrency)]

    def client(index: int) -> None:
        tally = tallies[index]
        browser = Browser(port)
        try:
            while time.monotonic() < stop_at and not errors.halt.is_set():
                user = pool.take(stop_at)
                if user is None:
                    return
                code_step = None
                started = time.perf_counter()
                try:
                    csrf = begin_sign_in(browser, user, password, tally.samples)
                    code_step = post_code(browser, user, csrf, tally.samples)
                    call(browser, tally.samples, HOME, "/")
                    tally.samples.add(WHOLE, time.perf_counter() - started)
                    tally.done += 1
                except StepFailed as failure:
                    errors.record(failure)
                finally:
                    pool.give_back(user, code_step)
        finally:
            browser.close()

    wall = run_clients(concurrency, client, stop_at, errors.halt)
    samples = Samples.merged(t.samples for t in tallies)
    return LoadResult(samples, sum(t.done for t in tallies), wall, errors)


@dataclass
class Pending:
    """A sign-in waiting for its code: the browser (cookies) and the challenge's token."""

    browser: Browser
    user: BenchUser
    csrf: str


def prepare_pending(
    port: int, pool: UserPool, password: str, count: int, concurrency: int, stop_at: float
) -> tuple[list[Pending], Errors]:
    """Up to ``count`` sign-ins taken as far as the challenge page, then left waiting."""
    errors = Errors()
    ready: list[Pending] = []
    lock = threading.Lock()
    slots = [count]

    def claim() -> bool:
        with lock:
            slots[0] -= 1
            return slots[0] >= 0

    def client(_index: int) -> None:
        while time.monotonic() < stop_at and not errors.halt.is_set() and claim():
            user = pool.take(stop_at)
            if user is None:
                return
            browser = Browser(port)
            try:
                csrf = begin_sign_in(browser, user, password, Samples())
            except StepFailed as failure:
                errors.record(failure)
                pool.give_back(user, None)
                continue
            finally:
                # The code arrives later on a new connection, as it would after typing it.
                browser.close()
            with lock:
                ready.append(Pending(browser, user, csrf))

    run_clients(concurrency, client, stop_at, errors.halt)
    return ready, errors


def post_codes(
    pending: list[Pending], pool: UserPool, concurrency: int, stop_at: float
) -> LoadResult:
    """Every prepared sign-in's code, ``concurrency`` at a time, as fast as answers come."""
    errors = Errors()
    queue = deque(pending)
    tallies = [Tally() for _ in range(concurrency)]

    def client(index: int) -> None:
        tally = tallies[index]
        while time.monotonic() < stop_at and not errors.halt.is_set():
            try:
                item = queue.popleft()
            except IndexError:
                return
            code_step = None
            try:
                code_step = post_code(item.browser, item.user, item.csrf, tally.samples)
                tally.done += 1
            except StepFailed as failure:
                errors.record(failure)
            finally:
                item.browser.close()
                pool.give_back(item.user, code_step)

    try:
        wall = run_clients(concurrency, client, stop_at, errors.halt)
    finally:
        while queue:  # stopped early: the unused sign-ins' users go back unspent
            pool.give_back(queue.popleft().user, None)
    samples = Samples.merged(t.samples for t in tallies)
    return LoadResult(samples, sum(t.done for t in tallies), wall, errors)


def floor_load(port: int, concurrency: int, stop_at: float) -> LoadResult:
    """GET /healthz in a loop: the cheapest request that still reads the database."""
    errors = Errors()
    tallies = [Tally() for _ in range(concurrency)]

    def client(index: int) -> None:
        tally = tallies[index]
        browser = Browser(port)
        try:
            while time.monotonic() < stop_at and not errors.halt.is_set():
                try:
                    call(browser, tally.samples, HEALTHZ, "/healthz")
                    tally.done += 1
                except StepFailed as failure:
                    errors.record(failure)
        finally:
            browser.close()

    wall = run_clients(concurrency, client, stop_at, errors.halt)
    samples = Samples.merged(t.samples for t in tallies)
    return LoadResult(samples, sum(t.done for t in tallies), wall, errors)


# --- in-process: SQL statements and server time per request ---------------------------------


StepTimings = dict[str, tuple[float, int]]  # step -> (seconds, SQL statements)


@dataclass
class InProcessResult:
    statements: dict[str, list[int]]
    seconds: Samples
    argon2_s: list[float]
    sign_ins: int
    errors: Errors

    def add(self, timings: StepTimings, *, timed: bool) -> None:
        for step, (_, statements) in timings.items():
            self.statements[step].append(statements)
        if not timed:
            return
        for step, (seconds, _) in timings.items():
            self.seconds.add(step, seconds)
        self.seconds.add(WHOLE, sum(seconds for seconds, _ in timings.values()))
        self.sign_ins += 1


class StatementCounter:
    """A ``before_cursor_execute`` listener: every statement sent to the database counts."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *_args: object) -> None:
        self.count += 1


def in_process_request(
    client: FlaskClient,
    counter: StatementCounter,
    timings: StepTimings,
    step: str,
    path: str,
    form: dict[str, str] | None = None,
    *,
    status: int = 200,
    to: str | None = None,
) -> str:
    """One in-process request, checked like ``call``; its time and statements go in timings."""
    counter.count = 0
    started = time.perf_counter()
    response = client.open(path, method="GET" if form is None else "POST", data=form)
    seconds = time.perf_counter() - started
    location = response.headers.get("Location", "")
    if response.status_code != status:
        raise StepFailed(step, f"HTTP {response.status_code} (in-process)")
    if to is not None and urlsplit(location).path != to:
        raise StepFailed(step, f"redirect to {location or '(none)'} (in-process)")
    timings[step] = (seconds, counter.count)
    return response.get_data(as_text=True)


def in_process_sign_in(
    app: Flask, counter: StatementCounter, user: BenchUser, password: str
) -> tuple[StepTimings, int]:
    """The five requests of a sign-in from a new browser; returns them and the code's step."""
    client = app.test_client()
    timings: StepTimings = {}
    page = in_process_request(client, counter, timings, SIGN_IN_PAGE, "/sign-in")
    form = {"csrf_token": csrf_in(page, SIGN_IN_PAGE), "email": user.email, "password": password}
    in_process_request(
        client, counter, timings, PASSWORD_POST, "/sign-in", form, status=303, to="/mfa/challenge"
    )
    page = in_process_request(client, counter, timings, CHALLENGE_PAGE, "/mfa/challenge")
    now = time.time()
    form = {"csrf_token": csrf_in(page, CHALLENGE_PAGE), "code": pyotp.TOTP(user.secret).at(now)}
    in_process_request(
        client, counter, timings, CODE_POST, "/mfa/challenge", form, status=303, to="/"
    )
    in_process_request(client, counter, timings, HOME, "/")
    return timings, totp_step(now)


def in_process(
    pool: UserPool, password: str, password_hash: str, count: int, stop_at: float
) -> InProcessResult:
    """Sign-ins through ``app.test_client()`` against the same database: no HTTP, no
    gunicorn. Counts each request's SQL statements and times it; the first few sign-ins are
    not timed (SQLAlchemy's and Jinja's caches fill on first use).

    After each timed sign-in the password hash is verified once on its own, so "sign-in minus
    hash" subtracts an argon2 time taken under the same conditions (CPU clock, other load).
    """
    from app import create_app
    from models import db
    from services.passwords import verify_password

    # Sign-ins here run one after another: a few failures in a row already say it all, and
    # the app logs a traceback for each.
    result = InProcessResult({s: [] for s in STEPS}, Samples(), [], 0, Errors(limit=5))
    app = create_app()
    with app.app_context():
        engine = db.engine
    # No app context is held while the requests run, so each request pushes its own as under
    # gunicorn; a held one would be shared, and `g` (the request's session row, its CSRF
    # token) would leak from one request into the next.
    counter = StatementCounter()
    sa.event.listen(engine, "before_cursor_execute", counter)
    try:
        for i in range(IN_PROCESS_WARMUP + count):
            if time.monotonic() >= stop_at or result.errors.halt.is_set():
                break
            user = pool.take(stop_at)
            if user is None:
                break
            code_step = None
            try:
                timings, code_step = in_process_sign_in(app, counter, user, password)
            except StepFailed as failure:
                result.errors.record(failure)
                continue
            finally:
                pool.give_back(user, code_step)
            timed = i >= IN_PROCESS_WARMUP
            result.add(timings, timed=timed)
            if timed:
                result.argon2_s.append(_timed(lambda: verify_password(password_hash, password)))
    finally:
        sa.event.remove(engine, "before_cursor_execute", counter)
        with app.app_context():
            db.session.remove()
        engine.dispose()
    return result


# --- the run -------------------------------------------------------------------------------


@dataclass
class Report:
    database: str = ""
    server: str = ""
    concurrency: int = 0
    users: int = 0
    setup_notes: list[str] = field(default_factory=list)
    full: LoadResult | None = None
    codes: LoadResult | None = None
    codes_prepared: int = 0
    codes_prepare_errors: Errors | None = None
    serial_prepare_errors: Errors | None = None
    serial: LoadResult | None = None
    serial_prepared: int = 0
    floor: LoadResult | None = None
    master_pid: int = 0
    memory_start: dict[int, dict[str, float]] = field(default_factory=dict)
    memory_after: dict[int, dict[str, float]] = field(default_factory=dict)
    inproc: InProcessResult | None = None
    server_log_tail: str = ""
    load_average: str = ""
    pool_waits: int = 0
    elapsed_s: float = 0.0


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
    }
    for name, (low, high) in limits.items():
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name.replace('_', '-')} must be between {low} and {high}")
    return args


def run(args: argparse.Namespace, budget: Budget) -> Report:
    report = Report(concurrency=args.concurrency)
    note_machine_state(report)
    sweep_stale_tmp()
    with contextlib.ExitStack() as stack:
        tmp = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
        )
        database = stack.enter_context(bench_database(tmp))
        report.database = database.label
        stack.enter_context(patched_environ(app_environment(database.url, tmp)))
        pool, password, password_hash = set_up_users(args, report)

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
            try:
                measure_through_gunicorn(args, budget, server, pool, password, report)
            finally:
                # Errors and warnings only (--log-level warning); the file goes with tmp.
                report.server_log_tail = _tail(server_log)

        log(f"in-process: {args.in_process} sign-ins with a statement counter")
        report.inproc = in_process(
            pool, password, password_hash, args.in_process, phase_end(budget, "in-process")
        )
        report.pool_waits = pool.waits
    report.elapsed_s = budget.elapsed()
    return report


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


def set_up_users(args: argparse.Namespace, report: Report) -> tuple[UserPool, str, str]:
    """Migrate, then seed enough users for the rate argon2 allows; returns the pool, the
    password every user shares, and its hash."""
    from services.passwords import hash_password, verify_password

    log(f"database: {report.database}; migrating")
    migrate_s = migrate()
    password = secrets.token_urlsafe(18)
    password_hash = hash_password(password)
    verify_s = min(_timed(lambda: verify_password(password_hash, password)) for _ in range(3))
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
    report.setup_notes += [
        f"migrated in {migrate_s:.1f} s, seeded in {seed_s:.1f} s; argon2id verify takes "
        f"{verify_s * 1000:.0f} ms here,",
        f"so {args.workers} workers sign in at most {args.workers / verify_s:.0f} people/s: "
        f"{enough}",
    ]
    return UserPool(users), password, password_hash


def measure_through_gunicorn(
    args: argparse.Namespace,
    budget: Budget,
    server: Server,
    pool: UserPool,
    password: str,
    report: Report,
) -> None:
    """Phases 1 to 3, then the workers' memory after the load."""
    port, concurrency = server.port, args.concurrency
    log(f"1. full sign-ins at concurrency {concurrency} for {args.duration:.0f} s")
    report.full = full_sign_ins(
        port, pool, password, concurrency, budget.stop_at(args.duration, keep_after(None))
    )

    log(f"2. preparing {args.pending} pending sign-ins")
    pending, report.codes_prepare_errors = prepare_pending(
        port, pool, password, args.pending, concurrency, phase_end(budget, "prepare")
    )
    report.codes_prepared = len(pending)
    log(f"   posting {len(pending)} codes at concurrency {concurrency}")
    report.codes = post_codes(pending, pool, concurrency, phase_end(budget, "codes"))

    log(f"   preparing {args.serial} more, then posting their codes one at a time")
    pending, report.serial_prepare_errors = prepare_pending(
        port, pool, password, args.serial, concurrency, phase_end(budget, "serial prepare")
    )
    report.serial_prepared = len(pending)
    report.serial = post_codes(pending, pool, 1, phase_end(budget, "serial codes"))

    log(f"3. floor: GET /healthz at concurrency {concurrency} for {args.floor_seconds:.0f} s")
    report.floor = floor_load(
        port, concurrency, budget.stop_at(args.floor_seconds, keep_after("floor"))
    )

    report.memory_after = gunicorn_memory(server)


def phase_end(budget: Budget, phase: str) -> float:
    """When ``phase`` must stop: its own bound, or earlier if the run is behind."""
    return budget.stop_at(LATER_PHASES_S[phase], keep_after(phase))


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


# --- the report ----------------------------------------------------------------------------


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


LATENCY_HEADERS = ("n", "p50 ms", "p95 ms", "p99 ms")


def latency_cells(values: Sequence[float]) -> list[object]:
    return [len(values), *(ms(percentile(values, q)) for q in (0.50, 0.95, 0.99))]


def errors_lines(errors: Errors | None, label: str = "errors") -> list[str]:
    if errors is None or not errors.total:
        return [f"  {label}: none"]
    stopped = " (phase stopped early)" if errors.halt.is_set() else ""
    lines = [f"  {label}: {errors.total}{stopped}"]
    lines += [f"    {count} x {cause}" for cause, count in errors.counts.most_common()]
    return lines


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
    sign_in_minus_hash_s: float | None
    code_server_s: float | None
    largest_worker_rss_mb: float | None


def perf2_figures(report: Report) -> Perf2:
    codes, floor, inproc = report.codes, report.floor, report.inproc
    ratio = None
    if codes is not None and floor is not None and floor.per_s > 0:
        ratio = codes.per_s / floor.per_s
    statements = minus_hash = code_server = None
    if inproc is not None:
        code_statements = inproc.statements.get(CODE_POST, [])
        statements = max(code_statements) if code_statements else None
        whole, argon2 = median(inproc.seconds.of(WHOLE)), median(inproc.argon2_s)
        if whole is not None and argon2 is not None:
            minus_hash = whole - argon2
        code_server = median(inproc.seconds.of(CODE_POST))
    # Workers only: the master serves no requests (it holds the preloaded app to share it).
    rss = [
        m["VmRSS"]
        for pid, m in report.memory_after.items()
        if "VmRSS" in m and pid != report.master_pid
    ]
    return Perf2(ratio, statements, minus_hash, code_server, max(rss) if rss else None)


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
        *errors_lines(full.errors),
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
        f"2. The code step alone (POST /mfa/challenge): {report.codes_prepared} and "
        f"{report.serial_prepared} sign-ins prepared up to the challenge first",
        *table(["run", "req/s", *LATENCY_HEADERS], rows),
        *errors_lines(report.codes_prepare_errors, "errors while preparing"),
        *errors_lines(report.serial_prepare_errors, "errors while preparing the serial batch"),
        *errors_lines(codes.errors, f"errors at concurrency {report.concurrency}"),
        *(errors_lines(serial.errors, "errors at concurrency 1") if serial else []),
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
        *errors_lines(floor.errors),
    ]
    if codes is not None and figures.code_vs_floor is not None:
        lines.append(
            f"  code step / floor = {codes.per_s:.1f} / {floor.per_s:.1f} req/s "
            f"= {figures.code_vs_floor:.0%}"
        )
    return lines


def in_process_lines(report: Report, figures: Perf2) -> list[str]:
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
        f"4. In-process (app.test_client(), no HTTP, same database): {inproc.sign_ins} "
        f"sign-ins timed after {IN_PROCESS_WARMUP} warm-up",
        *table(["step", "SQL statements", "median ms", "p95 ms"], rows),
        f"  argon2id verify alone: median {ms(median(inproc.argon2_s))} ms "
        f"(of {len(inproc.argon2_s)})",
        f"  whole sign-in minus password hash: {ms(figures.sign_in_minus_hash_s)} ms",
        f"  code step server time: {ms(figures.code_server_s)} ms",
        *errors_lines(inproc.errors),
    ]


def memory_lines(report: Report) -> list[str]:
    rows: list[list[object]] = []
    names = {report.master_pid: "master"}
    pids = [report.master_pid, *sorted(set(report.memory_start) | set(report.memory_after))]
    for pid in dict.fromkeys(pids):
        start = report.memory_start.get(pid, {})
        after = report.memory_after.get(pid, {})
        rows.append(
            [
                f"{names.get(pid, 'worker')} {pid}",
                _mb(start.get("VmRSS")),
                _mb(after.get("VmRSS")),
                _mb(after.get("VmHWM")),
                _mb(after.get("Pss")),
                _mb(after.get("USS")),
            ]
        )
    return [
        "",
        "5. Memory of gunicorn's processes (MB = MiB); the app is preloaded in the master, so",
        "   workers share most pages with it: PSS splits shared pages, USS is the worker's own",
        *table(
            ["process", "RSS at start", "RSS after load", "peak RSS", "PSS after", "USS after"],
            rows,
        ),
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
            f"code step req/s >= {CODE_VS_FLOOR_MIN:.0%} of the /healthz floor",
            figures.code_vs_floor,
            lambda v: f"{v:.0%}",
            lambda v: v >= CODE_VS_FLOOR_MIN,
        ),
        row(
            f"SQL statements of POST /mfa/challenge <= {CODE_POST_STATEMENTS_MAX}",
            figures.code_post_statements,
            str,
            lambda v: v <= CODE_POST_STATEMENTS_MAX,
        ),
        row(
            f"whole sign-in minus password hash <= {SIGN_IN_WITHOUT_HASH_MAX_S * 1000:.0f} ms",
            figures.sign_in_minus_hash_s,
            lambda v: f"{ms(v)} ms",
            lambda v: v <= SIGN_IN_WITHOUT_HASH_MAX_S,
        ),
        row(
            f"code step server time < {CODE_STEP_SERVER_MAX_S * 1000:.0f} ms",
            figures.code_server_s,
            lambda v: f"{ms(v)} ms",
            lambda v: v < CODE_STEP_SERVER_MAX_S,
        ),
        row(
            f"worker RSS < {WORKER_RSS_MAX_MB:.0f} MB (largest, after load)",
            figures.largest_worker_rss_mb,
            lambda v: f"{v:.1f} MB",
            lambda v: v < WORKER_RSS_MAX_MB,
        ),
    ]
    return ["", "PERF-2 summary", *table(["target", "measured", "result"], rows)]


def print_report(report: Report) -> None:
    figures = perf2_figures(report)
    lines = [
        *header_lines(report),
        *full_lines(report),
        *code_step_lines(report),
        *floor_lines(report, figures),
        *in_process_lines(report, figures),
        *memory_lines(report),
        *server_log_lines(report),
        *summary_lines(figures),
        "",
        f"Fresh users had to be waited for {report.pool_waits} times; the run took "
        f"{report.elapsed_s:.1f} s.",
    ]
    print("\n".join(lines), flush=True)


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    # Unwind like Ctrl-C does, so every `with` cleans up on the way out.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    budget = Budget(TOTAL_BUDGET_S)
    try:
        report = run(args, budget)
    except KeyboardInterrupt:
        log(f"interrupted after {budget.elapsed():.1f} s; server and temporary files removed")
        return 130
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
