"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py` (and what `make bench` uses).

Environment: MFA_BIND (default 127.0.0.1:8000, behind the reverse proxy), WEB_CONCURRENCY
(workers, default 2: one clinic, one small server). Settings on the command line win.
"""

import os

from gunicorn import glogging

from services.links import redact_tokens

wsgi_app = "app:create_app()"
bind = os.environ.get("MFA_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
# Load the app once in the master: workers share its memory pages until they write to them.
preload_app = True
timeout = 30
graceful_timeout = 10
# The proxy sets X-Forwarded-*; the app trusts them only per MFA_TRUSTED_PROXIES (ProxyFix).
forwarded_allow_ips = "127.0.0.1,::1"
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'


class RedactedAtoms(glogging.SafeAtoms):
    """gunicorn's atoms, each text atom redacted as the log format reads it: a token in a path
    (a reset link opened and never followed to the tokenless page) never reaches the access
    log, whichever atoms the format names (the request line, the path, the Referer, any header
    or environ atom a later format adds). Only the atoms the format reads are redacted, not the
    fifty-odd gunicorn builds for every request."""

    def __getitem__(self, k):
        value = super().__getitem__(k)
        return redact_tokens(value) if isinstance(value, str) else value


class RedactingLogger(glogging.Logger):
    """gunicorn's logger with every atom the access log prints redacted (RedactedAtoms)."""

    atoms_wrapper_class = RedactedAtoms


logger_class = RedactingLogger


def post_fork(server, worker):
    """Connections must not be shared across fork: each worker opens its own."""
    from models import db

    app = server.app.wsgi()
    with app.app_context():
        db.engine.dispose(close=False)
