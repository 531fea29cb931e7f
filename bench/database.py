"""A database that exists only for this run (a temporary SQLite file or a fresh PostgreSQL
database), the app's environment pointing at it, migration, seeding, and removing what runs
that were killed outright left behind."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyotp
import sqlalchemy as sa
from cryptography.fernet import Fernet

from bench.progress import log
from bench.server import HOST, ROOT
from bench.users import BenchUser

ROLE = "Practitioner"
MIGRATE_TIMEOUT_S = 30
# What the bench names its temporary directories and PostgreSQL databases: with the pid in
# the name, a later run can tell one left behind by a killed run from one still in use.
TMP_PREFIX = "clinic-mfa-bench-"
DB_PREFIX = "clinic_mfa_bench_"
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


@contextlib.contextmanager
def temporary_directory() -> Iterator[Path]:
    """This run's directory (database file, server log), after sweeping killed runs' ones."""
    sweep_stale_tmp()
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{os.getpid()}-") as tmp:
        yield Path(tmp)


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
        "MFA_MAIL_TRANSPORT": "console",
        # Sign-ins by TOTP send no mail; should any go out, loopback's console is the place.
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


# The users page is measured over a clinic of at least this many people (PERF-2: 5,000), of
# whom at least STAFF_MIX are not sign-in Practitioners, so that its filters find people.
CLINIC_SIZE = 5_000
STAFF_MIX = 1_000
ADMIN_EMAIL = "bench-admin@clinic.example"
FIRST = ("Ada", "Ben", "Cai", "Dee", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jo", "Kim", "Lou")
LAST = ("Lim", "Ortiz", "Hart", "Moss", "Ward", "Nguyen", "Singh", "Brown", "Rossi", "Khan")


def seed_staff(existing: int, password_hash: str) -> tuple[BenchUser, int, float]:
    """Top the clinic up to CLINIC_SIZE people (at least STAFF_MIX more) of every kind the
    users page shows (every role; no factor, an app or email codes; exempt, switched off,
    invited, locked, a pending bypass) and add the Administrator who reads the page. Returns
    that admin, how many people there are now, and the seconds taken. Bulk inserts."""
    from app import create_app
    from models import MfaFactor, Role, SignInThrottle, User, db
    from models.types import utcnow
    from services import crypto, throttle

    started = time.perf_counter()
    admin = BenchUser(ADMIN_EMAIL, pyotp.random_base32(32))
    extra = max(STAFF_MIX, CLINIC_SIZE - existing - 1)
    app = create_app()
    with app.app_context():
        try:
            roles = dict(db.session.execute(sa.select(Role.name, Role.id)).all())
            now = utcnow()
            people = [
                {
                    "email": ADMIN_EMAIL,
                    "full_name": "Bench Administrator",
                    "password_hash": password_hash,
                    "role_id": roles["Administrator"],
                }
            ]
            for n in range(extra):
                role = "Administrator" if n % 50 == 0 else ("Reception", "Location", ROLE)[n % 3]
                people.append(
                    {
                        "email": f"staff-{n:05d}@clinic.example",
                        "full_name": f"{FIRST[n % len(FIRST)]} {LAST[n // 7 % len(LAST)]} {n}",
                        "password_hash": None if n % 97 == 0 else password_hash,
                        "role_id": roles[role],
                        "mfa_override": "exempt" if n % 17 == 0 else "default",
                        "active": n % 41 != 0,
                        "mfa_locked_until": now + timedelta(minutes=15) if n % 53 == 0 else None,
                        "mfa_bypass_until": now + timedelta(hours=8) if n % 89 == 0 else None,
                    }
                )
            db.session.execute(sa.insert(User), people[:1])
            if extra:
                db.session.execute(sa.insert(User), people[1:])
            ids = dict(
                db.session.execute(
                    sa.select(User.email, User.id).where(
                        User.email.like("staff-%") | (User.email == ADMIN_EMAIL)
                    )
                ).all()
            )
            factors = [
                {
                    "user_id": ids[ADMIN_EMAIL],
                    "kind": "totp",
                    "is_default": True,
                    "secret_encrypted": crypto.encrypt(admin.secret),
                }
            ]
            for n in range(extra):
                kind = (None, "totp", "email")[n % 3 if n % 5 else 0]
                if kind is not None:
                    email = f"staff-{n:05d}@clinic.example"
                    factors.append(
                        {
                            "user_id": ids[email],
                            "kind": kind,
                            "is_default": True,
                            "secret_encrypted": crypto.encrypt(pyotp.random_base32(32))
                            if kind == "totp"
                            else None,
                            "target": email if kind == "email" else None,
                        }
                    )
            db.session.execute(sa.insert(MfaFactor), factors)
            throttled = [
                {
                    "key": throttle.email_key(f"staff-{n:05d}@clinic.example"),
                    "failures": 100,
                    "last_failure_at": now,
                }
                for n in range(0, extra, 61)
            ]
            if throttled:
                db.session.execute(sa.insert(SignInThrottle), throttled)
            total = db.session.scalar(sa.select(sa.func.count(User.id))) or 0
            db.session.commit()
        finally:
            db.session.remove()
            db.engine.dispose()
    return admin, total, time.perf_counter() - started
