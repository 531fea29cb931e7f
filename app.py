"""The application factory. Nothing happens at import time but creating extension objects."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, request
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix

import config
from extensions import csrf, login_manager
from models import db
from services import localtime, passwords, rollout_notices, static_files, throttle
from services.mail import mail
from services.mail import transport_problem as mail_transport_problem
from services.wording import plural

# No inline script or style anywhere; htmx's own indicator styles are switched off in
# base.html's htmx-config so this policy holds.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# On every response, pages and static files alike. HSTS is added per request (https only).
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(config.defaults(app.instance_path))
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
    else:
        app.config.from_mapping(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = config.load_secret_key(
            app.instance_path, production=app.config["MFA_ENV"] == "production"
        )

    if not app.config.get("MAIL_DEFAULT_SENDER"):
        app.config["MAIL_DEFAULT_SENDER"] = config.default_sender(app.config["MFA_CLINIC_NAME"])

    try:
        localtime.zone(app.config["MFA_TIME_ZONE"])
    except ValueError as exc:
        raise config.ConfigError(str(exc)) from exc
    localtime.init_app(app)

    try:
        passwords.init_app(app)
    except ValueError as exc:
        raise config.ConfigError(
            f"MFA_PASSWORD_HASH_PARAMS: {exc} (OWASP's are t=2,m=19456,p=1)."
        ) from exc

    try:
        app.config["MFA_ROLLOUT_NOTICE_DAYS"] = rollout_notices.parse_days(
            app.config["MFA_ROLLOUT_NOTICE_DAYS"]
        )
    except ValueError as exc:
        raise config.ConfigError(f"MFA_ROLLOUT_NOTICE_DAYS: {exc}.") from exc

    _init_hosts(app)
    config.refuse_unsafe_production(app.config)
    mail_problem = mail_transport_problem(app.config)
    if mail_problem:
        # A warning, not a refusal: a clinic may start before its mail server is ready.
        app.logger.warning("%s Password resets and security notices cannot be sent.", mail_problem)
    # Outermost, so static files are answered before Flask (and ProxyFix) are involved.
    static_files.init_app(app, headers=SECURITY_HEADERS)

    from blueprints import errors

    # Before any extension's before-request hook: a refused Host must be answered before
    # CSRF, sessions or the MFA guard run (they build URLs, and there is no URL adapter then).
    errors.guard_requests(app)
    from blueprints import admin

    # Also before CSRF and the pending-sign-in guard: /admin answers 404 to anyone but a
    # signed-in Administrator, for GET and POST alike (ADM-1).
    admin.hide_from_non_admins(app)
    db.init_app(app)
    with app.app_context():
        _tune_database(db.engine)
    if app.testing or os.environ.get("FLASK_RUN_FROM_CLI") == "true":
        # Alembic costs a web worker ~11 MB and only `flask db ...` and the tests need it.
        from flask_migrate import Migrate

        Migrate(
            app,
            db,
            directory=os.path.join(os.path.dirname(__file__), "migrations"),
            render_as_batch=True,
        )
    csrf.init_app(app)
    mail.init_app(app)
    _init_login(app)
    # Words shown to people come from one place: the same plural rule in pages and views.
    app.add_template_filter(plural, "plural")

    from blueprints.account import bp as account_bp
    from blueprints.auth import bp as auth_bp
    from blueprints.home import bp as home_bp
    from blueprints.mfa import bp as mfa_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(home_bp)
    app.register_blueprint(mfa_bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(account_bp)
    from blueprints import api

    try:
        api.init_app(app)
    except ValueError as exc:
        raise config.ConfigError(str(exc)) from exc

    errors.register(app)
    app.after_request(_security_headers)

    import cli

    cli.register(app)
    return app


def _init_hosts(app: Flask) -> None:
    """Which Host headers are answered (Flask's TRUSTED_HOSTS, SEC-3) and which proxy headers
    are believed. X-Forwarded-Host only with MFA_TRUST_FORWARDED_HOST; the host it names must
    still be a trusted one, since Flask checks the host after ProxyFix has replaced it."""
    production = app.config["MFA_ENV"] == "production"
    app.config["MFA_BASE_URL"] = config.base_url(app.config["MFA_BASE_URL"], production=production)
    app.config["TRUSTED_HOSTS"] = config.trusted_hosts(app.config)
    hops = app.config["MFA_TRUSTED_PROXIES"]
    forwarded_host = app.config["MFA_TRUST_FORWARDED_HOST"]
    if forwarded_host and hops < 1:
        raise config.ConfigError(
            "MFA_TRUST_FORWARDED_HOST needs MFA_TRUSTED_PROXIES: only a proxy's header is believed."
        )
    if hops > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops if forwarded_host else 0
        )


def _tune_database(engine: Any) -> None:
    """SQLite: WAL so readers never wait for the writer, enforced foreign keys, and a busy
    timeout so concurrent workers queue for the write lock instead of failing."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        # The users list filters on password locks, keyed by a SHA-256 (services/throttle.py).
        dbapi_connection.create_function(
            throttle.SQLITE_SHA256, 1, throttle.sqlite_sha256_hex, deterministic=True
        )


def _init_login(app: Flask) -> None:
    from services.sessions import load_user

    login_manager.init_app(app)
    login_manager.user_loader(load_user)
    # Sessions are checked against their server row on every request; Flask-Login's own
    # IP/agent hashing would add nothing but false sign-outs.
    login_manager.session_protection = None


def _security_headers(response: Response) -> Response:
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    # Static files rarely get here: WhiteNoise answers first (services/static_files.py) and
    # only a file added after start falls through to Flask's own static route.
    if request.endpoint != "static":
        # Pages carry sessions, codes and secrets: never store them in any cache.
        headers["Cache-Control"] = "no-store"
    return response
